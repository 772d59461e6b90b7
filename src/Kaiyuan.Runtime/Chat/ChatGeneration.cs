using System.Text;
using Kaiyuan.Sampling;

namespace Kaiyuan.Chat;

/// <summary>What a chat request asks of the model once an API's dialect (OpenAI's, Anthropic's) has been read.</summary>
public sealed record ChatInput
{
    /// <summary>The conversation.</summary>
    public required IReadOnlyList<ChatMessage> Messages { get; init; }
    /// <summary>The request field the conversation came in (chat's "messages", the Responses API's "input"), named by the errors about it.</summary>
    public string MessagesParam { get; init; } = "messages";
    /// <summary>The tools on offer and whether they may, must or must not be called.</summary>
    public ToolUse Tools { get; init; } = new([], ToolMode.None, null, Parallel: true);
    /// <summary>A structured answer (JSON schema, grammar); null: free text.</summary>
    public OutputGrammar? Output { get; init; }
    /// <summary>The template's reasoning switch: null keeps its default.</summary>
    public bool? Thinking { get; init; }
    /// <summary>The answer goes on from the last message, an assistant's text (Anthropic's prefill), instead of a new turn.</summary>
    public bool Continue { get; init; }
    /// <summary>How tokens are chosen (greedy by default).</summary>
    public SamplerOptions Sampling { get; init; } = SamplerOptions.Greedy;
    /// <summary>Tokens the answer may have at most; -1: until the context is full.</summary>
    public int MaxTokens { get; init; } = -1;
    /// <summary>Strings that end the answer where they appear (they are not part of it).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Alternatives reported with each token's log-probability; -1: no log-probabilities.</summary>
    public int TopLogprobs { get; init; } = -1;
    /// <summary>Generation goes on past end-of-generation tokens (benchmarks).</summary>
    public bool IgnoreEos { get; init; }
}

/// <summary>The parsed output of one piece of generated text, and the tokens behind it (none for the parser's remainder).</summary>
/// <param name="Deltas">Content, reasoning and tool-call text, in order.</param>
/// <param name="Tokens">The tokens generated for it.</param>
public sealed record ChatPiece(IReadOnlyList<ChatDelta> Deltas, IReadOnlyList<TokenInfo> Tokens);

/// <summary>A whole answer: its text, reasoning and tool calls, and every token.</summary>
/// <param name="Content">The answer's text.</param>
/// <param name="Reasoning">The model's reasoning; empty when it gave none.</param>
/// <param name="Calls">The tool calls it made.</param>
/// <param name="Tokens">Every token generated.</param>
public sealed record ChatAnswer(string Content, string Reasoning, List<ToolCall> Calls, List<TokenInfo> Tokens);

/// <summary>
/// A chat request running, whatever API it came through: the conversation rendered with the model's template, the
/// structured-output and tool-call constraint, the submission (the engine's refusals are thrown here, before a response
/// starts, and keep their status), and the output parsed into content, reasoning and tool-call deltas.
/// </summary>
public sealed class ChatGeneration : IDisposable
{
    private readonly TextGeneration _text;
    private readonly IChatOutputParser _parser;
    // A continuation's leading whitespace, which the parser trims from an answer but which joins it to the text it continues.
    private StringBuilder? _lead;
    private bool _leading;

    private ChatGeneration(TextGeneration text, IChatOutputParser parser, bool continues)
    {
        _text = text;
        _parser = parser;
        _lead = continues ? new StringBuilder() : null;
        _leading = continues;
    }

    /// <summary>The prompt text the model is given for <paramref name="input"/>.</summary>
    public static string Render(ModelRuntime runtime, ChatInput input)
    {
        if (!input.Continue) return runtime.Formatter.Format(input.Messages, input.Tools.Tools, addGenerationPrompt: true, input.Thinking);
        // The conversation as it stands, cut after the last message's text: the end-of-turn the template wrote after it
        // goes, and the model writes on. (Templates may trim a message, so its trimmed text is what is looked for.)
        string text = input.Messages[^1].Content?.Trim() ?? "";
        string prompt = runtime.Formatter.Format(input.Messages, input.Tools.Tools, addGenerationPrompt: false, input.Thinking);
        int at = text.Length == 0 ? -1 : prompt.LastIndexOf(text, StringComparison.Ordinal);
        if (at < 0)
            throw RequestException.BadRequest("the model's chat template does not render the last assistant message as written, so it cannot be continued", input.MessagesParam);
        return prompt[..(at + text.Length)];
    }

