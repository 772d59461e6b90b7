using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>
/// Quantization with an importance per column (llama.cpp's quant_weights). No fixture holds the importance matrix
/// llama-quantize was given, so the weighted paths are checked by what they must achieve and by small cases worked by hand.
/// </summary>
public class ImportanceQuantizeTests
{
    private const int N = 4096;

    /// <summary>The types whose llama.cpp quantizer has an importance-matrix path.</summary>
    private static readonly GgmlType[] Weighted =
        [GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>The types llama.cpp quantizes the same with or without an importance matrix.</summary>
    private static readonly GgmlType[] Ignoring =
        [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q8_1, GgmlType.TQ1_0, GgmlType.TQ2_0];

    public static TheoryData<GgmlType> WeightedTypes() => new(Weighted);

    public static TheoryData<GgmlType> IgnoringTypes() => new(Ignoring);

    public static TheoryData<GgmlType> AllTypes() => new(Weighted.Concat(Ignoring));

    private static float[] GaussianRow(int seed, int n = N)
    {
        var random = new Random(seed);
        var row = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Box–Muller; 1 - u keeps the logarithm finite.
            double u = 1 - random.NextDouble(), v = random.NextDouble();
            row[i] = (float)(Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }

        return row;
    }

    /// <summary>Importance 1 everywhere but 100 on two columns of every 16, as an imatrix with a few dominant features.</summary>
    private static float[] SkewedImportance(int n = N)
    {
        var importance = new float[n];
        for (int i = 0; i < n; i++) importance[i] = i % 16 is 3 or 11 ? 100f : 1f;
        return importance;
    }

    private static byte[] Quantized(GgmlType type, float[] row, ReadOnlySpan<float> importance)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, row.Length)];
        Quantize.Row(type, row, bytes, importance);
        return bytes;
    }

    private static float[] RoundTrip(GgmlType type, float[] row, ReadOnlySpan<float> importance)
    {
        var back = new float[row.Length];
        Dequantize.Row(type, Quantized(type, row, importance), back);
        return back;
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void EmptyImportanceIsTheReferenceQuantizer(GgmlType type)
    {
        float[] row = GaussianRow(1);
        var reference = new byte[GgmlTypeInfo.RowBytes(type, N)];
        Quantize.Row(type, row, reference);
        Assert.Equal(reference, Quantized(type, row, ReadOnlySpan<float>.Empty));
    }

    [Theory]
    [MemberData(nameof(IgnoringTypes))]
    public void TypesWithoutAnImportancePathIgnoreIt(GgmlType type)
    {
        float[] row = GaussianRow(2);
        Assert.Equal(Quantized(type, row, default), Quantized(type, row, SkewedImportance()));
    }

    [Theory]
    [MemberData(nameof(WeightedTypes))]
    public void ImportanceLowersTheImportanceWeightedError(GgmlType type)
    {
        float[] row = GaussianRow(3);
        float[] importance = SkewedImportance();
        float[] plain = RoundTrip(type, row, default);
        float[] weighted = RoundTrip(type, row, importance);

        double WeightedError(float[] back)
        {
            double sum = 0;
            for (int i = 0; i < N; i++) sum += importance[i] * Math.Pow(row[i] - back[i], 2);
            return sum;
        }

        double withImportance = WeightedError(weighted), without = WeightedError(plain);
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: weighted error {withImportance:G4} with the importance, {without:G4} without");
        Assert.True(withImportance < without, $"{type}: weighted error {withImportance:G6} with the importance, {without:G6} without");

        double error = 0, norm = 0;
        for (int i = 0; i < N; i++)
        {
            error += Math.Pow(row[i] - weighted[i], 2);
            norm += (double)row[i] * row[i];
        }

        double relativeRms = Math.Sqrt(error / norm);
        Assert.True(relativeRms <= DequantizeTests.RelativeRmsBound(type), $"{type}: relative RMS {relativeRms:G4} exceeds {DequantizeTests.RelativeRmsBound(type)}");
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void ImportanceOfTheWrongLengthIsRefused(GgmlType type)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, N)];
        Assert.Throws<ArgumentException>(() => Quantize.Row(type, new float[N], bytes, new float[N - 1]));
    }

    /// <summary>
    /// make_qx_quants on x = (-4, 1.4), levels in [-4, 3]: its 19 trial scales (4 + 0.1s)/4, s = -9..9, give only three
    /// level pairs, (-4, 1) for s = -5..2, (-4, 2) for s = 3..9 and (-3, 1) for s = -9..-6, and it keeps the pair with
    /// the largest (Σw·x·l)²/Σw·l², returning Σw·x·l/Σw·l². Weights (1, 100): 23104/109 for (-3, 1) beats 24336/116
    /// and 87616/416, so the scale is 152/109. Weights x² (none given): 259.53, 259.16 and 194.744²/145.96 = 259.83 for
    /// (-3, 1) again, with the scale 194.744/145.96.
    /// </summary>
    [Fact]
    public void SymmetricSearchKeepsTheBestWeightedFit()
    {
        float[] x = [-4f, 1.4f];
        var levels = new sbyte[2];
        float scale = ScaleSearch.SymmetricWeighted(x, [1f, 100f], 4, levels);
        Assert.Equal([1, 5], levels.Select(l => (int)l));
        Assert.Equal(152f / 109f, scale, 1e-6f);

        scale = ScaleSearch.SymmetricWeighted(x, default, 4, levels);
        Assert.Equal([1, 5], levels.Select(l => (int)l));
        Assert.Equal((16f * 12f + 1.96f * 1.4f) / (16f * 9f + 1.96f), scale, 1e-6f);

        // Weight only on the first value: l = -4 fits it exactly (scale 1) and no other pair fits it better.
        scale = ScaleSearch.SymmetricWeighted(x, [1f, 0f], 4, levels);
        Assert.Equal([0, 5], levels.Select(l => (int)l));
        Assert.Equal(1f, scale);
    }

    /// <summary>
    /// make_qkx3_quants on x = (-1, 0.2, 1), levels 0..1: the first fit (min -1, scale 2) gives levels (0, 1, 1). The
    /// trial scales f/2, f = 0.1 … 1.9, give (0, 0, 1) for 0.5 &lt; f &lt;= 0.8 and (0, 1, 1) above. With weights
    /// (1, 100, 1) the first fit's weighted squared error is 100·0.8² = 64; (0, 0, 1) fits a positive min, so min 0 and
    /// scale 1, error 1 + 100·0.2² = 5, and is kept; from then on min = 0 leaves only (0, 0, 1). With equal weights the
    /// first fit's error 0.64 beats (0, 0, 1)'s least-squares fit (min -0.4, scale 1.4, error 0.72), and (0, 1, 1) with
    /// min -1 and scale 1.6 (error 0.32) wins.
    /// </summary>
    [Fact]
    public void AsymmetricSearchFollowsTheWeights()
    {
        float[] x = [-1f, 0.2f, 1f];
        var levels = new byte[3];
        var scratch = new byte[3];
        float scale = ScaleSearch.AsymmetricWithMin(x, [1f, 100f, 1f], 1, levels, scratch, out float negatedMin, -0.9f, 0.05f, 36, false, boundedLevels: true);
        Assert.Equal([0, 0, 1], levels);
        Assert.Equal(1f, scale);
        Assert.Equal(0f, negatedMin);

        scale = ScaleSearch.AsymmetricWithMin(x, [1f, 1f, 1f], 1, levels, scratch, out negatedMin, -0.9f, 0.05f, 36, false, boundedLevels: true);
        Assert.Equal([0, 1, 1], levels);
        Assert.Equal(1.6f, scale, 1e-6f);
        Assert.Equal(1f, negatedMin, 1e-6f);
    }

    /// <summary>
    /// make_qp_quants on x = (3, 1.4), levels 0..3: nmax/max = 1 gives (3, 1) with error 0.16·w₁, which no trial scale
    /// (3 + 0.1s)/3 beats. The refinement then moves the first level to round(3·w₁/(1.4·w₁)) = 2, accepted as
    /// (1.4w₁ + 6w₀)²(9w₀ + w₁) &gt; (9w₀ + 1.4w₁)²(w₁ + 4w₀) for w = (1, 100), and nothing moves after: levels (2, 1),
    /// scale (6 + 140)/(4 + 100).
    /// </summary>
    [Fact]
    public void NonNegativeSearchRefinesTheWeightedFit()
    {
        var levels = new byte[2];
        float scale = ScaleSearch.NonNegativeWeighted([3f, 1.4f], [1f, 100f], 3, levels);
        Assert.Equal([2, 1], levels);
        Assert.Equal(146f / 104f, scale, 1e-6f);

        Assert.Equal(0f, ScaleSearch.NonNegativeWeighted([0f, 0f], [1f, 1f], 3, levels));
        Assert.Equal([0, 0], levels);
    }

    /// <summary>
    /// Q4_0 with an importance is make_qx_quants with weights qw·sqrt(sigma2 + x²), sigma2 the mean square of the whole
    /// row: the second block's bytes depend on the first block's values.
    /// </summary>
    [Fact]
    public void LegacyWeightsUseTheRowsMeanSquare()
    {
        float[] row = GaussianRow(4, 64);
        for (int i = 0; i < 32; i++) row[i] *= 10; // a loud first block raises sigma2 for the second
        float[] importance = SkewedImportance(64);
        byte[] bytes = Quantized(GgmlType.Q4_0, row, importance);

        float sigma2 = 0;
        foreach (float v in row) sigma2 += v * v;
        sigma2 /= 64;
        var weights = new float[32];
        for (int j = 0; j < 32; j++) weights[j] = importance[32 + j] * MathF.Sqrt(sigma2 + row[32 + j] * row[32 + j]);
        var levels = new sbyte[32];
        float d = ScaleSearch.SymmetricWeighted(row.AsSpan(32), weights, 8, levels);

        ReadOnlySpan<byte> second = bytes.AsSpan(18, 18);
        Assert.Equal(Half16.FromSingle(d), BitConverter.ToUInt16(second));
        for (int j = 0; j < 16; j++) Assert.Equal((byte)levels[j] | ((byte)levels[j + 16] << 4), second[2 + j]);

        // Alone, the second block has a far smaller sigma2 and its own importance weights; it quantizes differently.
        Assert.NotEqual(second.ToArray(), Quantized(GgmlType.Q4_0, row[32..], importance[32..]));
    }

    /// <summary>The K-quants' sigma2 is the super-block's own: a row quantizes as its super-blocks do one by one.</summary>
    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void KQuantWeightsArePerSuperBlock(GgmlType type)
    {
        float[] row = GaussianRow(5, 512);
        for (int i = 0; i < 256; i++) row[i] *= 10;
        float[] importance = SkewedImportance(512);
        byte[] whole = Quantized(type, row, importance);
        int typeSize = GgmlTypeInfo.Geometry(type).TypeSize;
        Assert.Equal(Quantized(type, row[..256], importance[..256]), whole[..typeSize]);
        Assert.Equal(Quantized(type, row[256..], importance[256..]), whole[typeSize..]);
        Assert.NotEqual(Quantized(type, row, default), whole);
    }
}
