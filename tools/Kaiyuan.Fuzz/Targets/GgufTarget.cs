using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>GGUF parsing, the vocabulary and tokenizer it carries, model loading, and a first evaluation.</summary>
internal sealed class GgufTarget : FuzzTarget
{
    public override string Name => "gguf";
    public override int MaxLength => 2 << 20;

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
    [
        File.ReadAllBytes(Path.Combine(fixtures, "models/aidreams260K/aidreams260K-q6_k.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "models/aidreams260K/aidreams260K-f16.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "models/qwen3/qwen3-q4_0.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "tokenizers/ggml-vocab-bert-bge.gguf")),
    ];

    public override IReadOnlyList<byte[]> Dictionary => Words("GGUF", "general.architecture", "llama", "qwen3", "deepseek2",
        ".context_length", ".block_count", ".embedding_length", ".attention.head_count", "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.pre", "<0x41>", "blk.0.", ".weight", "token_embd");

    public override void Run(byte[] input)
    {
        GgufFile file;
        try
        {
            file = GgufFile.FromBytes(input, "fuzz.gguf");
        }
        catch (GgufFormatException)
        {
            return;
        }
        using (file)
        {
            try
            {
                var tokenizer = Tokenizer.FromGguf(file.Metadata);
                var ids = tokenizer.Encode("Hello world, 你好 <s> <|im_start|>", addSpecial: true, parseSpecial: true);
                tokenizer.Decode(ids);
            }
            catch (Exception e) when (IsClean(e))
            {
            }
            try
            {
                var model = ModelLoader.Load(file);
                var session = new InferenceSession(model, 32);
                session.Evaluate([0, Math.Min(1, model.VocabSize - 1)]);
            }
            catch (Exception e) when (IsClean(e))
            {
            }
        }
    }

    /// <summary>What loading promises for a bad file: a format error that names it, or "not supported".</summary>
    private static bool IsClean(Exception e) =>
        e is GgufFormatException or GgufMetadataException or InvalidDataException or NotSupportedException or ContextOverflowException;
}
