using System.Threading.Channels;
using Kaiyuan.Sampling;

namespace Kaiyuan.Scheduling;

/// <summary>Why a sequence stopped.</summary>
internal enum FinishReason
{
    /// <summary>The model produced an end-of-generation token.</summary>
    EndOfGeneration,
    /// <summary>The request's token limit was reached, or a constraint left no token to choose (OpenAI's "length").</summary>
    MaxTokens,
    /// <summary>The context window is full.</summary>
    ContextFull,
    /// <summary>The caller cancelled (client disconnect, stop string, shutdown).</summary>
    Cancelled,
    /// <summary>The forward pass failed; <see cref="GenerationStream.Error"/> says why.</summary>
    Error,
}

/// <summary>A token and its log-probability.</summary>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>One generated token as it leaves the scheduler.</summary>
/// <param name="Id">The token id.</param>
/// <param name="IsEndOfGeneration">True for the end-of-generation token that stopped the sequence (not text).</param>
/// <param name="Logprob">Log-probability of the token under the model's raw logits (NaN unless asked for).</param>
/// <param name="TopLogprobs">The most likely alternatives, when asked for.</param>
internal sealed record GeneratedToken(int Id, bool IsEndOfGeneration, float Logprob, TokenLogprob[]? TopLogprobs)
{
    /// <summary>The log-probabilities of <see cref="GenerationRequest.ScoredTokens"/> at this position, in their order (null unless asked for).</summary>
    public TokenLogprob[]? Scored { get; init; }
}

/// <summary>What one sequence asks of the scheduler.</summary>
internal sealed record GenerationRequest
{
    /// <summary>Prompt token ids, used as given.</summary>
    public required IReadOnlyList<int> Prompt { get; init; }
    public SamplerOptions Sampling { get; init; } = SamplerOptions.Greedy;
    /// <summary>Tokens to generate at most; negative means until end of generation or a full context.</summary>
    public int MaxTokens { get; init; } = -1;
    /// <summary>-1: no log-probabilities; 0: the chosen token's; k &gt; 0: also the k most likely tokens.</summary>
    public int TopLogprobs { get; init; } = -1;
    /// <summary>Token ids whose log-probabilities each generated token reports, wherever they rank (multiple-choice scoring); null: none.</summary>
    public IReadOnlyList<int>? ScoredTokens { get; init; }
    /// <summary>Stops the sequence after a token for which this returns true (null: never).</summary>
    public Func<int, bool>? IsEndOfGeneration { get; init; }
    /// <summary>Restricts the tokens this sequence may produce (structured output); one object per request.</summary>
    public Constraints.TokenConstraint? Constraint { get; init; }
}

/// <summary>
/// The tokens of one submitted sequence, in order, as they are produced. Enumerate it (or read <see cref="Reader"/>);
/// when it ends, <see cref="Finish"/> says why. Cancel the token given to Submit to stop the sequence early: its slot is
/// freed within one scheduler step.
/// </summary>
internal sealed class GenerationStream : IAsyncEnumerable<GeneratedToken>
{
    private readonly Channel<GeneratedToken> _channel = Channel.CreateUnbounded<GeneratedToken>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = true, AllowSynchronousContinuations = false });

    internal GenerationStream(int promptTokens) => PromptTokens = promptTokens;

    public int PromptTokens { get; }
    /// <summary>Prompt tokens whose KV came from the prefix cache (not computed); set before the first token.</summary>
    public int CachedTokens { get; internal set; }
    public ChannelReader<GeneratedToken> Reader => _channel.Reader;
    /// <summary>Set before the stream completes.</summary>
    public FinishReason? Finish { get; private set; }
    public Exception? Error { get; private set; }

    internal void Write(GeneratedToken token) => _channel.Writer.TryWrite(token);

    internal void Complete(FinishReason reason, Exception? error = null)
    {
        if (Finish is not null) return;
        Error = error;
        Finish = reason;
        _channel.Writer.TryComplete();
    }

    public IAsyncEnumerator<GeneratedToken> GetAsyncEnumerator(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
}

