using System.Globalization;
using System.Text;
using Kaiyuan.Cli.Arena;

namespace Kaiyuan.Tests.Arena;

/// <summary>The Bradley–Terry fit: exact on hand-computed data, recovers known strengths from simulated battles, finite without wins.</summary>
public sealed class BradleyTerryTests
{
    private static readonly double Points = 400 / Math.Log(10);

    private static List<Outcome> Repeat(string a, string b, double score, int times) => Enumerable.Repeat(new Outcome(a, b, score), times).ToList();

    private static double[,] Wins(int n, params (int I, int J, double Score)[] results)
    {
        var wins = new double[n, n];
        foreach (var (i, j, s) in results)
        {
            wins[i, j] += s;
            wins[j, i] += 1 - s;
        }
        return wins;
    }

    [Fact]
    public void TwoModelsMatchTheClosedForm()
    {
        // A beats B 3 times out of 4: the MLE makes p_A / (p_A + p_B) = 3/4, so θ_A − θ_B = ln 3, which is 400·log10(3) = 190.85 points.
        var wins = Wins(2, (0, 1, 1), (0, 1, 1), (0, 1, 1), (0, 1, 0));
        var r = BradleyTerry.Fit(wins, ridge: 0);
        Assert.Equal(400 * Math.Log10(3), r[0] - r[1], 6);
        Assert.Equal(1000, (r[0] + r[1]) / 2, 9);
        Assert.Equal(1000 + 200 * Math.Log10(3), r[0], 6);
    }

    [Fact]
    public void ThreeModelsWithTiesMatchADirectComputation()
    {
        // Strengths 4 : 2 : 1. Data chosen so that every pair's observed score share equals p_i / (p_i + p_j), which makes
        // every likelihood equation hold exactly at those strengths: the MLE is θ = (ln 4, ln 2, 0) up to a shift.
        //   A–B: A wins 2, B wins 1                  → A scores 2 of 3 = 4/(4+2)
        //   B–C: B wins 1, 2 ties                    → B scores 2 of 3 = 2/(2+1)
        //   A–C: A wins 3, 2 ties (one "both bad")   → A scores 4 of 5 = 4/(4+1)
        var battles = new List<Outcome>();
        battles.AddRange(Repeat("A", "B", 1, 2));
        battles.AddRange(Repeat("B", "A", 1, 1));
        battles.AddRange(Repeat("B", "C", 1, 1));
        battles.AddRange(Repeat("C", "B", 0.5, 2));
        battles.AddRange(Repeat("A", "C", 1, 3));
        battles.AddRange(Repeat("C", "A", 0.5, 2));
        var board = BradleyTerry.Compute(battles, rounds: 0, ridge: 0);
        double step = 400 * Math.Log10(2); // 120.41 points per doubling of strength
        var byModel = board.Ratings.ToDictionary(r => r.Model);
        Assert.Equal(1000 + step, byModel["A"].Rating, 6);
        Assert.Equal(1000, byModel["B"].Rating, 6);
        Assert.Equal(1000 - step, byModel["C"].Rating, 6);
        Assert.Equal((2, 2, 2), (byModel["B"].Wins, byModel["B"].Ties, byModel["B"].Losses));
        Assert.Equal(new[] { "A", "B", "C" }, board.Ratings.Select(r => r.Model));
        // The win-rate matrix counts ties half.
        int a = board.Models.ToList().IndexOf("A"), c = board.Models.ToList().IndexOf("C");
        Assert.Equal(0.8, board.WinRate[a, c]!.Value, 9);
        Assert.Equal(5, board.Counts[a, c]);
        Assert.Null(board.WinRate[a, a]);

        // The default ridge (a weak prior) moves these 11-battle ratings by under 1.5 points.
        var regularised = BradleyTerry.Compute(battles, rounds: 0).Ratings.ToDictionary(r => r.Model);
        foreach (var (model, exact) in byModel) Assert.InRange(regularised[model].Rating - exact.Rating, -1.5, 1.5);
    }

    [Fact]
    public void AModelWithNoWinsGetsAFiniteRatingAndTheLastRank()
    {
        var battles = new List<Outcome>();
        battles.AddRange(Repeat("good", "loser", 1, 12));
        battles.AddRange(Repeat("loser", "fair", 0, 12));
        battles.AddRange(Repeat("good", "fair", 1, 7));
        battles.AddRange(Repeat("good", "fair", 0, 5));
        var board = BradleyTerry.Compute(battles, rounds: 100);
        foreach (var r in board.Ratings) Assert.True(double.IsFinite(r.Rating) && double.IsFinite(r.Low) && double.IsFinite(r.High), r.ToString());
        var last = board.Ratings[^1];
        Assert.Equal("loser", last.Model);
        Assert.Equal(3, last.Rank);
        Assert.True(last.High < board.Ratings[1].Low);
        // Without the ridge the maximum is at −∞: the Newton iterations run off (and stop at their limit) far below.
        double unregularised = BradleyTerry.Fit(Wins(2, [.. Enumerable.Repeat((0, 1, 1.0), 12)]), ridge: 0, maxIterations: 30)[1];
        Assert.True(unregularised < last.Rating - 1000, $"{unregularised}");
    }

