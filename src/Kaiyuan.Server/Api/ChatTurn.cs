using Kaiyuan.Constraints;
using Kaiyuan.Server.Chat;

namespace Kaiyuan.Server.Api;

/// <summary>
/// A conversation rendered for the model's next turn: the prompt in the model's chat template (tools offered), its
/// tokens, the constraint the request asks for (forced tool calls, a schema), and how to read the answer back. Chat
/// completions and the Responses API differ only in how they spell the request and the answer, not in this.
/// </summary>
internal sealed class ChatTurn
{
    private ChatTurn(string prompt, int[] tokens, TokenConstraint? constraint, IEnumerable<string> preservedTokens, bool toolsOffered)
    {
        Prompt = prompt;
        Tokens = tokens;
        Constraint = constraint;
        PreservedTokens = preservedTokens;
        ToolsOffered = toolsOffered;
    }

    /// <summary>The rendered prompt text, ending with the assistant's generation prompt.</summary>
    public string Prompt { get; }
    public int[] Tokens { get; }
    public TokenConstraint? Constraint { get; }
    /// <summary>The chat format's markers, kept in the decoded text for the output parser.</summary>
    public IEnumerable<string> PreservedTokens { get; }
    public bool ToolsOffered { get; }

    /// <summary>
    /// Renders <paramref name="messages"/> with the tools <paramref name="tools"/> allows, checks the prompt fits the
    /// context (a 400 naming <paramref name="param"/>), then compiles the output constraint.
    /// </summary>
    public static async Task<ChatTurn> RenderAsync(ServerState state, ModelRuntime runtime, IReadOnlyList<ChatMessage> messages, ToolUse tools,
        OutputGrammar? output, string param, CancellationToken cancel)
    {
        string prompt = runtime.Formatter.Format(messages, tools.Tools, addGenerationPrompt: true);
        var tokens = runtime.Codec.Encode(prompt, addSpecial: true, parseSpecial: true);
        CheckContext(runtime, tokens.Length, param);
        var constraint = await StructuredOutput.ForChatAsync(state, runtime, output, tools, prompt, cancel);
        return new ChatTurn(prompt, tokens, constraint, runtime.Formatter.OutputFormat?.Markers ?? [], tools.Tools.Count > 0);
    }

    /// <summary>A parser that splits the answer into content, reasoning and tool calls.</summary>
    public IChatOutputParser CreateParser(ModelRuntime runtime) => runtime.Formatter.CreateParser(Prompt, ToolsOffered);

    public static void CheckContext(ModelRuntime runtime, int promptTokens, string param)
    {
        if (promptTokens >= runtime.Engine.ContextLength)
            throw ApiException.BadRequest($"the prompt has {promptTokens} tokens, which does not fit the context of {runtime.Engine.ContextLength} tokens",
                param, "context_length_exceeded");
    }
}
