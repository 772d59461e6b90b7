namespace Kaiyuan.Speculative;

/// <summary>
/// Proposes a sequence's next tokens for the target model to verify in one batched pass (prompt lookup, a draft model).
/// A proposal must depend only on the accepted history: the verifier keeps a draft token exactly when the token it
/// samples from the target's own distribution equals it, which is speculative sampling's accept/reject rule for a
/// deterministic draft (accepted with probability p(x); a rejection samples p without x), so outputs keep the target's
/// distribution and greedy output is the same tokens.
/// </summary>
internal interface IDraftProposer
{
    /// <summary>Most tokens proposed at once.</summary>
    int MaxDraft { get; }

    /// <summary>
    /// Writes up to <see cref="MaxDraft"/> proposed continuations of <paramref name="history"/> (at most
    /// <paramref name="room"/>) into <paramref name="draft"/>; returns how many (0: nothing to propose).
    /// </summary>
    int Propose(ReadOnlySpan<int> history, Span<int> draft, int room);

    /// <summary>Learns from a verified proposal: <paramref name="accepted"/> of <paramref name="proposed"/> tokens were taken.</summary>
    void Observe(int proposed, int accepted);
}

/// <summary>How many tokens a proposer offers next, for lookup and draft alike.</summary>
internal static class DraftBudget
{
    /// <summary>
    /// Proposals shrink after a miss (to one more than was taken) and grow back by two while they are taken whole, so a
    /// stretch the proposer guesses badly costs few thrown-away rows.
    /// </summary>
    public static int Next(int budget, int maxDraft, int proposed, int accepted) =>
        accepted == proposed ? Math.Min(maxDraft, budget + 2) : Math.Max(1, accepted + 1);
}

/// <summary>
/// A slot's draft made ahead in a batched step (a draft model's, the NextN layer's) and handed out when its sequence
/// asks; what the target then takes paces the next (<see cref="DraftPacing"/>).
/// </summary>
internal abstract class PreparedDraft(int capacity, int maxDraft, int firstBudget = 0) : IDraftProposer
{
    public readonly int[] Draft = new int[capacity];
    public DraftPacing Pacing = new(maxDraft, firstBudget);
    // Tokens prepared this step, and the most it may prepare.
    public int Count, Limit;

    public abstract int MaxDraft { get; }

    public int Propose(ReadOnlySpan<int> history, Span<int> draft, int room)
    {
        // Prepared this step for this sequence (the scheduler prepares every decoding sequence before asking).
        int n = Math.Min(Math.Min(Count, room), draft.Length);
        Draft.AsSpan(0, n).CopyTo(draft);
        Count = 0;
        return n;
    }

    public void Observe(int proposed, int accepted)
    {
        if (proposed == 0) return;
        Counted(proposed, accepted);
        Pacing.Observe(proposed, accepted);
    }

    /// <summary>Adds a verified proposal to its owner's totals.</summary>
    protected abstract void Counted(int proposed, int accepted);
}