    [Fact]
    public void OnlyTiesGiveEveryModelTheAnchor()
    {
        var battles = Repeat("x", "y", 0.5, 10).Concat(Repeat("y", "z", 0.5, 10)).ToList();
        var board = BradleyTerry.Compute(battles, rounds: 50);
        Assert.All(board.Ratings, r => Assert.Equal(1000, r.Rating, 6));
        Assert.All(board.Ratings, r => Assert.Equal(1, r.Rank));
    }

    [Fact]
    public void RanksCountOnlyModelsWhoseWholeIntervalIsAbove()
    {
        // top is clearly best; mid1 and mid2 are indistinguishable; both are clearly above bottom.
        var battles = new List<Outcome>();
        var random = new Random(7);
        void Play(string a, string b, double pA, int n)
        {
            for (int i = 0; i < n; i++) battles.Add(new Outcome(a, b, random.NextDouble() < pA ? 1 : 0));
        }
        Play("top", "mid1", 0.85, 300);
        Play("top", "mid2", 0.85, 300);
        Play("mid1", "mid2", 0.5, 300);
        Play("mid1", "bottom", 0.85, 300);
        Play("mid2", "bottom", 0.85, 300);
        var board = BradleyTerry.Compute(battles, rounds: 200);
        var rank = board.Ratings.ToDictionary(r => r.Model, r => r.Rank);
        Assert.Equal(1, rank["top"]);
        Assert.Equal(2, rank["mid1"]);
        Assert.Equal(2, rank["mid2"]);
        Assert.Equal(4, rank["bottom"]);
    }

    [Fact]
    public void TheBootstrapIsReproducible()
    {
        var battles = Simulate([1100, 1000, 900], 500, new Random(3));
        var first = BradleyTerry.Compute(battles);
        var second = BradleyTerry.Compute(battles);
        Assert.Equal(first.Ratings, second.Ratings);
    }

    /// <summary>
    /// Battles from known ratings: a random pair, then a tie with probability 0.15, else a win drawn so that A's expected
    /// score (ties half) is exactly the Bradley–Terry probability σ((r_A − r_B)·ln10/400).
    /// </summary>
    internal static List<Outcome> Simulate(double[] truth, int count, Random random)
    {
        const double tie = 0.15;
        var battles = new List<Outcome>(count);
        for (int k = 0; k < count; k++)
        {
            int i = random.Next(truth.Length);
            int j = random.Next(truth.Length - 1);
            if (j >= i) j++;
            double p = 1 / (1 + Math.Pow(10, (truth[j] - truth[i]) / 400));
            double score = random.NextDouble() < tie ? 0.5 : random.NextDouble() < (p - tie / 2) / (1 - tie) ? 1 : 0;
            battles.Add(new Outcome($"m{i}", $"m{j}", score));
        }
        return battles;
    }

    [Fact]
    public void SimulatedBattlesRecoverTheTrueRatings()
    {
        double[] truth = [1250, 1150, 1100, 1000, 950, 800];
        var battles = Simulate(truth, 6000, new Random(20261203));
        var board = BradleyTerry.Compute(battles, rounds: 200);
        double mean = truth.Average();
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"{battles.Count} simulated battles (15% ties), 200 bootstrap rounds; true ratings shifted to mean 1000");
        report.AppendLine("model  true     fitted   95% CI             error   battles");
        var byModel = board.Ratings.ToDictionary(r => r.Model);
        for (int i = 0; i < truth.Length; i++)
        {
            var r = byModel[$"m{i}"];
            double expected = truth[i] - mean + 1000;
            report.AppendLine(CultureInfo.InvariantCulture, $"m{i}     {expected,7:F1}  {r.Rating,7:F1}  [{r.Low,7:F1}, {r.High,7:F1}]  {r.Rating - expected,+6:F1}  {r.Battles}");
        }
        TestContext.Current.TestOutputHelper?.WriteLine(report.ToString());
        Console.WriteLine(report.ToString());
        // The true order, and every true rating (i.e. every true difference from the mean) inside its interval.
        Assert.Equal(Enumerable.Range(0, truth.Length).Select(i => $"m{i}"), board.Ratings.OrderByDescending(r => r.Rating).Select(r => r.Model));
        for (int i = 0; i < truth.Length; i++)
        {
            var r = byModel[$"m{i}"];
            double expected = truth[i] - mean + 1000;
            Assert.True(r.Low <= expected && expected <= r.High, report.ToString());
        }
        // And the intervals are informative: with ~2,000 battles a model, under ±40 points.
        Assert.All(board.Ratings, r => Assert.True(r.High - r.Low < 80, report.ToString()));
    }
}
