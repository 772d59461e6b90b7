using Kaiyuan.Tokenizers;

namespace Kaiyuan.Chat;

/// <summary>The model's own tokenizer (<see cref="Tokenizer.FromGguf(Gguf.GgufMetadata)"/>) as the server's codec.</summary>
internal sealed class TokenizerCodec(Tokenizer tokenizer) : ITextCodec
{
    private readonly string _bos = tokenizer.BosId >= 0 && tokenizer.BosId < tokenizer.VocabSize ? tokenizer.TokenText(tokenizer.BosId) : "";

    public int BosId => tokenizer.BosId;
    public int EosId => tokenizer.EosId;

    /// <summary>As llama-server: special-token text becomes its token, BOS is added once (a template that already wrote
    /// the BOS text loses that text first).</summary>
    public int[] Encode(string text, bool addSpecial, bool parseSpecial)
    {
        if (addSpecial && tokenizer.AddBos && _bos.Length > 0 && text.StartsWith(_bos, StringComparison.Ordinal)) text = text[_bos.Length..];
        return tokenizer.Encode(text, addSpecial, parseSpecial);
    }

    public string Decode(ReadOnlySpan<int> ids) => tokenizer.Decode(ids, renderSpecial: false);
    public bool IsEndOfGeneration(int id) => tokenizer.IsEndOfGeneration(id);
    public string TokenText(int id) => (uint)id < (uint)tokenizer.VocabSize ? tokenizer.TokenText(id) : "";
    public byte[] TokenBytes(int id) => (uint)id < (uint)tokenizer.VocabSize ? tokenizer.TokenBytes(id, renderSpecial: false) : [];
    public Vocabulary? Vocabulary => tokenizer.Vocabulary;
    public IStreamingTextDecoder CreateStreamingDecoder() => new Streaming(tokenizer.CreateStreamingDecoder(renderSpecial: false));
    public IStreamingTextDecoder CreateStreamingDecoder(IEnumerable<string> preserved) => new Streaming(tokenizer.CreateStreamingDecoder(preserved));

    private sealed class Streaming(StreamingDecoder decoder) : IStreamingTextDecoder
    {
        public string Append(int id) => decoder.Append(id);
        public string Flush() => decoder.Flush();
    }
}
