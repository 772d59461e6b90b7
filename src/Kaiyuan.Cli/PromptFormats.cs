using Kaiyuan.Gguf;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli;

/// <summary>Chooses how <c>kaiyuan run</c> turns a conversation into a prompt for a model.</summary>
internal static class PromptFormats
{
    /// <summary>
    /// Completion mode (the raw input as the prompt). Chat templates need the template engine; until this build has it,
    /// a model with a template is run in completion mode too, and <paramref name="note"/> says so.
    /// </summary>
    public static IPromptFormat For(GgufMetadata metadata, Tokenizer tokenizer, out string? note)
    {
        note = metadata.GetStringOrNull("tokenizer.chat_template") is { Length: > 0 }
            ? "this build cannot render chat templates yet: the model's template is not applied (completion mode)"
            : null;
        return new RawPromptFormat();
    }
}
