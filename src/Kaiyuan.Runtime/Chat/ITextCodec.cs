namespace Kaiyuan.Chat;

/// <summary>Text in and out of token ids: what the server needs of a tokenizer.</summary>
internal interface ITextCodec
{
    int BosId { get; }
    int EosId { get; }
    /// <summary>Token ids for text; <paramref name="addSpecial"/> adds BOS as the model says, <paramref name="parseSpecial"/>
    /// turns control-token text such as <c>&lt;|im_start|&gt;</c> into those tokens.</summary>
    int[] Encode(string text, bool addSpecial, bool parseSpecial);
    string Decode(ReadOnlySpan<int> ids);
    bool IsEndOfGeneration(int id);
    string TokenText(int id);
    /// <summary>The raw bytes a token renders to (for logprob "bytes").</summary>
    byte[] TokenBytes(int id);
    IStreamingTextDecoder CreateStreamingDecoder();
    /// <summary>A decoder that also shows the control tokens spelled as one of <paramref name="preserved"/> (a chat
    /// format's tool-call markers), which the output parser must see.</summary>
    IStreamingTextDecoder CreateStreamingDecoder(IEnumerable<string> preserved) => CreateStreamingDecoder();
    /// <summary>The model's vocabulary, which structured output compiles its grammars against; null when the codec
    /// has none (scripted test engines), and constrained requests are then refused.</summary>
    Tokenizers.Vocabulary? Vocabulary => null;
}

/// <summary>Turns tokens into text one at a time, holding back incomplete UTF-8 sequences.</summary>
internal interface IStreamingTextDecoder
{
    string Append(int id);
    string Flush();
}
