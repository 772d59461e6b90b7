using Kaiyuan.Sampling;

namespace Kaiyuan.Inference;

/// <summary>One generated token and, when the caller keeps them, the logits that produced it.</summary>
public readonly record struct GeneratedToken(int Id, float[]? Logits);

/// <summary>Why generation ended.</summary>
public enum StopReason
{
    /// <summary>The token limit was reached.</summary>
    MaxTokens,
    /// <summary>The model produced an end-of-generation token.</summary>
    EndOfGeneration,
    /// <summary>The context window is full.</summary>
    ContextFull,
    /// <summary>The output reached one of the caller's stop strings.</summary>
    StopString,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
}

/// <summary>Limits and stop conditions of one generation.</summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most; negative means until a stop condition or the context is full.</summary>
    public int MaxTokens { get; init; } = -1;
    /// <summary>Keeps generating past end-of-generation tokens (benchmarks, tests); false by default.</summary>
    public bool IgnoreEndOfGeneration { get; init; }
    /// <summary>Tells which token ids end generation (usually the tokenizer's <c>IsEndOfGeneration</c>); null: none does, so only the limits stop it.</summary>
    public Func<int, bool>? IsEndOfGeneration { get; init; }
    /// <summary>Returns with each token a copy of the logits it was sampled from (<see cref="GeneratedToken.Logits"/>); false by default.</summary>
    public bool KeepLogits { get; init; }
    /// <summary>Restricts the tokens that may be produced (structured output); generation ends when it allows none.</summary>
    /// <remarks>A constraint keeps the state of one generation: give each its own (<see cref="Constraints.GrammarConstraint"/> makes them).</remarks>
    public Constraints.TokenConstraint? Constraint { get; init; }
    /// <summary>
    /// Prompt-lookup speculation: up to this many tokens proposed from earlier text per step and checked in one batched
    /// pass (0: off; at most 6 are used, so that pass rounds exactly as single-token steps). The output is the same as
    /// without it; only the speed changes. Hybrid models, whose recurrent state cannot take back rejected tokens, decode
    /// one token at a time.
    /// </summary>
    public int LookupDraftTokens { get; init; }
    /// <summary>
    /// Speculative decoding with a draft model (<c>--model-draft</c>): it proposes up to its
    /// <see cref="Speculative.DraftModel.MaxDraft"/> tokens (at most 6 used) per step, greedily, and the session's model
    /// verifies them in one batched pass. Outputs are the same as without it (sampled ones keep the distribution); it
    /// keeps its state between generations on the same session, so a chat's next turn feeds it only what is new. Not
    /// with <see cref="LookupDraftTokens"/>; null: none.
    /// </summary>
    public Speculative.DraftModel? Draft { get; init; }
    /// <summary>
    /// Multi-token prediction (<c>--mtp</c>): the model's own NextN layer (DeepSeek-V3, GLM-4.5;
    /// <see cref="Models.TransformerModel.HasMultiTokenPrediction"/>) proposes up to this many tokens per step (0: off; at
    /// most 6 used), checked in one batched pass. Outputs are the same as without it (sampled ones keep the
    /// distribution). The layer follows the session from its first use on, keeping its own cache. Not with the other
    /// kinds of speculation.
    /// </summary>
    public int MtpDraftTokens { get; init; }
    /// <summary>
    /// Called after each speculative pass is settled with the tokens proposed and how many of them were accepted (a
    /// draft model's or prompt lookup's acceptance, for benchmarks and metrics); null: not told.
    /// </summary>
    public Action<int, int>? OnVerified { get; init; }
}

