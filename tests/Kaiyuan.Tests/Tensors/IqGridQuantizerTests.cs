using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

using static Kaiyuan.Tests.Tensors.DequantizeTests;

namespace Kaiyuan.Tests.Tensors;

/// <summary>
/// The grid i-quant quantizers (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S): blocks built from grid points come back as
/// those points, the error on Gaussian rows and the llama fixture's weights stays within what llama.cpp's own files
/// reach, an importance vector helps, the 1- and 2-bit types refuse to run without one, the SIMD dot products read our bytes as
/// the scalar one does, and where llama.cpp's fixtures hold a grid tensor quantized without an importance matrix our
/// bytes are its bytes.
/// </summary>
public class IqGridQuantizerTests
{
    public static TheoryData<GgmlType> GridTypes() => new(GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S);

    public static TheoryData<GgmlType> AllGridTypes() => new(GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S,
        GgmlType.IQ3_XXS, GgmlType.IQ3_S);

    private static bool HasParitySigns(GgmlType type) => type is GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ3_XXS;

    private static ReadOnlySpan<ushort> Points(GgmlType type) => type switch
    {
        GgmlType.IQ2_XXS => IqGridPoints.Iq2Xxs,
        GgmlType.IQ2_XS => IqGridPoints.Iq2Xs,
        GgmlType.IQ2_S => IqGridPoints.Iq2S,
        GgmlType.IQ3_XXS => IqGridPoints.Iq3Xxs,
        _ => IqGridPoints.Iq3S,
    };

    /// <summary>The signed value element <paramref name="i"/> of grid point <paramref name="index"/> decodes to.</summary>
    private static int GridByte(GgmlType type, int index, int i) => type switch
    {
        GgmlType.IQ2_XXS => (int)(IqGrids.Iq2Xxs[index] >> (8 * i) & 0xFF),
        GgmlType.IQ2_XS => (int)(IqGrids.Iq2Xs[index] >> (8 * i) & 0xFF),
        GgmlType.IQ2_S => (int)(IqGrids.Iq2S[index] >> (8 * i) & 0xFF),
        GgmlType.IQ3_XXS => (int)(IqGrids.Iq3Xxs[index] >> (8 * i) & 0xFF),
        _ => (int)(IqGrids.Iq3S[index] >> (8 * i) & 0xFF),
    };

    private static bool HasTopLevel(int point, int dimension, int bits)
    {
        int top = bits == 3 ? 7 : 2;
        for (int i = 0; i < dimension; i++)
        {
            if ((point >> (bits * i) & ((1 << bits) - 1)) == top) return true;
        }

        return false;
    }

    internal static float[] Gaussian(int n, int seed, float sigma = 0.02f)
    {
        var random = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = sigma * (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return x;
    }

    /// <summary>Log-normal over <paramref name="decades"/> orders of magnitude, as the mean squared activations of real models are.</summary>
    internal static float[] SkewedImportance(int n, int seed, float decades = 2)
    {
        var random = new Random(seed);
        var importance = new float[n];
        for (int i = 0; i < n; i++) importance[i] = MathF.Exp(decades * (random.NextSingle() - 0.5f) * 2.3f);
        return importance;
    }

    private static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    private static byte[] Quantized(GgmlType type, float[] x, float[]? importance)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        Quantize.Row(type, x, bytes, importance);
        return bytes;
    }

    private static float[] RoundTrip(GgmlType type, float[] x, float[]? importance)
    {
        var y = new float[x.Length];
        Dequantize.Row(type, Quantized(type, x, importance), y);
        return y;
    }

