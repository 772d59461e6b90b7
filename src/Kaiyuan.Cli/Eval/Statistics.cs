namespace Kaiyuan.Cli.Eval;

/// <summary>The statistics every eval result carries: pass@k, and 95% confidence intervals for a score.</summary>
internal static class Statistics
{
    /// <summary>
    /// The unbiased pass@k of the HumanEval paper (Chen et al., 2021) for one problem with <paramref name="n"/> samples of
    /// which <paramref name="correct"/> pass: 1 − C(n−c, k)/C(n, k), computed as a product so large n does not overflow.
    /// </summary>
    public static double PassAtK(int n, int correct, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(correct);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(correct, n);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, n);
        if (n - correct < k) return 1.0;
        if (k == 1) return (double)correct / n; // the same value, without the product's rounding
        double fail = 1.0;
        for (int i = n - correct + 1; i <= n; i++) fail *= 1.0 - (double)k / i;
        return 1.0 - fail;
    }

    /// <summary>The Wilson score interval at 95% for <paramref name="successes"/> of <paramref name="n"/> (exact-match style scores).</summary>
    public static (double Low, double High) Wilson(int successes, int n)
    {
        if (n == 0) return (0, 1);
        const double z = 1.959963984540054;
        double p = (double)successes / n, z2 = z * z;
        double center = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
        // At 0 or n successes the bound is exactly 0 or 1; computed, it would be off by a rounding error (and miss the score).
        return (successes == 0 ? 0 : Math.Max(0, center - half), successes == n ? 1 : Math.Min(1, center + half));
    }

    /// <summary>
    /// A percentile bootstrap 95% interval for the mean of per-item scores (pass@k, partial credit): the items resampled
    /// with replacement <paramref name="resamples"/> times from a seeded generator, so a report is reproducible.
    /// </summary>
    public static (double Low, double High) Bootstrap(IReadOnlyList<double> scores, int resamples = 2000, int seed = 0)
    {
        if (scores.Count == 0) return (0, 1);
        var random = new Random(seed);
        var means = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            double sum = 0;
            for (int i = 0; i < scores.Count; i++) sum += scores[random.Next(scores.Count)];
            means[r] = sum / scores.Count;
        }
        Array.Sort(means);
        return (Percentile(means, 0.025), Percentile(means, 0.975));
    }

    /// <summary>Linear interpolation between closest ranks of a sorted array.</summary>
    private static double Percentile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int below = (int)Math.Floor(at);
        int above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (at - below) * (sorted[above] - sorted[below]);
    }
}
