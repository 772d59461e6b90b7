using System.Diagnostics;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Sampling;

namespace Kaiyuan.Cli.Benchmarks;

/// <summary>
/// <c>kaiyuan bench --lookup</c>: greedy generation from a prompt whose answer repeats it, plain and with prompt-lookup
/// speculation, run after run on one session so both see the same machine. The prompt's prefill is not timed: the rate
/// counts the tokens after the first, from the first token on.
/// </summary>
internal static class LookupBenchmark
{
    /// <param name="PlainTps">Plain greedy generation from the prompt, tokens/s.</param>
    /// <param name="LookupTps">The same with prompt lookup, tokens/s.</param>
    /// <param name="Drafted">Tokens proposed in the timed runs.</param>
    /// <param name="Accepted">Of those, the ones the model took.</param>
    /// <param name="Identical">Every lookup run produced the plain run's tokens.</param>
    public sealed record Result(int PromptTokens, double PlainTps, double PlainStd, double LookupTps, double LookupStd, long Drafted, long Accepted, bool Identical)
    {
        public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
        public double Speedup => LookupTps / Math.Max(1e-9, PlainTps);
    }

    /// <summary>
    /// The default prompt: a request to rename a method in a short C# file, the file, and the first line of the answer.
    /// A model answering it repeats the file, as code edits and retrieval-augmented answers repeat their input.
    /// </summary>
    public const string CodeEditPrompt = """
        Rename the method ComputeTotal to ComputeSum in this file and change nothing else.

        ```csharp
        using System;
        using System.Collections.Generic;
        using System.Linq;

        namespace Shop.Billing;

        public sealed class Invoice
        {
            private readonly List<LineItem> _items = new();

            public string Customer { get; }
            public DateTime IssuedAt { get; }

            public Invoice(string customer, DateTime issuedAt)
            {
                Customer = customer ?? throw new ArgumentNullException(nameof(customer));
                IssuedAt = issuedAt;
            }

            public void Add(string product, int quantity, decimal unitPrice)
            {
                if (quantity <= 0) throw new ArgumentOutOfRangeException(nameof(quantity), "quantity must be positive");
                if (unitPrice < 0) throw new ArgumentOutOfRangeException(nameof(unitPrice), "a price cannot be negative");
                _items.Add(new LineItem(product, quantity, unitPrice));
            }

            public decimal ComputeTotal(decimal taxRate)
            {
                decimal net = _items.Sum(item => item.Quantity * item.UnitPrice);
                decimal tax = Math.Round(net * taxRate, 2, MidpointRounding.AwayFromZero);
                return net + tax;
            }

            public IEnumerable<string> Lines()
            {
                foreach (var item in _items.OrderBy(i => i.Product, StringComparer.Ordinal))
                    yield return $"{item.Product,-20} {item.Quantity,4} x {item.UnitPrice,8:F2} = {item.Quantity * item.UnitPrice,10:F2}";
                yield return $"{"Total (tax 8%)",-20} {ComputeTotal(0.08m),26:F2}";
            }

            private sealed record LineItem(string Product, int Quantity, decimal UnitPrice);
        }
        ```

        Here is the file with the method renamed:

        ```csharp
        using System;

        """;

    /// <summary>
    /// Plain greedy generation against <paramref name="speculate"/>'s (prompt lookup with up to <paramref name="draftMax"/>
    /// tokens, or the model's multi-token prediction), run after run from <paramref name="prompt"/>.
    /// </summary>
    public static Result Measure(TransformerModel model, int[] prompt, int nGen, int reps, int threads, Kaiyuan.Gguf.GgmlType cacheType, int draftMax,
        bool multiTokenPrediction = false)
    {
        string flag = multiTokenPrediction ? "--mtp" : "--lookup";
        if (nGen < 2) throw new ArgumentException($"{flag} needs -n of at least 2 (the rate counts the tokens after the first)");
        // Each way has its own session: a multi-token-prediction drafter stays with the session it follows.
        using var plainSession = new InferenceSession(model, prompt.Length + nGen + 8, threads, cacheType, maxBatch: prompt.Length);
        using var speculativeSession = new InferenceSession(model, prompt.Length + nGen + 8, threads, cacheType, maxBatch: prompt.Length);
        var greedy = new Sampler(SamplerOptions.Greedy);
        long drafted = 0, accepted = 0;
        var plain = new GenerationOptions { MaxTokens = nGen, IgnoreEndOfGeneration = true };
        var lookup = (multiTokenPrediction ? plain with { MtpDraftTokens = draftMax } : plain with { LookupDraftTokens = draftMax })
            with
        { OnVerified = (proposed, taken) => { drafted += proposed; accepted += taken; } };
        var plainRates = new List<double>();
        var lookupRates = new List<double>();
        bool identical = true;
        for (int rep = 0; rep <= reps; rep++) // the first run warms up caches and the JIT
        {
            var (plainRate, plainIds) = Run(plainSession, plain);
            var (lookupRate, lookupIds) = Run(speculativeSession, lookup);
            identical &= plainIds.SequenceEqual(lookupIds);
            if (rep == 0)
            {
                (drafted, accepted) = (0, 0);
                continue;
            }
            plainRates.Add(plainRate);
            lookupRates.Add(lookupRate);
        }
        return new Result(prompt.Length, Stats.Mean(plainRates), Stats.Std(plainRates), Stats.Mean(lookupRates), Stats.Std(lookupRates), drafted, accepted, identical);

        (double Rate, List<int> Ids) Run(InferenceSession session, GenerationOptions options)
        {
            session.Truncate(0);
            var ids = new List<int>(nGen);
            long first = 0;
            foreach (var token in Generator.Generate(session, prompt, greedy, options))
            {
                if (ids.Count == 0) first = Stopwatch.GetTimestamp();
                ids.Add(token.Id);
            }
            return ((ids.Count - 1) / Stopwatch.GetElapsedTime(first).TotalSeconds, ids);
        }
    }
}
