using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tokenizers;

/// <summary>A GGUF model's tokenizer, with llama.cpp's encoding and decoding behaviour.</summary>
public abstract class Tokenizer
{
    private protected Tokenizer(Vocabulary vocabulary) => Vocabulary = vocabulary;

    internal Vocabulary Vocabulary { get; }
    /// <summary>Number of tokens in the vocabulary; ids run from 0 to <c>VocabSize - 1</c>.</summary>
    public int VocabSize => Vocabulary.Count;
    /// <summary>The beginning-of-sequence token id, or -1 when the vocabulary has none.</summary>
    public int BosId => Vocabulary.BosId;
    /// <summary>The end-of-sequence token id, or -1 when the vocabulary has none.</summary>
    public int EosId => Vocabulary.EosId;
    /// <summary>Whether <see cref="Encode(string, bool, bool)"/> with <c>addSpecial</c> prepends <see cref="BosId"/> (<c>tokenizer.ggml.add_bos_token</c> or the tokenizer's default).</summary>
    public bool AddBos => Vocabulary.AddBos;
    /// <summary>Whether <see cref="Encode(string, bool, bool)"/> with <c>addSpecial</c> appends <see cref="EosId"/> (<c>tokenizer.ggml.add_eos_token</c> or the tokenizer's default).</summary>
    public bool AddEos => Vocabulary.AddEos;

    /// <summary>The value of <c>tokenizer.ggml.model</c> this tokenizer implements.</summary>
    public abstract string Model { get; }

