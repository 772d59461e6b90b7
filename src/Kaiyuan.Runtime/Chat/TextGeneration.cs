using System.Diagnostics;
using System.Runtime.CompilerServices;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;

namespace Kaiyuan.Chat;

/// <summary>What one completion asks for, after the API request has been validated.</summary>
public sealed record GenerationSettings
{
    /// <summary>The prompt's token ids.</summary>
    public required IReadOnlyList<int> Prompt { get; init; }
    /// <summary>How tokens are chosen (greedy by default).</summary>
    public SamplerOptions Sampling { get; init; } = SamplerOptions.Greedy;
    /// <summary>Tokens the answer may have at most; -1: until the context is full.</summary>
    public int MaxTokens { get; init; } = -1;
    /// <summary>Strings that end the answer where they appear (they are not part of it).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Alternatives reported with each token's log-probability; -1: no log-probabilities.</summary>
    public int TopLogprobs { get; init; } = -1;
    /// <summary>Token ids whose log-probabilities every generated token reports in <see cref="TokenInfo.Scored"/>, however
    /// unlikely they are (scoring a multiple-choice answer by its letters); null: none.</summary>
    public IReadOnlyList<int>? ScoredTokens { get; init; }
    /// <summary>Keep generating past end-of-generation tokens (llama-server's ignore_eos; benchmarks).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Structured output: restricts the tokens the sequence may produce (one object per request).</summary>
    /// <remarks>Made by <see cref="StructuredOutput.ForChatAsync"/> or <see cref="StructuredOutput.ForPromptAsync"/>.</remarks>
    public Constraints.TokenConstraint? Constraint { get; init; }
    /// <summary>Control tokens shown in the text anyway: the chat format's markers, for its output parser.</summary>
    public IEnumerable<string> PreservedTokens { get; init; } = [];
}

/// <summary>A token of output with its log-probabilities (when asked for).</summary>
/// <param name="Id">The token.</param>
/// <param name="Logprob">Its log-probability (0 when not asked for).</param>
/// <param name="Top">The most likely alternatives at its position, when asked for.</param>
public sealed record TokenInfo(int Id, float Logprob, TokenLogprob[]? Top)
{
    /// <summary>The log-probabilities of <see cref="GenerationSettings.ScoredTokens"/> at this token's position, in their order; null unless asked for.</summary>
    public TokenLogprob[]? Scored { get; init; }
}

/// <summary>A piece of output text and the tokens that produced it.</summary>
/// <param name="Text">The text (whole UTF-8 characters; text that could still become a stop string is held back).</param>
/// <param name="Tokens">The tokens behind it.</param>
public sealed record TextPiece(string Text, IReadOnlyList<TokenInfo> Tokens);

/// <summary>How a generation ended, filled in when its pieces run out.</summary>
public sealed class GenerationOutcome
{
    /// <summary>"stop" or "length" (OpenAI's words).</summary>
    public string FinishReason { get; internal set; } = "stop";
    /// <summary>The stop string that ended the answer (null: it ended otherwise); Anthropic's API reports which one.</summary>
    public string? StopSequence { get; internal set; }
    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; internal set; }
    /// <summary>Prompt tokens taken from the prefix cache rather than computed.</summary>
    public int CachedTokens { get; internal set; }
    /// <summary>Tokens generated (an end-of-generation token included).</summary>
    public int CompletionTokens { get; internal set; }
    /// <summary>From submission to the first token: queueing and prefill.</summary>
    public TimeSpan PromptTime { get; internal set; }
    /// <summary>From the first token to the last.</summary>
    public TimeSpan GenerationTime { get; internal set; }
}

/// <summary>
/// One request running in the engine, its tokens turned into text: incremental UTF-8 decoding, stop strings (the text is
/// held back while it could still become one, and a match cancels the sequence), and the metrics. <see cref="Start"/>
/// submits at once, so the engine's refusals (queue full, context overflow, shutting down) are thrown before a response
/// is started and keep their status; a stream can then send its headers and wait for the first token. Enumerate it once
/// for its pieces; <see cref="Outcome"/> is complete when they run out. Disposing it stops the sequence if still running.
/// </summary>
public sealed class TextGeneration : IAsyncEnumerable<TextPiece>, IDisposable
{
    private readonly ModelRuntime _runtime;
    private readonly IGenerationMetrics? _metrics;
    private readonly GenerationSettings _settings;
    private readonly CancellationTokenSource _stop;
    private readonly GenerationStream _stream;
    private readonly Stopwatch _clock;
    private int _enumerated;

    private TextGeneration(ModelRuntime runtime, IGenerationMetrics? metrics, GenerationSettings settings, CancellationToken cancel)
    {
        _runtime = runtime;
        _metrics = metrics;
        _settings = settings;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        _clock = Stopwatch.StartNew();
        try
        {
            _stream = runtime.Engine.Submit(new GenerationRequest
            {
                Prompt = settings.Prompt,
                Sampling = settings.Sampling,
                MaxTokens = settings.MaxTokens,
                TopLogprobs = settings.TopLogprobs,
                ScoredTokens = settings.ScoredTokens,
                IsEndOfGeneration = settings.IgnoreEos ? null : runtime.Codec.IsEndOfGeneration,
                Constraint = settings.Constraint,
            }, _stop.Token);
        }
        catch
        {
            _stop.Dispose();
            throw;
        }
        Outcome.PromptTokens = _stream.PromptTokens;
        metrics?.PromptTokens(_stream.PromptTokens);
    }

