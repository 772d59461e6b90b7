using Kaiyuan.Models;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli;

/// <summary>Text in and out of token ids for a model (bridges the CLI to the model's tokenizer).</summary>
internal sealed class TextCodec
{
    public required Func<string, int[]> Encode { get; init; }
    public required Func<IReadOnlyList<int>, string> Decode { get; init; }
    public required Func<Func<int, string>> CreateDecoder { get; init; }
    public Func<int, bool>? IsEndOfGeneration { get; init; }

    /// <summary>The model's own tokenizer; when it has none this build can read, text prompts fail with the reason (ids still work).</summary>
    public static TextCodec For(TransformerModel model)
    {
        Tokenizer tokenizer;
        try
        {
            tokenizer = Tokenizer.FromGguf(model.File.Metadata);
        }
        catch (Exception e) when (e is NotSupportedException or InvalidDataException or KeyNotFoundException or ArgumentException or InvalidOperationException)
        {
            return new TextCodec
            {
                Encode = _ => throw new NotSupportedException($"text prompts need the model's tokenizer, which cannot be used: {e.Message}; use --prompt-ids"),
                Decode = ids => "",
                CreateDecoder = () => _ => "",
            };
        }
        return For(tokenizer);
    }

    /// <summary>
    /// Text to tokens as llama.cpp's completion and chat modes do: special-token texts become their tokens, and BOS is added
    /// as the vocabulary asks, once (text that already starts with the BOS token's text, as some chat templates write it,
    /// loses that text first). Decoding leaves control tokens (BOS, EOS, end of turn) out of the text, as llama.cpp prints it.
    /// </summary>
    public static TextCodec For(Tokenizer tokenizer)
    {
        string bos = tokenizer.BosId >= 0 && tokenizer.BosId < tokenizer.VocabSize ? tokenizer.TokenText(tokenizer.BosId) : "";
        return new TextCodec
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
