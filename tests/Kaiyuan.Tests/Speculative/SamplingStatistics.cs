using Kaiyuan.Inference;

namespace Kaiyuan.Tests.Speculative;

/// <summary>What the speculative-sampling tests share: seeds far apart, and a two-sample test of sampled outcomes.</summary>
internal static class SamplingStatistics
{
    /// <summary>
    /// Seeds far apart: System.Random's seeded generator gives correlated first draws for adjacent seeds, which would
    /// make the two groups' samples differ by their seeds rather than by the decoding.
    /// </summary>
    public static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>
    /// Two-sample chi-square over outcomes seen at least 10 times in all (the rest pooled), each of the two groups
    /// <paramref name="runs"/> samples: the counts (<c>[plain, speculative]</c> per outcome) must not tell the groups
    /// apart at the 0.999 level (Wilson–Hilferty quantile): a true difference fails this, chance does not.
    /// </summary>
    public static void AssertSameDistribution(IEnumerable<int[]> counts, int runs)
    {
        var cells = counts.Where(c => c[0] + c[1] >= 10).ToList();
        int[] rest = [runs - cells.Sum(c => c[0]), runs - cells.Sum(c => c[1])];
        if (rest[0] + rest[1] > 0) cells.Add(rest);
        double chi2 = cells.Sum(c => Math.Pow(c[0] - c[1], 2) / (c[0] + c[1]));
        int df = cells.Count - 1;
        Assert.True(df >= 3, $"only {df + 1} outcome classes");
        double z = 3.09, bound = df * Math.Pow(1 - 2.0 / (9 * df) + z * Math.Sqrt(2.0 / (9 * df)), 3);
        Assert.True(chi2 < bound, $"chi2 {chi2:F1} over {df} degrees of freedom (bound {bound:F1})");
    }

    /// <summary>
    /// Samples <paramref name="runs"/> seeded generations each way (<paramref name="generate"/> with speculation off, then
    /// on: it makes the session, generates and returns the ids), checks that drafts were taken and some rejected (what
    /// the accept/reject rule is about; without drafts each run feeds 3 tokens in 3 passes after its prompt), and that
    /// the second and third tokens' joint outcomes cannot tell the two apart.
    /// </summary>
    public static void AssertSpeculationKeepsTheDistribution(int runs, int promptLength, Func<bool, ulong, (InferenceSession Session, int[] Ids)> generate)
    {
        var counts = new Dictionary<(int, int), int[]>();
        long fed = 0, kept = 0, passes = 0;
        foreach (int mode in new[] { 0, 1 })
            for (int run = 0; run < runs; run++)
            {
                var (session, ids) = generate(mode == 1, SplitMix((ulong)(run * 2 + mode)));
                if (mode == 1)
                {
                    fed += session.FedTokens - promptLength;
                    passes += session.Passes - 1;
                    kept += session.Position - promptLength;
                }
                var key = (ids[1], ids[2]);
                if (!counts.TryGetValue(key, out var c)) counts[key] = c = new int[2];
                c[mode]++;
            }
        Assert.True(fed - kept > runs / 10 && passes < 3 * runs * 9 / 10, $"{fed} tokens fed, {kept} kept, {passes} passes");
        AssertSameDistribution(counts.Values, runs);
    }
}