    /// <summary>Builds the tokenizer <c>tokenizer.ggml.model</c> names: <c>llama</c> (SentencePiece), <c>gpt2</c> (byte-level BPE) or <c>bert</c> (WordPiece).</summary>
    public static Tokenizer FromGguf(GgufMetadata metadata)
    {
        string model = metadata.GetStringOrNull("tokenizer.ggml.model")
            ?? throw new NotSupportedException("the GGUF has no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
        return model switch
        {
            "llama" => new SentencePieceTokenizer(metadata),
            "gpt2" => new BpeTokenizer(metadata),
            "bert" => new WordPieceTokenizer(metadata),
            _ => throw new NotSupportedException($"unsupported tokenizer model '{model}' (supported: llama, gpt2, bert)"),
        };
    }

    /// <summary>Reads the vocabulary of a GGUF file (only its metadata is parsed).</summary>
    public static Tokenizer FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file.Metadata);
    }

    /// <summary>True when <paramref name="id"/> ends generation: EOS, EOT, EOM, or another token llama.cpp treats as end-of-generation for this vocabulary.</summary>
    public bool IsEndOfGeneration(int id) => Vocabulary.IsEndOfGeneration(id);

    /// <summary>
    /// Tokenizes <paramref name="text"/>. <paramref name="addSpecial"/> adds BOS/EOS as the vocabulary asks;
    /// <paramref name="parseSpecial"/> turns CONTROL token texts into their tokens (USER_DEFINED ones always are, as in llama.cpp).
    /// </summary>
    public int[] Encode(string text, bool addSpecial, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        var fragments = SpecialTokenSplitter.Split(Vocabulary, text, parseSpecial);
        Encode(text, fragments, addSpecial, output);
        return output.ToArray();
    }

    /// <summary>Tokenizes the fragments of <paramref name="text"/> (special tokens already split out) into <paramref name="output"/>.</summary>
    private protected abstract void Encode(string text, List<TextFragment> fragments, bool addSpecial, List<int> output);

    /// <summary>The raw vocabulary string of a token.</summary>
    public string TokenText(int id) => Vocabulary.Text(id);

    /// <summary>The bytes this token contributes to output text (nothing for CONTROL/UNKNOWN tokens unless rendered).</summary>
    public byte[] TokenBytes(int id, bool renderSpecial) => Vocabulary.Piece(id, renderSpecial).ToArray();

    /// <summary>
    /// The text of a token sequence: the tokens' pieces concatenated. Where the vocabulary adds a space prefix
    /// (SentencePiece), the first piece after an optional, unrendered leading BOS loses one leading space, so that
    /// <c>Decode(Encode(s))</c> gives back <c>s</c>. No clean-up of spaces before punctuation (see <see cref="Detokenize"/>).
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool renderSpecial = true)
    {
        var bytes = new ArrayBufferWriterLite(ids.Length * 4);
        bool removeSpace = Vocabulary.AddSpacePrefix;
        for (int i = 0; i < ids.Length; i++)
        {
            var piece = Vocabulary.Piece(ids[i], renderSpecial);
            if (i == 0 && ids[i] == BosId)
            {
                // A rendered BOS takes the strip (llama.cpp prints "<s> Hello"); a hidden one passes it on.
                if (piece.Length > 0) removeSpace = false;
                bytes.Write(piece);
                continue;
            }
            if (removeSpace && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
            removeSpace = false;
            bytes.Write(piece);
        }
        return Encoding.UTF8.GetString(bytes.Span);
    }

    /// <summary>
    /// llama.cpp's <c>llama_detokenize</c> exactly: optional removal of a leading BOS / trailing EOS, one leading space
    /// stripped from the first token when the vocabulary adds a space prefix, and the vocabulary's clean-up of spaces
    /// before <c>?!.,</c> and contractions.
    /// </summary>
    public string Detokenize(ReadOnlySpan<int> ids, bool removeSpecial, bool unparseSpecial)
    {
        bool removeSpace = Vocabulary.AddSpacePrefix;
        if (removeSpecial && AddBos && ids.Length > 0 && ids[0] == BosId)
        {
            removeSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && AddEos && ids.Length > 0 && ids[^1] == EosId) ids = ids[..^1];
        var bytes = new ArrayBufferWriterLite(ids.Length * 4);
        foreach (int id in ids)
        {
            var piece = Vocabulary.Piece(id, unparseSpecial);
            if (removeSpace && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
            removeSpace = false;
            bytes.Write(piece);
        }
        byte[] text = bytes.Span.ToArray();
        int n = Vocabulary.CleanSpaces ? CleanUpSpaces(text) : text.Length;
        return Encoding.UTF8.GetString(text, 0, n);
    }

    /// <summary>llama.cpp's three clean-up passes over the detokenized bytes; returns the new length.</summary>
    private static int CleanUpSpaces(byte[] t)
    {
        int total1 = t.Length, total = total1 > 0 ? 1 : 0;
        for (int i = 1; i < total1; i++)
        {
            byte x = t[i];
            if (t[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') total--;
            t[total++] = x;
        }
        int total2 = total;
        total = total2 > 0 ? 1 : 0;
        for (int i = 1; i < total2; i++)
        {
            byte x = t[i];
            if (x == '\'' && i + 1 < total2 && t[i - 1] == ' ' && t[i + 1] == ' ')
            {
                total--;
                t[++i] = 0;
            }
            t[total++] = x;
        }
        int total3 = total;
        total = total3 > 0 ? 1 : 0;
        for (int i = 1; i < total3; i++)
        {
            byte x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                byte x1 = t[i + 1];
                if (x1 is (byte)'s' or (byte)'m') total--;
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < total3)
                {
                    byte x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
                }
            }
            t[total++] = x;
        }
        return total;
    }

    /// <summary>A decoder for generated tokens that only ever returns whole UTF-8 characters.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool renderSpecial = true) => new(Vocabulary, renderSpecial);

    /// <summary>A decoder that hides control tokens except those spelled as one of <paramref name="preserved"/>.</summary>
    public StreamingDecoder CreateStreamingDecoder(IEnumerable<string> preserved) =>
        new(Vocabulary, false, preserved.Select(Vocabulary.Find).Where(id => id >= 0 && !IsEndOfGeneration(id)).ToHashSet());
}

/// <summary>A growable byte buffer without the interface overhead of ArrayBufferWriter.</summary>
internal struct ArrayBufferWriterLite(int capacity)
{
    private byte[] _buffer = new byte[Math.Max(16, capacity)];
    private int _count;

    public readonly ReadOnlySpan<byte> Span => _buffer.AsSpan(0, _count);

    public void Write(ReadOnlySpan<byte> data)
    {
        if (_count + data.Length > _buffer.Length) Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _count + data.Length));
        data.CopyTo(_buffer.AsSpan(_count));
        _count += data.Length;
    }
}