/// <summary>
/// The decode loop: prefill the prompt in one batch, then sample and feed back one token at a time until a stop
/// condition. Text-level stops (stop strings) are the caller's, who sees every token as it is produced.
/// </summary>
public static class Generator
{
    /// <summary>
    /// Evaluates <paramref name="prompt"/> (not empty) from the session's current position and yields each token as it
    /// is sampled, lazily. An end-of-generation token is yielded, then ends the sequence; so do
    /// <see cref="GenerationOptions.MaxTokens"/>, a full context and cancellation, without an exception. A prompt that
    /// does not fit throws <see cref="ContextOverflowException"/>.
    /// </summary>
    public static IEnumerable<GeneratedToken> Generate(InferenceSession session, IReadOnlyList<int> prompt, Sampler sampler,
        GenerationOptions options, CancellationToken cancel = default)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty");
        var history = new List<int>(prompt);
        int vocab = session.Model.VocabSize;
        // At most 6 drafts, so the verifying pass (7 tokens) stays below the batch size where the matmuls switch to their
        // panel kernels: its rows then round exactly as single-token steps do, and greedy output is the same tokens.
        const int MaxVerified = Kernels.MatMul.PanelMinTokens - 2;
        if ((options.Draft is not null ? 1 : 0) + (options.LookupDraftTokens > 0 ? 1 : 0) + (options.MtpDraftTokens > 0 ? 1 : 0) > 1)
            throw new ArgumentException("choose one kind of speculation: prompt lookup, a draft model or multi-token prediction");
        // The multi-token-prediction drafter follows the session before the prompt, whose hidden states it needs.
        Speculative.IDraftProposer? proposer = options.Draft is { } draftModel ? draftModel.ProposerFor(session)
            : options.LookupDraftTokens > 0 && !session.Model.IsRecurrent ? new Speculative.PromptLookup(Math.Min(options.LookupDraftTokens, MaxVerified))
            : options.MtpDraftTokens > 0 ? Speculative.MtpSessionProposer.For(session, Math.Min(options.MtpDraftTokens, MaxVerified))
            : null;
        var logits = session.Evaluate(history.ToArray()).ToArray();
        var mask = options.Constraint is null ? null : new ulong[(logits.Length + 63) >> 6];
        // A speculative pass fed [token, draft…] and got a row of logits after each; the rows are used in turn while the
        // sampled tokens agree with the draft, and the cache is cut back at the first that does not.
        var fed = new int[1 + Math.Min(proposer?.MaxDraft ?? 0, MaxVerified)];
        float[]? rows = null;
        int fedCount = 0, row = 0, passStart = 0;
        for (int produced = 0; options.MaxTokens < 0 || produced < options.MaxTokens; produced++)
        {
            if (cancel.IsCancellationRequested) yield break;
            ReadOnlySpan<ulong> allowed = default;
            if (options.Constraint is { IsActive: true } active)
            {
                active.FillMask(mask);
                if (!mask.AsSpan().ContainsAnyExcept(0UL)) yield break; // the constraint allows nothing more
                allowed = mask;
            }
            var current = rows is null ? logits : rows.AsSpan(row * vocab, vocab);
            int id = sampler.Sample(current, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history), allowed);
            if (options.Constraint is { } constraint && !constraint.Accept(id)) yield break;
            yield return new GeneratedToken(id, options.KeepLogits ? (rows is null ? logits : rows.AsSpan(row * vocab, vocab)).ToArray() : null);
            if (!options.IgnoreEndOfGeneration && options.IsEndOfGeneration?.Invoke(id) == true) yield break;
            history.Add(id);
            if (options.MaxTokens >= 0 && produced + 1 >= options.MaxTokens) yield break;
            if (rows is not null)
            {
                // The draft token after this row was what the model chose: the next row already holds its logits.
                if (row + 1 < fedCount && fed[row + 1] == id)
                {
                    row++;
                    continue;
                }
                proposer!.Observe(fedCount - 1, row);
                options.OnVerified?.Invoke(fedCount - 1, row);
                session.Truncate(passStart + row + 1);
                rows = null;
            }
            if (session.Position >= session.ContextLength) yield break;
            int drafted = 0;
            if (proposer is not null)
            {
                // Never past the context or the token limit: a draft beyond either could not be kept.
                int room = Math.Min(session.ContextLength - session.Position - 1,
                    options.MaxTokens < 0 ? int.MaxValue : options.MaxTokens - produced - 2);
                drafted = proposer.Propose(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history), fed.AsSpan(1), room);
            }
            if (drafted == 0)
            {
                session.Evaluate([id]).CopyTo(logits);
                continue;
            }
            fed[0] = id;
            fedCount = 1 + drafted;
            passStart = session.Position;
            rows = session.EvaluateRows(fed.AsSpan(0, fedCount));
            row = 0;
        }
    }
}
