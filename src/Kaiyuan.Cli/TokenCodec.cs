using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli;

/// <summary>Text in and out of token ids for <c>kaiyuan run</c>: the model's tokenizer, used as llama.cpp's chat and completion modes use it.</summary>
internal sealed class TokenCodec
{
    public required Func<string, int[]> Encode { get; init; }
    public required Func<IReadOnlyList<int>, string> Decode { get; init; }
    public required Func<Func<int, string>> CreateDecoder { get; init; }
    public Func<int, bool>? IsEndOfGeneration { get; init; }

    /// <summary>
    /// Text to tokens as llama.cpp's completion and chat modes do: special-token texts become their tokens, and BOS is added
    /// as the vocabulary asks, once (text that already starts with the BOS token's text, as some chat templates write it,
    /// loses that text first). Decoding leaves control tokens (BOS, EOS, end of turn) out of the text, as llama.cpp prints it.
    /// </summary>
    public static TokenCodec For(Tokenizer tokenizer)
    {
        string bos = tokenizer.BosId >= 0 && tokenizer.BosId < tokenizer.VocabSize ? tokenizer.TokenText(tokenizer.BosId) : "";
        return new TokenCodec
        {
            Encode = text =>
            {
                if (tokenizer.AddBos && bos.Length > 0 && text.StartsWith(bos, StringComparison.Ordinal)) text = text[bos.Length..];
                return tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
            },
            Decode = ids => tokenizer.Decode(ids.ToArray(), renderSpecial: false),
            CreateDecoder = () => tokenizer.CreateStreamingDecoder(renderSpecial: false).Append,
            IsEndOfGeneration = tokenizer.IsEndOfGeneration,
        };
    }
}