/// <summary>The scheduler's queue is full: try again later (HTTP 429).</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>The scheduler no longer accepts work (shutting down; HTTP 503).</summary>
public sealed class SchedulerClosedException(string message) : Exception(message);

/// <summary>The paged KV pool and its prefix cache at a point in time.</summary>
/// <param name="UsedBlocks">Blocks held by running sequences.</param>
/// <param name="CachedBlocks">Blocks of finished sequences kept for reuse (evicted least recently used first).</param>
/// <param name="FreeBlocks">Blocks that can be handed out without evicting anything.</param>
/// <param name="CapacityBlocks">Blocks the pool may hold at most.</param>
/// <param name="BlockTokens">Tokens per block.</param>
/// <param name="BytesPerBlock">Bytes per block across all layers.</param>
/// <param name="ResidentBytes">Pool memory that exists now.</param>
/// <param name="HitTokens">Prompt tokens taken from the cache instead of computed, so far.</param>
/// <param name="PrefillTokens">Prompt tokens computed, so far.</param>
/// <param name="Evictions">Cached blocks evicted to make room, so far.</param>
/// <param name="Preemptions">Sequences paused because the pool ran out, so far.</param>
/// <param name="CachingEnabled">False with a cache size of 0.</param>
/// <param name="PromptCacheTokens">Prompt tokens whose rows were loaded from the prompt cache on disk, so far (part of the hit tokens).</param>
public sealed record KvCacheReport(int UsedBlocks, int CachedBlocks, int FreeBlocks, int CapacityBlocks, int BlockTokens, long BytesPerBlock,
    long ResidentBytes, long HitTokens, long PrefillTokens, long Evictions, long Preemptions, bool CachingEnabled, long PromptCacheTokens = 0);

/// <summary>
/// Decode steps so far by the number of threads they ran on: fewer than <paramref name="Threads"/> where timing showed
/// fewer to be faster, as beside another busy process.
/// </summary>
/// <param name="Threads">Threads the engine was given.</param>
/// <param name="PassesByThreads">Forward passes of at most 16 tokens, by threads used (index = threads; index 0 unused).</param>
public sealed record DecodeThreadsReport(int Threads, IReadOnlyList<long> PassesByThreads);

/// <summary>Speculative decoding so far: draft tokens proposed and the share the model confirmed.</summary>
/// <param name="DraftedTokens">Draft tokens verified so far.</param>
/// <param name="AcceptedTokens">Draft tokens the model produced itself, so far (each saved a step).</param>
public sealed record SpeculationReport(long DraftedTokens, long AcceptedTokens)
{
    /// <summary>Accepted over drafted tokens (0 before any draft).</summary>
    public double AcceptanceRate => DraftedTokens == 0 ? 0 : (double)AcceptedTokens / DraftedTokens;
}

/// <summary>A point-in-time view of the scheduler's load.</summary>
public readonly record struct SchedulerLoad(int QueueDepth, int BusySlots, int Slots);

/// <summary>
/// Something that turns prompts into token streams and embeddings: the continuous-batching scheduler over a real model,
/// or a scripted stand-in in tests.
/// </summary>
internal interface IGenerationEngine
{
    int ContextLength { get; }
    int VocabSize { get; }
    SchedulerLoad Load { get; }
    /// <summary>The KV pool and prefix cache (null for engines without one).</summary>
    KvCacheReport? Cache => null;
    /// <summary>Speculative decoding's figures (null where it is off).</summary>
    SpeculationReport? Speculation => null;
    /// <summary>Decode steps by the threads they ran on (null for engines without a worker pool).</summary>
    DecodeThreadsReport? DecodeThreads => null;

    /// <summary>Queues a sequence. Throws <see cref="QueueFullException"/>, <see cref="SchedulerClosedException"/>,
    /// or <see cref="Inference.ContextOverflowException"/> when the prompt does not fit.</summary>
    GenerationStream Submit(GenerationRequest request, CancellationToken cancel);

    /// <summary>One L2-normalised embedding per input (pooled final hidden states).</summary>
    Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel);

    /// <summary>Stops accepting work and waits until every queued and running sequence has finished.</summary>
    Task DrainAsync(CancellationToken cancel);
}
