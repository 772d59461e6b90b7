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
}
