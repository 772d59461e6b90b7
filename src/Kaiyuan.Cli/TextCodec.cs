using Kaiyuan.Models;

namespace Kaiyuan.Cli;

/// <summary>Text in and out of token ids for a model (bridges the CLI to the model's tokenizer).</summary>
internal sealed class TextCodec
{
    public required Func<string, int[]> Encode { get; init; }
    public required Func<IReadOnlyList<int>, string> Decode { get; init; }
    public required Func<Func<int, string>> CreateDecoder { get; init; }
    public Func<int, bool>? IsEndOfGeneration { get; init; }

    public static TextCodec For(TransformerModel model) => new()
    {
        Encode = _ => throw new NotSupportedException("text prompts need the tokenizer, which this build lacks; use --prompt-ids"),
        Decode = ids => "",
        CreateDecoder = () => _ => "",
    };
}
