namespace Kaiyuan.Cli.Benchmarks;

/// <summary>Mean and sample standard deviation of repeated measurements, as llama-bench reports them.</summary>
internal static class Stats
{
    public static double Mean(List<double> x) => x.Count == 0 ? 0 : x.Average();

    public static double Std(List<double> x)
    {
        if (x.Count < 2) return 0;
        double m = x.Average();
        return Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1));
    }
}
