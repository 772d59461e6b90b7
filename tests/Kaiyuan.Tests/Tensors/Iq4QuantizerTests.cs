using System.Buffers.Binary;
using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

using static Kaiyuan.Tests.Tensors.DequantizeTests;

namespace Kaiyuan.Tests.Tensors;

/// <summary>
/// IQ4_NL / IQ4_XS quantization: properties checkable by hand, the error on the llama fixture's weights, and what an
/// importance vector does. Byte equality with llama.cpp is tested on the fixture tensors it quantized without an
/// importance matrix (<see cref="ReproducesLlamaQuantizeWhereNoImportanceMatrixWasUsed"/>).
/// </summary>
public class Iq4QuantizerTests
{
    private static readonly sbyte[] Levels = Iq4Levels.Values.ToArray();

    /// <summary>A block of 32 values d·level, the first at level −127 so the search's first candidates hit d exactly.</summary>
    private static void FillBlock(Span<float> x, float d, Random random)
    {
        x[0] = d * Levels[0];
        for (int j = 1; j < x.Length; j++) x[j] = d * Levels[random.Next(Levels.Length)];
    }

    private static float[] RoundTrip(GgmlType type, float[] x, float[]? importance = null)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        Quantize.Row(type, x, bytes, importance);
        var y = new float[x.Length];
        Dequantize.Row(type, bytes, y);
        return y;
    }

    [Theory]
    [InlineData(1f / 64)]
    [InlineData(-1f / 256)]
    [InlineData(0.75f)]
    public void Iq4NlBlocksOfScaledLevelsRoundTripExactly(float d)
    {
        var random = new Random(7);
        var x = new float[4 * 32];
        for (int b = 0; b < 4; b++) FillBlock(x.AsSpan(32 * b, 32), d * (b + 1), random);
        Assert.Equal(x, RoundTrip(GgmlType.IQ4_NL, x));
    }

    [Fact]
    public void Iq4XsBlocksWhoseScalesAreMultiplesOfOneRoundTripExactly()
    {
        // Block scales D·m with m in [-32, 31], the largest in magnitude −32 so the super-block scale comes out D.
        const float superScale = 1f / 1024;
        int[] multiples = [-32, 5, -7, 31, 1, -1, 12, 20];
        var random = new Random(11);
        var x = new float[2 * 256];
        for (int s = 0; s < 2; s++)
        {
            for (int b = 0; b < 8; b++) FillBlock(x.AsSpan(256 * s + 32 * b, 32), superScale * multiples[(b + s) % 8], random);
        }

        var bytes = new byte[GgmlTypeInfo.RowBytes(GgmlType.IQ4_XS, x.Length)];
        Quantize.Row(GgmlType.IQ4_XS, x, bytes);
        Assert.Equal(superScale, Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes)));
        for (int b = 0; b < 8; b++) Assert.Equal(multiples[b] + 32, Iq4Levels.XsScale(bytes, b));
        var y = new float[x.Length];
        Dequantize.Row(GgmlType.IQ4_XS, bytes, y);
        Assert.Equal(x, y);
    }

    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void AnAllZeroBlockHasScaleZero(GgmlType type)
    {
        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(type);
        var bytes = new byte[typeSize];
        Quantize.Row(type, new float[blockSize], bytes);
        // IQ4_XS stores −0 (the negated largest scale, 0); it decodes as 0 all the same.
        Assert.Equal(0f, Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes)));
        var y = new float[blockSize];
        Dequantize.Row(type, bytes, y);
        Assert.All(y, v => Assert.Equal(0f, v));
        // With no scale, every index is best_index(0): level 1, index 8 (ggml's choice too).
        int qs = type == GgmlType.IQ4_NL ? BlockLayouts.IQ4_NL.Qs : BlockLayouts.IQ4_XS.Qs;
        Assert.All(bytes[qs..], b => Assert.Equal(0x88, b));
    }

    [Theory]
    [InlineData(-200f, 0)]
    [InlineData(-127f, 0)]
    [InlineData(-115.5f, 1)] // halfway between −127 and −104 goes up
    [InlineData(-115.6f, 0)]
    [InlineData(0f, 8)]
    [InlineData(-4.5f, 8)]
    [InlineData(-4.6f, 7)]
    [InlineData(113f, 15)]
    [InlineData(1000f, 15)]
    public void BestIndexPicksTheNearestLevelAndTheUpperOnTies(float x, int index) => Assert.Equal(index, Iq4Quantizer.BestIndex(x));

    /// <summary>The relative RMS error of our IQ4 tensors of llama-f32.gguf is within the bound the fixture's own IQ4 files meet.</summary>
    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void LlamaTensorsQuantizeWithinTheFixturesErrorBound(GgmlType type)
    {
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/llama-f32.gguf"));
        int quantized = 0;
        foreach (var tensor in original.Tensors.Values.Where(t => t.Dims.Length == 2 && t.RowLength % 256 == 0))
        {
            var x = new float[tensor.Elements];
            Dequantize.Row(GgmlType.F32, original.Data(tensor), x);
            double relativeRms = RelativeRms(x, RoundTrip(type, x));
            TestContext.Current.TestOutputHelper?.WriteLine($"{tensor.Name} {type}: relative RMS {relativeRms:G3}");
            Assert.True(relativeRms <= DequantizeTests.RelativeRmsBound(type), $"{tensor.Name} ({type}): relative RMS {relativeRms:G4}");
            quantized++;
        }

        Assert.True(quantized >= 10);
    }

    /// <summary>
    /// llama.cpp's importance matrix weights each column's squared error; with a strongly non-uniform importance the
    /// importance-weighted error of a whole tensor must not be worse than when quantizing without it.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void AnImportanceVectorLowersTheImportanceWeightedError(GgmlType type)
    {
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/llama-f32.gguf"));
        var tensor = original.Tensors["blk.0.ffn_up.weight"];
        var x = new float[tensor.Elements];
        Dequantize.Row(GgmlType.F32, original.Data(tensor), x);
        int n = (int)tensor.RowLength;
        var random = new Random(3);
        var importance = new float[n];
        // Log-normal over four orders of magnitude, as mean squared activations of real models are.
        for (int i = 0; i < n; i++) importance[i] = MathF.Exp(4 * (random.NextSingle() - 0.5f) * 2.3f);

        double without = 0, with = 0;
        var rowImportance = new float[n];
        for (long r = 0; r < tensor.Rows; r++)
        {
            var row = x.AsSpan((int)(r * n), n).ToArray();
            var plain = RoundTrip(type, row);
            var weighted = RoundTrip(type, row, importance);
            for (int i = 0; i < n; i++)
            {
                without += importance[i] * Square(row[i] - plain[i]);
                with += importance[i] * Square(row[i] - weighted[i]);
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: importance-weighted squared error {with:G4} with, {without:G4} without");
        Assert.True(with <= without, $"{type}: {with} with the importance vector, {without} without");
        Assert.True(with < 0.95 * without, "a strongly non-uniform importance should help clearly");
    }

    public static TheoryData<string> Iq4Files() => new("llama/llama-iq4_nl.gguf", "llama/llama-iq4_xs.gguf", "qwen3moe/qwen3moe-iq4_xs.gguf", "deepseek2/deepseek2-iq4_xs.gguf");

    /// <summary>
    /// The fixture IQ4 files were made with an importance matrix, but it has no entries for the token embedding (looked
    /// up, not multiplied) nor the output head, and Q8_0 ignores it: those tensors must be llama.cpp's to the byte.
    /// </summary>
    [Theory]
    [MemberData(nameof(Iq4Files))]
    public void ReproducesLlamaQuantizeWhereNoImportanceMatrixWasUsed(string fileName)
    {
        var quantized = new GgufTensorLocator(TestFixtures.ModelOrSkip(fileName));
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip(fileName[..fileName.LastIndexOf('-')] + "-f32.gguf"));
        var compared = new List<string>();
        foreach (var tensor in quantized.Tensors.Values)
        {
            if (tensor.Name is not ("token_embd.weight" or "output.weight") && tensor.Type != GgmlType.Q8_0) continue;
            byte[] actual = QuantizedFromF32(original, tensor);
            Assert.True(quantized.Data(tensor).SequenceEqual(actual), $"{fileName} {tensor.Name} ({tensor.Type}): bytes differ from llama-quantize's");
            compared.Add($"{tensor.Name} ({tensor.Type})");
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{fileName}: byte-identical {string.Join(", ", compared)}");
        Assert.Contains(compared, c => c.StartsWith("token_embd.weight (IQ4_", StringComparison.Ordinal));
    }

    /// <summary>The F32 original of <paramref name="tensor"/> quantized here (without an importance matrix) to its type.</summary>
    internal static byte[] QuantizedFromF32(GgufTensorLocator original, GgufTensorLocator.TensorEntry tensor)
    {
        var reference = original.Tensors[tensor.Name];
        var source = new float[reference.Elements];
        Dequantize.Row(GgmlType.F32, original.Data(reference), source);
        var actual = new byte[tensor.ByteCount];
        long rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.RowLength);
        for (long row = 0; row < tensor.Rows; row++)
            Quantize.Row(tensor.Type, source.AsSpan((int)(row * tensor.RowLength), (int)tensor.RowLength), actual.AsSpan((int)(row * rowBytes), (int)rowBytes));
        return actual;
    }
}