    /// <summary>Submits the request to the engine now; throws what the engine throws when it refuses it.</summary>
    public static TextGeneration Start(ModelRuntime runtime, IGenerationMetrics? metrics, GenerationSettings settings, CancellationToken cancel) =>
        new(runtime, metrics, settings, cancel);

    /// <summary>How the generation ended: complete once the pieces have run out.</summary>
    public GenerationOutcome Outcome { get; } = new();

    /// <summary>
    /// Waits until the model's first token is out (or the generation has ended), calling <paramref name="keepAlive"/>
    /// every <paramref name="interval"/> meanwhile: on a CPU, a long prompt (or a queue) can take minutes before the first
    /// token, and a client (or proxy) that hears nothing for that long gives up, or silently sends the request again.
    /// </summary>
    public async Task WaitForFirstTokenAsync(TimeSpan interval, Func<Task> keepAlive)
    {
        // Only waits: the token stays in the channel for the enumeration. Disposing cancels a wait left behind.
        var ready = _stream.Reader.WaitToReadAsync(_stop.Token).AsTask();
        using (var timer = new PeriodicTimer(interval))
            while (await Task.WhenAny(ready, timer.WaitForNextTickAsync().AsTask()).ConfigureAwait(false) != ready)
                await keepAlive().ConfigureAwait(false);
        await ready.ConfigureAwait(false);
    }

    /// <summary>The output, a piece at a time; it can be read once.</summary>
    /// <exception cref="RequestException">The generation failed (a grammar that outgrew its limits is a 400; anything else a 500).</exception>
    public async IAsyncEnumerator<TextPiece> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _enumerated, 1) != 0) throw new InvalidOperationException("a generation's pieces can be read only once");
        using var registration = cancellationToken.Register(_stop.Cancel);
        var settings = _settings;
        var outcome = Outcome;
        var decoder = _runtime.Codec.CreateStreamingDecoder(settings.PreservedTokens);
        string pending = "";
        var tokens = new List<TokenInfo>();
        double last = 0;
        bool stopped = false;
        int longestStop = settings.Stop.Count == 0 ? 0 : settings.Stop.Max(s => s.Length);
        try
        {
            // Tokens that arrived while the client was being written to go out together: one piece, one write.
            var reader = _stream.Reader;
            bool done = false;
            while (!done && await reader.WaitToReadAsync(_stop.Token).ConfigureAwait(false))
            {
                while (!done && reader.TryRead(out var token))
                {
                    double now = _clock.Elapsed.TotalSeconds;
                    if (outcome.CompletionTokens == 0)
                    {
                        outcome.CachedTokens = _stream.CachedTokens;
                        _metrics?.TimeToFirstToken(now);
                        outcome.PromptTime = _clock.Elapsed;
                    }
                    else _metrics?.InterTokenLatency(now - last);
                    last = now;
                    _metrics?.GeneratedToken();
                    outcome.CompletionTokens++;
                    if (token.IsEndOfGeneration) { done = true; break; }
                    tokens.Add(new TokenInfo(token.Id, token.Logprob, token.TopLogprobs) { Scored = token.Scored });
                    pending += decoder.Append(token.Id);
                    if (longestStop > 0 && FirstStop(pending, settings.Stop, out string? matched) is var at and >= 0)
                    {
                        pending = pending[..at];
                        outcome.StopSequence = matched;
                        stopped = done = true;
                        _stop.Cancel();
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
            _stop.Cancel();
        }
        if (!stopped) pending += decoder.Flush();
        if (pending.Length > 0 || tokens.Count > 0) yield return new TextPiece(pending, tokens.ToArray());
        outcome.GenerationTime = _clock.Elapsed - outcome.PromptTime;
        // A grammar that outgrows its automaton's limits mid-answer is the request's doing, not the server's.
        if (_stream.Finish == FinishReason.Error && _stream.Error is Constraints.GrammarException g)
            throw RequestException.BadRequest($"the output grammar could not be followed: {g.Message}", code: "grammar_too_complex");
        if (_stream.Finish == FinishReason.Error)
            throw new RequestException(500, $"generation failed: {_stream.Error?.Message}", code: "generation_failed");
        outcome.FinishReason = !stopped && _stream.Finish is FinishReason.MaxTokens or FinishReason.ContextFull ? "length" : "stop";
    }

    /// <summary>Stops the sequence if it is still running (a response abandoned before or while reading it).</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }

    private static int FirstStop(string text, IReadOnlyList<string> stops, out string? matched)
    {
        int best = -1;
        matched = null;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best))
            {
                best = i;
                matched = s;
            }
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
