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
