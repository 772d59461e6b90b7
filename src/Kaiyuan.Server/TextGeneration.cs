using System.Diagnostics;
using System.Runtime.CompilerServices;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;

namespace Kaiyuan.Server;

/// <summary>What one completion asks for, after the API request has been validated.</summary>
public sealed record GenerationSettings
{
    public required IReadOnlyList<int> Prompt { get; init; }
    public SamplerOptions Sampling { get; init; } = SamplerOptions.Greedy;
    public int MaxTokens { get; init; } = -1;
    public IReadOnlyList<string> Stop { get; init; } = [];
    public int TopLogprobs { get; init; } = -1;
    /// <summary>Keep generating past end-of-generation tokens (llama-server's ignore_eos; benchmarks).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Structured output: restricts the tokens the sequence may produce (one object per request).</summary>
    public Constraints.TokenConstraint? Constraint { get; init; }
    /// <summary>Control tokens shown in the text anyway: the chat format's markers, for its output parser.</summary>
    public IEnumerable<string> PreservedTokens { get; init; } = [];
}

/// <summary>A token of output with its log-probabilities (when asked for).</summary>
public sealed record TokenInfo(int Id, float Logprob, TokenLogprob[]? Top);

/// <summary>A piece of output text and the tokens that produced it.</summary>
public sealed record TextPiece(string Text, IReadOnlyList<TokenInfo> Tokens);

/// <summary>How a generation ended, filled in when its pieces run out.</summary>
public sealed class GenerationOutcome
{
    /// <summary>"stop" or "length" (OpenAI's words).</summary>
    public string FinishReason { get; set; } = "stop";
    public int PromptTokens { get; set; }
    /// <summary>Prompt tokens taken from the prefix cache rather than computed.</summary>
    public int CachedTokens { get; set; }
    public int CompletionTokens { get; set; }
    public TimeSpan PromptTime { get; set; }
    public TimeSpan GenerationTime { get; set; }
}

/// <summary>
/// Runs one request through the engine and turns its tokens into text: incremental UTF-8 decoding, stop strings (the
/// text is held back while it could still become one, and a match cancels the sequence), and the metrics.
/// </summary>
public static class TextGeneration
{
    public static async IAsyncEnumerable<TextPiece> RunAsync(ModelRuntime runtime, ServerMetrics metrics, GenerationSettings settings,
        GenerationOutcome outcome, [EnumeratorCancellation] CancellationToken cancel)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var clock = Stopwatch.StartNew();
        var stream = runtime.Engine.Submit(new GenerationRequest
        {
            Prompt = settings.Prompt,
            Sampling = settings.Sampling,
            MaxTokens = settings.MaxTokens,
            TopLogprobs = settings.TopLogprobs,
            IsEndOfGeneration = settings.IgnoreEos ? null : runtime.Codec.IsEndOfGeneration,
            Constraint = settings.Constraint,
        }, stop.Token);
        outcome.PromptTokens = stream.PromptTokens;
        metrics.PromptTokens(stream.PromptTokens);
        var decoder = runtime.Codec.CreateStreamingDecoder(settings.PreservedTokens);
        string pending = "";
        var tokens = new List<TokenInfo>();
        double last = 0;
        bool stopped = false;
        int longestStop = settings.Stop.Count == 0 ? 0 : settings.Stop.Max(s => s.Length);
        try
        {
            // Tokens that arrived while the client was being written to go out together: one piece, one write.
            var reader = stream.Reader;
            bool done = false;
            while (!done && await reader.WaitToReadAsync(cancel).ConfigureAwait(false))
            {
                while (!done && reader.TryRead(out var token))
                {
                    double now = clock.Elapsed.TotalSeconds;
                    if (outcome.CompletionTokens == 0)
                    {
                        outcome.CachedTokens = stream.CachedTokens;
                        metrics.TimeToFirstToken(now);
                        outcome.PromptTime = clock.Elapsed;
                    }
                    else metrics.InterTokenLatency(now - last);
                    last = now;
                    metrics.GeneratedToken();
                    outcome.CompletionTokens++;
                    if (token.IsEndOfGeneration) { done = true; break; }
                    tokens.Add(new TokenInfo(token.Id, token.Logprob, token.TopLogprobs));
                    pending += decoder.Append(token.Id);
                    if (longestStop > 0 && FirstStop(pending, settings.Stop) is var at and >= 0)
                    {
                        pending = pending[..at];
                        stopped = done = true;
                        stop.Cancel();
                    }
                }
                if (done) break;
                int keep = longestStop > 0 ? HeldBack(pending, settings.Stop) : 0;
                if (pending.Length - keep > 0)
                {
                    yield return new TextPiece(pending[..^keep], tokens.ToArray());
                    tokens.Clear();
                    pending = pending[^keep..];
                }
            }
        }
        finally
        {
            // A stream left early (client gone, stop string) frees its slot at the next step.
            stop.Cancel();
        }
        if (!stopped) pending += decoder.Flush();
        if (pending.Length > 0 || tokens.Count > 0) yield return new TextPiece(pending, tokens.ToArray());
        outcome.GenerationTime = clock.Elapsed - outcome.PromptTime;
        // A grammar that outgrows its automaton's limits mid-answer is the request's doing, not the server's.
        if (stream.Finish == FinishReason.Error && stream.Error is Constraints.GrammarException g)
            throw ApiException.BadRequest($"the output grammar could not be followed: {g.Message}", code: "grammar_too_complex");
        if (stream.Finish == FinishReason.Error)
            throw new ApiException(500, $"generation failed: {stream.Error?.Message}", code: "generation_failed");
        outcome.FinishReason = !stopped && stream.Finish is FinishReason.MaxTokens or FinishReason.ContextFull ? "length" : "stop";
    }

    private static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        int best = -1;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// <summary>How many trailing characters could still be the start of a stop string.</summary>
    private static int HeldBack(string text, IReadOnlyList<string> stops)
    {
        int keep = 0;
        foreach (var s in stops)
            for (int n = Math.Min(s.Length - 1, text.Length); n > keep; n--)
                if (string.CompareOrdinal(text, text.Length - n, s, 0, n) == 0) { keep = n; break; }
        return keep;
    }
}
