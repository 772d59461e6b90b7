using System.Diagnostics;
using System.Globalization;
using Kaiyuan.Inference;
using Kaiyuan.Sampling;

namespace Kaiyuan.Cli;

/// <summary>One message of a conversation (role: system, user or assistant).</summary>
internal sealed record ChatMessage(string Role, string Content);

/// <summary>How a conversation becomes prompt text: the model's chat template, or (with none) the last message as it is.</summary>
internal interface IPromptFormat
{
    /// <summary>Whether this is a real chat template (false: completion mode, each input is completed on its own).</summary>
    bool IsChat { get; }
    string Render(IReadOnlyList<ChatMessage> messages);
}

/// <summary>Completion mode for models without a chat template (as llama.cpp's completion mode): the input is the prompt.</summary>
internal sealed class RawPromptFormat : IPromptFormat
{
    public bool IsChat => false;
    public string Render(IReadOnlyList<ChatMessage> messages) => messages[^1].Content;
}

/// <summary>
/// The conversation behind <c>kaiyuan run</c>: renders the messages, keeps the part of the KV cache that the new prompt
/// shares with what is already in it (evaluating only the rest), streams the answer, and keeps the reply for the next
/// turn. Ctrl-C (<see cref="Cancel"/>) stops the current answer only.
/// </summary>
internal sealed class ChatLoop(InferenceSession session, TokenCodec codec, IPromptFormat format)
{
    private readonly List<ChatMessage> _messages = [];
    private readonly List<int> _cached = [];
    private CancellationTokenSource? _answering;

    public SamplerOptions Sampling { get; set; } = new();
    public string? System { get; set; }
    public int MaxTokens { get; set; } = -1;
    /// <summary>Structured output: a fresh constraint for each answer, given the rendered prompt (it may open a reasoning block).</summary>
    public Func<string, Constraints.TokenConstraint>? Constraint { get; set; }
    /// <summary>Prompt prefixes on disk (<c>--prompt-cache</c>): read when they hold more of a prompt than the session, offered after each turn.</summary>
    public PromptCacheStore? PromptCache { get; set; }
    /// <summary>Prompt-lookup draft tokens per step (0: no speculation).</summary>
    public int LookupDraftTokens { get; set; }
    /// <summary>Multi-token-prediction draft tokens per step (0: off).</summary>
    public int MtpDraftTokens { get; set; }
    /// <summary>A draft model that proposes tokens for the session's model (null: none).</summary>
    public Speculative.DraftModel? Draft { get; set; }

    /// <summary>Stops the answer being generated; returns false when none is (so Ctrl-C may end the program).</summary>
    public bool Cancel()
    {
        var cts = _answering;
        if (cts is null) return false;
        cts.Cancel();
        return true;
    }

    public void Clear()
    {
        _messages.Clear();
        _cached.Clear();
        session.Reset();
    }

    /// <summary>Answers one user message, writing the text to <paramref name="output"/> as it is generated and the speed to <paramref name="stats"/>.</summary>
    public string Answer(string user, TextWriter output, TextWriter? stats)
    {
        var turn = new List<ChatMessage>();
        if (format.IsChat)
        {
            if (System is { Length: > 0 } system) turn.Add(new ChatMessage("system", system));
            turn.AddRange(_messages);
        }
        turn.Add(new ChatMessage("user", user));
        string rendered = format.Render(turn);
        int[] prompt = codec.Encode(rendered);
        if (prompt.Length == 0) return "";

        if (prompt.Length >= session.ContextLength)
            throw new ContextOverflowException(_messages.Count == 0
                ? $"the prompt has {prompt.Length} tokens; the context holds {session.ContextLength} (use /clear, or a larger --ctx-size)"
                : $"the conversation has {prompt.Length} tokens; the context holds {session.ContextLength}; use /clear");
        // The rows below any position depend only on the tokens before it, so whatever the cache shares with the new
        // prompt stays (the re-tokenized last reply may differ from the ids generated); the last token is always
        // evaluated, for its logits.
        int reuse = 0, shared = Math.Min(_cached.Count, session.Position);
        while (reuse < shared && reuse < prompt.Length - 1 && _cached[reuse] == prompt[reuse]) reuse++;
        // A hybrid model's state goes back only to where it was kept (an earlier prompt's end): Rewind says where.
        session.Rewind(reuse);
        int loaded = PromptCache is { } store ? session.LoadPrefix(store, prompt) : 0;
        reuse = Math.Min(reuse, session.Position);
        // Until this turn is done the cache holds only the prompt's start (a failed turn leaves nothing stale behind).
        _cached.Clear();
        _cached.AddRange(prompt.AsSpan(0, session.Position));
        var fresh = prompt.AsSpan(session.Position).ToArray();

        var options = new GenerationOptions
        {
            MaxTokens = MaxTokens,
            IsEndOfGeneration = codec.IsEndOfGeneration,
            Constraint = Constraint?.Invoke(rendered),
            LookupDraftTokens = LookupDraftTokens,
            Draft = Draft,
            MtpDraftTokens = MtpDraftTokens,
        };
        var decoder = codec.CreateDecoder();
        var ids = new List<int>();
        var reply = new System.Text.StringBuilder();
        using var cts = new CancellationTokenSource();
        _answering = cts;
        var clock = Stopwatch.StartNew();
        double promptSeconds = 0;
        bool endOfGeneration = false;
        try
        {
            foreach (var token in Generator.Generate(session, fresh, new Sampler(Sampling), options, cts.Token))
            {
                if (ids.Count == 0) promptSeconds = clock.Elapsed.TotalSeconds;
                ids.Add(token.Id);
                if (codec.IsEndOfGeneration?.Invoke(token.Id) == true)
                {
                    endOfGeneration = true;
                    break;
                }
                string piece = decoder(token.Id);
                reply.Append(piece);
                output.Write(piece);
                output.Flush();
                if (cts.IsCancellationRequested) break;
            }
        }
        finally
        {
            _answering = null;
        }
        bool cancelled = cts.IsCancellationRequested;
        double total = clock.Elapsed.TotalSeconds;
        output.WriteLine();
        output.Flush();

        // What the cache now holds: the prompt and every generated token but the last (which was never fed back).
        _cached.Clear();
        _cached.AddRange(prompt);
        if (ids.Count > 1) _cached.AddRange(ids.Take(ids.Count - 1));
        if (PromptCache is { } cache) session.SavePrefix(cache, prompt);
        if (format.IsChat)
        {
            _messages.Add(new ChatMessage("user", user));
            _messages.Add(new ChatMessage("assistant", reply.ToString()));
        }
        if (stats is not null)
        {
            double genSeconds = Math.Max(1e-9, total - promptSeconds);
            int generated = endOfGeneration ? ids.Count - 1 : ids.Count;
            stats.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(cancelled ? "[stopped] " : "")}{generated} tokens, {Math.Max(0, ids.Count - 1) / genSeconds:F1} tokens/s " +
                $"(prompt: {fresh.Length} tokens{(reuse > 0 ? $", {reuse} reused" : "")}{(loaded > 0 ? $", {loaded} from the prompt cache" : "")}, {fresh.Length / Math.Max(1e-9, promptSeconds):F1} tokens/s)"));
        }
        return reply.ToString();
    }
}
