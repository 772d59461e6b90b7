using System.Numerics;
using System.Text.Json;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Tests.Eval;

/// <summary>The eval harness's graders and statistics against the benchmark authors' own grading and direct computation.</summary>
public sealed class ScoringTests
{
    [Fact]
    public void Gsm8kGraderAgreesWithEveryLabelOfTheAuthors()
    {
        string path = Fixtures.Require("eval", "gsm8k", "example_model_solutions.jsonl");
        int graded = 0, correct = 0;
        foreach (string line in File.ReadLines(path))
        {
            using var row = JsonDocument.Parse(line);
            string? reference = NumericAnswers.Reference(row.RootElement.GetProperty("ground_truth").GetString()!);
            Assert.NotNull(reference);
            foreach (var model in row.RootElement.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.Object))
            {
                bool label = model.Value.GetProperty("is_correct").GetBoolean();
                bool ours = NumericAnswers.Same(NumericAnswers.Reference(model.Value.GetProperty("solution").GetString()!), reference);
                Assert.True(label == ours, $"{model.Name} on \"{row.RootElement.GetProperty("question").GetString()![..40]}…\": labelled {label}, graded {ours}");
                graded++;
                if (ours) correct++;
            }
        }
        Assert.Equal(5276, graded);
        Assert.InRange(correct, 1, graded - 1);
    }

    [Fact]
    public void EveryGsm8kTestItemHasANumericReference()
    {
        string path = Fixtures.Require("eval", "gsm8k", "test.jsonl");
        int items = 0;
        foreach (string line in File.ReadLines(path))
        {
            using var row = JsonDocument.Parse(line);
            string? reference = NumericAnswers.Strict(row.RootElement.GetProperty("answer").GetString()!);
            Assert.True(decimal.TryParse(reference, System.Globalization.NumberStyles.Number, System.Globalization.CultureInfo.InvariantCulture, out _), reference);
            items++;
        }
        Assert.Equal(1319, items);
    }

    [Theory]
    [InlineData("She makes 9 * 2 = $18.\n#### 18", "18", "18")]
    [InlineData("The total is 1,200 dollars.\n#### 1,200", "1200", "1200")]
    [InlineData("So the answer is $1,234.50.", null, "1234.50")]
    [InlineData("It falls by -3 degrees", null, "-3")]
    [InlineData("No number here.", null, null)]
    public void StrictAndFlexibleExtraction(string output, string? strict, string? flexible)
    {
        Assert.Equal(strict, NumericAnswers.Strict(output));
        Assert.Equal(flexible, NumericAnswers.Flexible(output));
    }

    [Fact]
    public void NumbersCompareByValue()
    {
        Assert.True(NumericAnswers.Same("18.00", "18"));
        Assert.False(NumericAnswers.Same("18", "180"));
        Assert.False(NumericAnswers.Same(null, "18"));
    }

    /// <summary>pass@k by the product form against 1 − C(n−c, k)/C(n, k) in exact integers.</summary>
    [Fact]
    public void PassAtKEqualsTheBinomialDefinition()
    {
        for (int n = 1; n <= 20; n++)
            for (int c = 0; c <= n; c++)
                for (int k = 1; k <= n; k++)
                {
                    double exact = 1.0 - (double)Choose(n - c, k) / (double)Choose(n, k);
                    Assert.Equal(exact, Statistics.PassAtK(n, c, k), 12);
                }
        // The reference harness's example: six samples of one problem, three passing.
        Assert.Equal(0.5, Statistics.PassAtK(6, 3, 1), 12);
    }

    private static BigInteger Choose(int n, int k)
    {
        if (k > n) return 0;
        BigInteger r = 1;
        for (int i = 0; i < k; i++) r = r * (n - i) / (i + 1);
        return r;
    }

    [Fact]
    public void WilsonIntervalMatchesItsClosedForm()
    {
        var (low, high) = Statistics.Wilson(8, 10);
        Assert.Equal(0.4902, low, 4);
        Assert.Equal(0.9433, high, 4);
        Assert.Equal((0.0, 1.0), Statistics.Wilson(0, 0));
        // Exactly 0 and 1 at the ends, so the interval always holds the score itself.
        Assert.Equal(0.0, Statistics.Wilson(0, 3).Low);
        Assert.Equal(1.0, Statistics.Wilson(3, 3).High);
    }

    [Fact]
    public void BootstrapIsReproducibleAndBracketsTheMean()
    {
        var random = new Random(1);
        double[] scores = Enumerable.Range(0, 200).Select(_ => random.NextDouble() < 0.3 ? 1.0 : 0.0).ToArray();
        var first = Statistics.Bootstrap(scores, seed: 7);
        Assert.Equal(first, Statistics.Bootstrap(scores, seed: 7));
        double mean = scores.Average();
        Assert.InRange(mean, first.Low, first.High);
        // For a proportion the bootstrap and Wilson intervals agree closely at this size.
        var wilson = Statistics.Wilson((int)scores.Sum(), scores.Length);
        Assert.Equal(wilson.Low, first.Low, 1);
        Assert.Equal(wilson.High, first.High, 1);
        Assert.Equal((0.5, 0.5), Statistics.Bootstrap([0.5, 0.5, 0.5], seed: 1));
    }
}