    /// <summary>The prompt's tokens (what a request is counted and billed by).</summary>
    public static int[] Encode(ModelRuntime runtime, string prompt) => runtime.Codec.Encode(prompt, addSpecial: true, parseSpecial: true);

    /// <summary>
    /// Renders and encodes the conversation, checks that it fits the context (before the constraint, whose grammar may
    /// take a while to compile, at most <paramref name="grammarTimeout"/>), compiles the constraint and submits the
    /// request; <paramref name="metrics"/>, when given, counts its tokens and latencies.
    /// </summary>
    public static async Task<ChatGeneration> StartAsync(IGenerationMetrics? metrics, TimeSpan grammarTimeout, ModelRuntime runtime, ChatInput input, CancellationToken cancel)
    {
        string prompt = Render(runtime, input);
        var tokens = Encode(runtime, prompt);
        runtime.CheckContext(tokens.Length, input.MessagesParam);
        var settings = new GenerationSettings
        {
            Prompt = tokens,
            Sampling = input.Sampling,
            MaxTokens = input.MaxTokens,
            Stop = input.Stop,
            TopLogprobs = input.TopLogprobs,
            IgnoreEos = input.IgnoreEos,
            Constraint = await StructuredOutput.ForChatAsync(grammarTimeout, runtime, input.Output, input.Tools, prompt, cancel),
            PreservedTokens = runtime.Formatter.OutputFormat?.Markers ?? [],
        };
        var parser = runtime.Formatter.CreateParser(prompt, input.Tools.Tools.Count > 0);
        return new ChatGeneration(TextGeneration.Start(runtime, metrics, settings, cancel), parser, input.Continue);
    }

    /// <summary>How the generation ended: complete once <see cref="ReadAsync"/> has run out.</summary>
    public GenerationOutcome Outcome => _text.Outcome;

    /// <inheritdoc cref="TextGeneration.WaitForFirstTokenAsync"/>
    public Task WaitForFirstTokenAsync(TimeSpan interval, Func<Task> keepAlive) => _text.WaitForFirstTokenAsync(interval, keepAlive);

    /// <summary>The parsed output as it is generated, a piece at a time, and last what the parser held back.</summary>
    public async IAsyncEnumerable<ChatPiece> ReadAsync()
    {
        await foreach (var piece in _text) yield return new ChatPiece(KeepLead(piece.Text, _parser.Push(piece.Text).ToList()), piece.Tokens);
        yield return new ChatPiece(KeepLead("", _parser.Finish().ToList()), []);
    }

    /// <summary>For a continuation: gathers the output's leading whitespace and gives it back to its first content.</summary>
    private List<ChatDelta> KeepLead(string raw, List<ChatDelta> deltas)
    {
        if (_lead is null) return deltas;
        if (_leading)
        {
            int n = 0;
            while (n < raw.Length && char.IsWhiteSpace(raw[n])) n++;
            _lead.Append(raw, 0, n);
            _leading = n == raw.Length;
        }
        if (deltas.Count == 0) return deltas;
        if (deltas[0] is { Kind: ChatDeltaKind.Content } first && !first.Text.StartsWith(_lead.ToString(), StringComparison.Ordinal))
            deltas[0] = first with { Text = _lead + first.Text };
        _lead = null;
        return deltas;
    }

    /// <summary>Reads the whole answer.</summary>
    public async Task<ChatAnswer> CollectAsync()
    {
        var content = new StringBuilder();
        var reasoning = new StringBuilder();
        var calls = new ToolCallAccumulator();
        var tokens = new List<TokenInfo>();
        await foreach (var piece in ReadAsync())
        {
            tokens.AddRange(piece.Tokens);
            foreach (var d in piece.Deltas)
            {
                if (d.Kind == ChatDeltaKind.Content) content.Append(d.Text);
                else if (d.Kind == ChatDeltaKind.Reasoning) reasoning.Append(d.Text);
                else calls.Add(d);
            }
        }
        return new ChatAnswer(content.ToString(), reasoning.ToString(), calls.Calls, tokens);
    }

    /// <summary>The answer ended after its tool calls; one cut off (by the token limit) ends "length", its last call incomplete.</summary>
    public static bool EndedWithCalls(GenerationOutcome outcome, int calls) => calls > 0 && outcome.FinishReason != "length";

    /// <summary>Stops the generation if it is still running.</summary>
    public void Dispose() => _text.Dispose();
}
