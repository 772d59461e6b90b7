using Kaiyuan.Sampling;

namespace Kaiyuan.Tests.Sampling;

public class SamplerTests
{
    private static float[] RandomLogits(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 10 - 5)).ToArray();
    }

    [Fact]
    public void GreedyPicksTheLowestIdAmongEqualMaxima()
    {
        var s = new Sampler(SamplerOptions.Greedy);
        Assert.Equal(1, s.Sample([0f, 3f, 1f, 3f], []));
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        var logits = RandomLogits(1000, 1);
        var opts = new SamplerOptions { Temperature = 1.0f, TopK = 0, TopP = 1f, MinP = 0f, Seed = 42 };
        var a = new Sampler(opts);
        var b = new Sampler(opts);
        var seqA = Enumerable.Range(0, 50).Select(_ => a.Sample(logits, [])).ToArray();
        var seqB = Enumerable.Range(0, 50).Select(_ => b.Sample(logits, [])).ToArray();
        Assert.Equal(seqA, seqB);
        Assert.True(seqA.Distinct().Count() > 5, "temperature 1 over a flat-ish distribution varies");
    }

    [Fact]
    public void TopKOneIsGreedyAndTopKLimitsTheCandidates()
    {
        var logits = RandomLogits(5000, 2);
        int best = Array.IndexOf(logits, logits.Max());
        var one = new Sampler(new SamplerOptions { Temperature = 5f, TopK = 1, Seed = 3 });
        Assert.All(Enumerable.Range(0, 20), _ => Assert.Equal(best, one.Sample(logits, [])));

        var top5 = logits.Select((v, i) => (v, i)).OrderByDescending(x => x.v).Take(5).Select(x => x.i).ToHashSet();
        var five = new Sampler(new SamplerOptions { Temperature = 100f, TopK = 5, TopP = 1f, MinP = 0f, Seed = 4 });
        var drawn = Enumerable.Range(0, 200).Select(_ => five.Sample(logits, [])).ToHashSet();
        Assert.Subset(top5, drawn);
        Assert.True(drawn.Count >= 4);
    }

    [Fact]
    public void TopPAndMinPKeepOnlyTheHead()
    {
        float[] logits = [10f, 9f, 0f, -1f, -2f];
        var topP = new Sampler(new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 0.5f, MinP = 0f, Seed = 5 });
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(0, topP.Sample(logits, [])));
        var minP = new Sampler(new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0.2f, Seed = 6 });
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Contains(minP.Sample(logits, []), new[] { 0, 1 }));
    }

    [Fact]
    public void PenaltiesAndBiasSteerGreedyChoice()
    {
        float[] logits = [5f, 4.9f, 1f];
        Assert.Equal(1, new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 1.1f }).Sample(logits, [0]));
        Assert.Equal(1, new Sampler(SamplerOptions.Greedy with { PresencePenalty = 0.5f }).Sample(logits, [0]));
        Assert.Equal(1, new Sampler(SamplerOptions.Greedy with { FrequencyPenalty = 0.06f }).Sample(logits, [0, 0]));
        Assert.Equal(2, new Sampler(SamplerOptions.Greedy with { LogitBias = new Dictionary<int, float> { [2] = 10f } }).Sample(logits, []));
    }
}