    /// <summary>
    /// Each group of 8 (IQ3: 4) elements is a random grid point's odd lattice values 2l+1 with random signs (an even number
    /// of them negative where the format stores only seven), times a scale that is an odd multiple of one unit per
    /// sub-block, the largest 31 so the block scale is that unit: the quantizer must find every point, sign and multiplier.
    /// </summary>
    [Theory]
    [MemberData(nameof(GridTypes))]
    public void BlocksOfGridPointsDecodeToThosePoints(GgmlType type)
    {
        const float unit = 1f / 1024;
        var random = new Random(17 + (int)type);
        ReadOnlySpan<ushort> points = Points(type);
        bool threeBit = type is GgmlType.IQ3_XXS or GgmlType.IQ3_S;
        int dimension = threeBit ? 4 : 8, bits = threeBit ? 3 : 2;
        int halves = type is GgmlType.IQ2_XS or GgmlType.IQ2_S ? 2 : 1;
        const int blocks = 4;
        var x = new float[256 * blocks];
        var expectedQ = new int[x.Length];
        var expectedMultiplier = new int[x.Length / 16];
        for (int part = 0; part < x.Length / (32 / halves); part++)
        {
            int size = 32 / halves;
            // One part of each block gets the largest multiplier; the others random ones.
            int multiplier = part % (8 * halves) == 3 ? 31 : 2 * random.Next(16) + 1;
            for (int h = 0; h < size / 16; h++) expectedMultiplier[part * size / 16 + h] = multiplier;
            for (int g = 0; g < size / dimension; g++)
            {
                int index = random.Next(points.Length);
                // The scale search starts from the part's largest value as the top level: make sure it is one.
                while (g == 0 && !HasTopLevel(points[index], dimension, bits)) index = random.Next(points.Length);
                for (int i = 0; i < dimension; i++)
                {
                    int at = part * size + g * dimension + i;
                    int level = points[index] >> (bits * i) & ((1 << bits) - 1);
                    x[at] = unit * multiplier * (2 * level + 1);
                    expectedQ[at] = GridByte(type, index, i);
                }
            }

            for (int e = 0; e < size / 8; e++)
            {
                int signs = random.Next(256);
                if (HasParitySigns(type) && int.PopCount(signs) % 2 != 0) signs ^= 0x80;
                for (int i = 0; i < 8; i++)
                {
                    if ((signs >> i & 1) == 0) continue;
                    x[part * size + 8 * e + i] = -x[part * size + 8 * e + i];
                    expectedQ[part * size + 8 * e + i] = -expectedQ[part * size + 8 * e + i];
                }
            }
        }

        AssertDecodesTo(type, Quantized(type, x, Ones(x.Length)), blocks, expectedQ, expectedMultiplier, null);
    }

    /// <summary>
    /// The 1-bit types: each group of 8 is a random grid point's levels −1, 0, 1, shifted by ±1/8 (per 32 in IQ1_S, per 8
    /// in IQ1_M), times an odd multiple of one unit per 32 (IQ1_S) or 16 (IQ1_M), the largest 15: the exhaustive split
    /// search must find every point, shift and multiplier.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ1_M)]
    public void OneBitBlocksOfGridPointsDecodeToThosePoints(GgmlType type)
    {
        const float unit = 1f / 1024;
        var random = new Random(23 + (int)type);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq1S;
        bool m = type == GgmlType.IQ1_M;
        const int blocks = 4;
        var x = new float[256 * blocks];
        var expectedQ = new int[x.Length];
        var expectedShift = new int[x.Length / 8];
        var expectedMultiplier = new int[x.Length / 16];
        int partSize = m ? 16 : 32;
        for (int part = 0; part < x.Length / partSize; part++)
        {
            int multiplier = part % (256 / partSize) == 2 ? 15 : 2 * random.Next(8) + 1;
            for (int h = 0; h < partSize / 16; h++) expectedMultiplier[part * partSize / 16 + h] = multiplier;
            int shift = random.Next(2) == 0 ? 1 : -1;
            for (int g = 0; g < partSize / 8; g++)
            {
                if (m && g > 0) shift = random.Next(2) == 0 ? 1 : -1;
                int index = random.Next(points.Length);
                expectedShift[part * partSize / 8 + g] = shift;
                for (int i = 0; i < 8; i++)
                {
                    int at = part * partSize + 8 * g + i;
                    int level = (points[index] >> (2 * i) & 3) - 1;
                    x[at] = unit * multiplier * (level + shift / 8f);
                    expectedQ[at] = level;
                }
            }
        }

        AssertDecodesTo(type, Quantized(type, x, Ones(x.Length)), blocks, expectedQ, expectedMultiplier, expectedShift);
    }

