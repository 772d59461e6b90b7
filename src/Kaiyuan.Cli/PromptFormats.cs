using System.Text.Json.Nodes;
using Kaiyuan.Gguf;
using Kaiyuan.Templates;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli;

/// <summary>A conversation rendered with the model's own chat template (<c>tokenizer.chat_template</c>).</summary>
internal sealed class ChatTemplateFormat(ChatFormatter formatter, string bosToken, string eosToken) : IPromptFormat
{
    public bool IsChat => true;

    public string Render(IReadOnlyList<ChatMessage> messages)
    {
        var array = new JsonArray();
        foreach (var m in messages) array.Add(new JsonObject { ["role"] = m.Role, ["content"] = m.Content });
        return formatter.Render(array, addGenerationPrompt: true, bosToken: bosToken, eosToken: eosToken);
    }
}

/// <summary>Chooses how <c>kaiyuan run</c> turns a conversation into a prompt for a model.</summary>
internal static class PromptFormats
{
    /// <summary>The model's chat template, or completion mode (the raw input as the prompt) when it has none.</summary>
    public static IPromptFormat For(GgufMetadata metadata, Tokenizer tokenizer)
    {
        if (metadata.GetStringOrNull("tokenizer.chat_template") is not { Length: > 0 } source) return new RawPromptFormat();
        return new ChatTemplateFormat(new ChatFormatter(source), TokenText(tokenizer, tokenizer.BosId), TokenText(tokenizer, tokenizer.EosId));
    }

    private static string TokenText(Tokenizer tokenizer, int id) => id >= 0 && id < tokenizer.VocabSize ? tokenizer.TokenText(id) : "";
}
