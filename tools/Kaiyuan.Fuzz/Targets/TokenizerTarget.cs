using System.Text;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>Arbitrary text to encode (with and without special tokens) and arbitrary ids to decode, for each tokenizer kind.</summary>
internal sealed class TokenizerTarget : FuzzTarget
{
    private readonly List<Tokenizer> _tokenizers = [];

    public override string Name => "tokenizer";
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Tokenizers"];

    public override void Setup(string fixtures)
    {
        foreach (var vocab in new[] { "llama-spm", "qwen3", "deepseek-v3", "gpt-2", "bert-bge", "phi-3" })
            _tokenizers.Add(Tokenizer.FromGguf(Path.Combine(fixtures, $"tokenizers/ggml-vocab-{vocab}.gguf")));
    }

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
    [
        .. Directory.GetFiles(Path.Combine(fixtures, "tokenizers"), "*.inp").Take(3).Select(File.ReadAllBytes),
        "\0Hello <|im_start|>user\n你好<|im_end|> <s></s> [CLS] \u200d👩‍👩‍👧 \t\r\n  x"u8.ToArray(),
        [1, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0x80, 0xC0, 0xAF, (byte)'a', 0xFF],
    ];

    public override IReadOnlyList<byte[]> Dictionary => Words("<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]",
        "<|endoftext|>", "<｜begin▁of▁sentence｜>", "▁", "Ġ", "\u0301", "\u200d", "'s", "'ll", " ", "\n\n", "123456", "ﬁ");

    public override void Run(byte[] input)
    {
        if (input.Length == 0) return;
        var tokenizer = _tokenizers[input[0] % _tokenizers.Count];
        bool addSpecial = (input[0] & 0x40) != 0, parseSpecial = (input[0] & 0x80) != 0;
        var rest = input.AsSpan(1);
        // Text as a client sends it (UTF-8, invalid sequences replaced) and, for some inputs, UTF-16 as is: lone surrogates.
        string text = (input[0] & 0x20) != 0 && rest.Length >= 2
            ? new string(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, char>(rest[..(rest.Length & ~1)]))
            : Encoding.UTF8.GetString(rest);
        var ids = tokenizer.Encode(text, addSpecial, parseSpecial);
        tokenizer.Decode(ids);
        var stream = tokenizer.CreateStreamingDecoder();
        foreach (int id in ids) stream.Append(id);
        stream.Flush();
        // Ids straight from the bytes: inside the vocabulary they decode, outside it they are refused by name.
        var raw = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(rest[..(rest.Length & ~3)]).ToArray();
        for (int i = 0; i < raw.Length; i++) raw[i] = (int)((uint)raw[i] % (uint)(tokenizer.VocabSize + 2));
        try
        {
            tokenizer.Decode(raw, renderSpecial: (input[0] & 1) != 0);
        }
        catch (ArgumentOutOfRangeException) when (raw.Any(id => id >= tokenizer.VocabSize))
        {
        }
    }
}
