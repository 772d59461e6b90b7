namespace Kaiyuan.Speculative;

/// <summary>
/// Prompt-lookup drafting (n-gram speculation, no second model): the tokens that followed the earlier occurrence of the
/// sequence's last tokens that matches most of them (2–8, the latest of equals) are proposed as its next ones. Strong
/// where an answer copies its input — code edits, retrieval-augmented answers, extraction — and free elsewhere, as
/// nothing is proposed without a match. The target model checks every proposal in one batched pass, so the output does
/// not change.
/// </summary>
internal sealed class PromptLookup(int maxDraft, int maxNgram = 8, int minNgram = 2) : IDraftProposer
{
    /// <summary>Most tokens proposed at once.</summary>
    public int MaxDraft { get; } = Math.Max(1, maxDraft);

    // Shrinks after a miss, grows while taken (DraftBudget): a sequence that stopped copying wastes few rows.
    private int _budget = Math.Max(1, maxDraft);

    /// <summary>
    /// Writes up to <see cref="MaxDraft"/> proposed continuations of <paramref name="history"/> (at most
    /// <paramref name="room"/>) into <paramref name="draft"/>; returns how many (0: no earlier occurrence).
    /// </summary>
    public int Propose(ReadOnlySpan<int> history, Span<int> draft, int room)
    {
        int limit = Math.Min(Math.Min(_budget, room), draft.Length);
        if (limit <= 0 || history.Length < minNgram + 1) return 0;
        // One backward pass over the occurrences of the last token (a vectorised search), keeping, among those that leave
        // a full draft after them, the one with the longest matching n-gram before it, and among equals the latest: what
        // the text did most recently is the best guess, and up to eight tokens of context tell apart lines of code that
        // share their last few. A match too close to the end for a full draft counts only when no other does: inside a
        // run of repeats the latest match is the run's own previous step, whose long self-overlap would otherwise win
        // with a one-token draft.
        int last = history[^1], bestEnd = -1, bestLength = minNgram - 1, bestCount = 0;
        bool bestFull = false;
        for (int end = history.Length - 2; end >= 0; end--)
        {
            end = history[..(end + 1)].LastIndexOf(last);
            if (end < 0) break;
            int length = 1;
            while (length < maxNgram && end - length >= 0 && history[end - length] == history[^(length + 1)]) length++;
            int count = Math.Min(limit, history.Length - 1 - end);
            bool full = count == limit;
            if (length >= minNgram && (full && !bestFull || full == bestFull && (length > bestLength || (length == bestLength && count > bestCount))))
            {
                (bestEnd, bestLength, bestCount, bestFull) = (end, length, count, full);
                if (length == maxNgram && full) break;
            }
        }
        if (bestEnd < 0) return 0;
        history.Slice(bestEnd + 1, bestCount).CopyTo(draft);
        return bestCount;
    }

    /// <summary>Learns from a verified proposal: <paramref name="accepted"/> of <paramref name="proposed"/> tokens were taken.</summary>
    public void Observe(int proposed, int accepted)
    {
        if (proposed == 0) return;
        _budget = DraftBudget.Next(_budget, MaxDraft, proposed, accepted);
    }
}
