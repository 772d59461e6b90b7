using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;

namespace Kaiyuan.Speculative;

/// <summary>
/// Speculative decoding with a draft model (<c>--model-draft</c>): a smaller model with the target's vocabulary proposes
/// the next tokens greedily and the target verifies them all in one batched pass. A draft token is kept exactly when the
/// token sampled from the target's own distribution equals it; for a greedy (deterministic) draft that is speculative
/// sampling's accept/reject rule, so greedy output is the target's token for token and sampled output keeps its
/// distribution. The draft keeps its own KV cache per sequence, cut back to the accepted tokens and fed only what is new.
/// Not thread-safe: one generation at a time uses it (the server gives each slot its own state).
/// </summary>
public sealed class DraftModel
{
    /// <summary>
    /// A draft for <paramref name="target"/>: <paramref name="model"/> must share its vocabulary (the same token texts for
    /// the same ids; the embedding tables may differ by a few padding rows) and neither may be a hybrid model, whose
    /// recurrent state cannot take back rejected tokens.
    /// </summary>
    /// <param name="model">The draft model (not owned).</param>
    /// <param name="target">The model whose output it speeds up (not owned).</param>
    /// <param name="maxDraft">Tokens proposed per step at most (a single sequence verifies at most 6).</param>
    /// <exception cref="ArgumentException">The vocabularies differ, or a model is hybrid.</exception>
    public DraftModel(TransformerModel model, TransformerModel target, int maxDraft = 6)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDraft, 1);
        EnsureCompatible(model, target);
        Model = model;
        Target = target;
        MaxDraft = maxDraft;
    }

    /// <summary>The draft model.</summary>
    public TransformerModel Model { get; }
    /// <summary>The model it drafts for.</summary>
    public TransformerModel Target { get; }
    /// <summary>Tokens proposed per step at most.</summary>
    public int MaxDraft { get; }

    private DraftModelProposer? _single;
    private long _drafted, _accepted;

    /// <summary>Tokens this draft proposed and the target verified so far, and how many of them it accepted (every sequence together).</summary>
    public Scheduling.SpeculationReport Speculation => new(Interlocked.Read(ref _drafted), Interlocked.Read(ref _accepted));

    internal void Count(int proposed, int accepted)
    {
        Interlocked.Add(ref _drafted, proposed);
        Interlocked.Add(ref _accepted, accepted);
    }

    /// <summary>
    /// The draft state that follows one single-sequence session (kept across generations, so a chat's next turn feeds
    /// the draft only what changed).
    /// </summary>
    internal DraftModelProposer ProposerFor(InferenceSession target)
    {
        if (target.Model != Target) throw new ArgumentException("the draft model was made for another target model");
        if (_single is null || _single.ContextLength != target.ContextLength || _single.Pool != target.Pool)
            _single = CreateProposer(target.ContextLength, target.Pool);
        return _single;
    }

    /// <summary>A fresh draft state (its own KV cache) for one sequence at a time, computing on <paramref name="pool"/>.</summary>
    internal DraftModelProposer CreateProposer(int contextLength, WorkerPool pool) => new(this, contextLength, pool);

    /// <summary>Throws a one-line <see cref="ArgumentException"/> when <paramref name="draft"/> cannot draft for <paramref name="target"/>.</summary>
    private static void EnsureCompatible(TransformerModel draft, TransformerModel target)
    {
        string draftName = Path.GetFileName(draft.File.Path), targetName = Path.GetFileName(target.File.Path);
        if (draft.IsRecurrent || target.IsRecurrent)
            throw new ArgumentException($"{(draft.IsRecurrent ? draftName : targetName)} is a hybrid model: its recurrent state cannot take back rejected draft tokens, so it cannot use a draft model");
        const string Tokens = "tokenizer.ggml.tokens";
        string[] d = draft.File.Metadata.Contains(Tokens) ? draft.File.Metadata.GetStringArray(Tokens)
            : throw new ArgumentException($"{draftName} has no vocabulary to compare with {targetName}'s");
        string[] t = target.File.Metadata.Contains(Tokens) ? target.File.Metadata.GetStringArray(Tokens)
            : throw new ArgumentException($"{targetName} has no vocabulary to compare with {draftName}'s");
        // Models of one family may pad their token lists differently (Qwen2.5 0.5B and 7B); the ids both have must agree.
        const int Padding = 128;
        int mismatch = -1;
        for (int i = 0; i < Math.Min(d.Length, t.Length) && mismatch < 0; i++)
            if (!string.Equals(d[i], t[i], StringComparison.Ordinal)) mismatch = i;
        if (mismatch >= 0 || Math.Abs(d.Length - t.Length) > Padding)
            throw new ArgumentException(mismatch >= 0
                ? $"the draft model {draftName} has another vocabulary than {targetName} (token {mismatch} differs); a draft model must share the target's vocabulary"
                : $"the draft model {draftName} has another vocabulary than {targetName} ({d.Length} tokens against {t.Length}); a draft model must share the target's vocabulary");
    }
}

/// <summary>
/// One sequence's draft state (<c>generate</c>, <c>run</c>, the in-process API): a one-slot <see cref="DraftBatch"/>,
/// prepared at each proposal, so a lone sequence drafts exactly as a server slot does.
/// </summary>
internal sealed class DraftModelProposer(DraftModel owner, int contextLength, WorkerPool pool) : IDraftProposer
{
    private readonly DraftBatch _batch = new(owner, slots: 1, contextLength, pool);
    // The history handed to the batch (which keeps sequences as lists), refilled at each proposal.
    private readonly List<int> _history = [];
    private readonly (int Slot, List<int> History, int Room)[] _request = new (int, List<int>, int)[1];

    public int ContextLength => contextLength;
    public WorkerPool Pool => pool;
    public int MaxDraft => owner.MaxDraft;

    public int Propose(ReadOnlySpan<int> history, Span<int> draft, int room)
    {
        _history.Clear();
        _history.AddRange(history);
        _request[0] = (0, _history, Math.Min(room, draft.Length));
        _batch.Prepare(_request);
        return _batch.ForSlot(0).Propose(history, draft, room);
    }

    public void Observe(int proposed, int accepted) => _batch.ForSlot(0).Observe(proposed, accepted);
}
