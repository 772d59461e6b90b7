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
        var logits = session.Evaluate(history.ToArray()).ToArray();
        var mask = options.Constraint is null ? null : new ulong[(logits.Length + 63) >> 6];
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
            int id = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history), allowed);
            if (options.Constraint is { } constraint && !constraint.Accept(id)) yield break;
            yield return new GeneratedToken(id, options.KeepLogits ? logits.ToArray() : null);
            if (!options.IgnoreEndOfGeneration && options.IsEndOfGeneration?.Invoke(id) == true) yield break;
            history.Add(id);
            if (session.Position >= session.ContextLength) yield break;
            if (options.MaxTokens >= 0 && produced + 1 >= options.MaxTokens) yield break;
            session.Evaluate([id]).CopyTo(logits);
        }
    }
}