    /// <summary>Every sub-block of <paramref name="bytes"/> decodes to the expected grid values, multipliers and (1-bit types) shifts.</summary>
    private static void AssertDecodesTo(GgmlType type, byte[] bytes, int blocks, int[] expectedQ, int[] expectedMultiplier, int[]? expectedShift)
    {
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        Span<sbyte> q = stackalloc sbyte[32];
        Span<sbyte> shifts = stackalloc sbyte[4];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = bytes.AsSpan(b * blockBytes, blockBytes);
            for (int sub = 0; sub < 8; sub++)
            {
                IqGridDecoder.SubBlock(type, block, sub, q, out int m0, out int m1, shifts);
                int at = 256 * b + 32 * sub;
                for (int i = 0; i < 32; i++) Assert.True(expectedQ[at + i] == q[i], $"{type} element {at + i}: {q[i]}, expected {expectedQ[at + i]}");
                if (expectedShift is not null)
                    for (int g = 0; g < 4; g++) Assert.Equal(expectedShift[at / 8 + g], shifts[g]);
                Assert.Equal(expectedMultiplier[at / 16], m0);
                Assert.Equal(expectedMultiplier[at / 16 + 1], m1);
            }
        }
    }

    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void AnAllZeroRowIsStoredAsZero(GgmlType type)
    {
        var y = RoundTrip(type, new float[512], Ones(512));
        Assert.All(y, v => Assert.Equal(0f, v));
    }

    /// <summary>
    /// A zero group of 32 amid others: every group keeps its own slot. (llama.cpp's IQ3_S writer does not advance its
    /// index and sign pointers past such a group, shifting the later groups' points into the wrong slots; we deviate
    /// there, and only there, from its bytes.) Not for the 1-bit types, which have no zero point: their zero groups decode
    /// to grid point 0 at the smallest multiplier, as llama.cpp's.
    /// </summary>
    [Theory]
    [MemberData(nameof(GridTypes))]
    public void AZeroGroupLeavesTheOtherGroupsInPlace(GgmlType type)
    {
        var x = Gaussian(256, 8);
        x.AsSpan(32, 32).Clear();
        var y = RoundTrip(type, x, Ones(256));
        Assert.All(y.AsSpan(32, 32).ToArray(), v => Assert.True(MathF.Abs(v) < 1e-3f, $"{type}: {v} in the zero group"));
        for (int g = 0; g < 8; g++)
        {
            if (g == 1) continue;
            double rms = RelativeRms(x.AsSpan(32 * g, 32), y.AsSpan(32 * g, 32));
            Assert.True(rms < 0.6, $"{type} group {g}: relative RMS {rms:G3}");
        }
    }

    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void GaussianRowsQuantizeWithinTheFixturesErrorBound(GgmlType type)
    {
        var x = Gaussian(256 * 64, 3);
        double relativeRms = RelativeRms(x, RoundTrip(type, x, Ones(x.Length)));
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: relative RMS {relativeRms:G3} on Gaussian rows");
        Assert.True(relativeRms <= DequantizeTests.RelativeRmsBound(type), $"{type}: relative RMS {relativeRms:G4}");
    }

    /// <summary>IQ3_XXS / IQ3_S also run without an importance (llama.cpp then weights by x²), about as well.</summary>
    [Theory]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ3_S)]
    public void Iq3TypesNeedNoImportance(GgmlType type)
    {
        var x = Gaussian(256 * 64, 4);
        double relativeRms = RelativeRms(x, RoundTrip(type, x, null));
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: relative RMS {relativeRms:G3} without importance");
        Assert.True(relativeRms <= DequantizeTests.RelativeRmsBound(type), $"{type}: relative RMS {relativeRms:G4}");
    }

    [Theory]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ1_M)]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ2_S)]
    public void OneAndTwoBitTypesRequireAnImportanceMatrix(GgmlType type)
    {
        var x = Gaussian(256, 5);
        var e = Assert.Throws<ArgumentException>(() => Quantize.Row(type, x, new byte[GgmlTypeInfo.RowBytes(type, 256)]));
        Assert.Contains("importance matrix", e.Message);
        Assert.Contains("--imatrix", e.Message);
    }

    /// <summary>
    /// The llama fixture's weight matrices, with a synthetic skewed importance, within the fixtures' error bound (the
    /// error weighted by that importance, which is what the quantizer minimises).
    /// </summary>
    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void LlamaTensorsQuantizeWithinTheFixturesErrorBound(GgmlType type)
    {
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/llama-f32.gguf"));
        int quantized = 0;
        foreach (var tensor in original.Tensors.Values.Where(t => t.Dims.Length == 2 && t.RowLength % 256 == 0))
        {
            var x = new float[tensor.Elements];
            Dequantize.Row(GgmlType.F32, original.Data(tensor), x);
            int n = (int)tensor.RowLength;
            var importance = SkewedImportance(n, 9);
            double errorSquares = 0, valueSquares = 0;
            for (long r = 0; r < tensor.Rows; r++)
            {
                var row = x.AsSpan((int)(r * n), n).ToArray();
                var y = RoundTrip(type, row, importance);
                for (int i = 0; i < n; i++)
                {
                    errorSquares += importance[i] * Square(y[i] - row[i]);
                    valueSquares += importance[i] * Square(row[i]);
                }
            }

            double relativeRms = Math.Sqrt(errorSquares / valueSquares);
            TestContext.Current.TestOutputHelper?.WriteLine($"{tensor.Name} {type}: importance-weighted relative RMS {relativeRms:G3}");
            Assert.True(relativeRms <= DequantizeTests.RelativeRmsBound(type), $"{tensor.Name} ({type}): relative RMS {relativeRms:G4}");
            quantized++;
        }

        Assert.True(quantized >= 10);
    }

    /// <summary>A skewed importance lowers the importance-weighted error against a uniform one, clearly.</summary>
    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void AnImportanceVectorLowersTheImportanceWeightedError(GgmlType type)
    {
        const int n = 1024;
        var importance = SkewedImportance(n, 3);
        double uniform = 0, weighted = 0;
        for (int r = 0; r < 32; r++)
        {
            var row = Gaussian(n, 100 + r);
            var plain = RoundTrip(type, row, Ones(n));
            var guided = RoundTrip(type, row, importance);
            for (int i = 0; i < n; i++)
            {
                uniform += importance[i] * Square(row[i] - plain[i]);
                weighted += importance[i] * Square(row[i] - guided[i]);
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: importance-weighted squared error {weighted:G4} guided, {uniform:G4} uniform");
        Assert.True(weighted < 0.9 * uniform, $"{type}: {weighted} with the importance vector, {uniform} with a uniform one");
    }

    /// <summary>Rows we quantized read the same through every SIMD tier as through the scalar dot product.</summary>
    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void SimdDotOfQuantizedRowsMatchesScalar(GgmlType type)
    {
        var tiers = new[] { IsaLevel.Avx2, IsaLevel.AvxVnni, IsaLevel.Avx512, IsaLevel.Neon }.Where(IsaLevels.IsSupported).ToArray();
        if (tiers.Length == 0) Assert.Skip("This machine has no SIMD tier; only the scalar kernels run here.");
        var activationType = QuantizedDot.ActivationType(type);
        foreach (int n in new[] { 256, 768, 4096 })
        {
            for (int trial = 0; trial < 4; trial++)
            {
                var weights = Quantized(type, Gaussian(n, 40 + trial), SkewedImportance(n, 50 + trial));
                var activations = new byte[GgmlTypeInfo.RowBytes(activationType, n)];
                QuantizedDot.QuantizeActivations(activationType, QuantizedDotTests.RandomActivations(n, 60 + trial), activations);
                var w = new float[n];
                var a = new float[n];
                Dequantize.Row(type, weights, w);
                Dequantize.Row(activationType, activations, a);
                double magnitude = 0;
                for (int i = 0; i < n; i++) magnitude += Math.Abs((double)w[i] * a[i]);
                float scalar = QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Scalar);
                foreach (var tier in tiers)
                {
                    float simd = QuantizedDot.VecDot(type, weights, activations, n, tier);
                    Assert.True(Math.Abs(simd - scalar) <= 1e-5 * magnitude + 1e-7, $"{type} n={n} {tier}: {simd} vs scalar {scalar}");
                }
            }
        }
    }

    /// <summary>
    /// Every lattice point a quantizer can round to is on the grid or has neighbours listed, and the table is built once
    /// however many threads ask for it at once.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllGridTypes))]
    public void EveryReachablePointHasNeighboursAndTheTableIsShared(GgmlType type)
    {
        var tables = new IqGridNeighbours[8];
        Parallel.For(0, tables.Length, i => tables[i] = IqGridNeighbours.For(type));
        Assert.All(tables, t => Assert.Same(tables[0], t));
        var table = tables[0];
        int top = table.Bits == 3 ? 7 : 2, keys = 0;
        for (int key = 0; key < 1 << (table.Bits * table.Dimension); key++)
        {
            bool reachable = true;
            for (int i = 0; i < table.Dimension; i++) reachable &= (key >> (table.Bits * i) & ((1 << table.Bits) - 1)) <= top;
            if (!reachable) continue;
            keys++;
            Assert.True(table.IndexOf(key) >= 0 || table.NeighbourCount(key) > 0, $"{type}: key {key} has no neighbours");
        }

        Assert.Equal(table.Bits == 3 ? 4096 : 6561, keys);
    }

    /// <summary>
    /// llama-quantize writes the token embedding of its IQ3_XXS, IQ2_S and IQ2_M mixes as IQ3_S, and its importance matrix
    /// has no entry for it (it is looked up, not multiplied), so llama.cpp's IQ3_S quantizer ran there without one: our
    /// bytes must be its bytes.
    /// </summary>
    [Theory]
    [InlineData("llama/llama-iq3_xxs.gguf")]
    [InlineData("llama/llama-iq2_s.gguf")]
    [InlineData("llama/llama-iq2_m.gguf")]
    [InlineData("qwen3moe/qwen3moe-iq3_xxs.gguf")]
    [InlineData("deepseek2/deepseek2-iq3_xxs.gguf")]
    public void Iq3STokenEmbeddingsAreLlamaCpps(string fileName)
    {
        var quantized = new GgufTensorLocator(TestFixtures.ModelOrSkip(fileName));
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip(fileName[..fileName.LastIndexOf('-')] + "-f32.gguf"));
        var tensor = quantized.Tensors["token_embd.weight"];
        Assert.Equal(GgmlType.IQ3_S, tensor.Type);
        byte[] actual = Iq4QuantizerTests.QuantizedFromF32(original, tensor);
        Assert.True(quantized.Data(tensor).SequenceEqual(actual), $"{fileName} token_embd.weight (IQ3_S): bytes differ from llama-quantize's");
    }
}
