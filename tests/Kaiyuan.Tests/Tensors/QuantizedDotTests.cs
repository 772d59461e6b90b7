using Kaiyuan.Gguf;
using System.Buffers.Binary;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class QuantizedDotTests
{
    [Fact]
    public void ActivationTypesFollowLlamaCpp()
    {
        Assert.Equal(GgmlType.F32, QuantizedDot.ActivationType(GgmlType.F32));
        Assert.Equal(GgmlType.F16, QuantizedDot.ActivationType(GgmlType.F16));
        Assert.Equal(GgmlType.BF16, QuantizedDot.ActivationType(GgmlType.BF16));
        foreach (var t in new[] { GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q8_0 })
        {
            Assert.Equal(GgmlType.Q8_0, QuantizedDot.ActivationType(t));
        }

        Assert.Equal(GgmlType.Q8_1, QuantizedDot.ActivationType(GgmlType.Q4_1));
        Assert.Equal(GgmlType.Q8_1, QuantizedDot.ActivationType(GgmlType.Q5_1));
        foreach (var t in new[] { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
        {
            Assert.Equal(GgmlType.Q8_K, QuantizedDot.ActivationType(t));
            Assert.True(QuantizedDot.IsSupported(t));
        }

        foreach (var t in new[] { GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ4_XS })
        {
            Assert.Equal(GgmlType.Q8_K, QuantizedDot.ActivationType(t));
            Assert.True(QuantizedDot.IsSupported(t));
        }

        Assert.Equal(GgmlType.Q8_0, QuantizedDot.ActivationType(GgmlType.IQ4_NL));
        // Activation-only types are never weights here.
        Assert.False(QuantizedDot.IsSupported(GgmlType.Q8_K));
    }

    [Fact]
    public void Q8_0And8_1RoundHalfToEvenWithScale127OverMax()
    {
        var x = new float[32];
        x[0] = 127f;   // max |x| = 127, so the multiplier is exactly 1
        x[1] = 2.5f;   // ties: the x86 path rounds to even (2), the C reference would give 3
        x[2] = -2.5f;
        x[3] = 3.5f;
        x[4] = 0.5f;
        x[5] = -126.6f;
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q8_1 })
        {
            var block = new byte[GgmlTypeInfo.RowBytes(type, 32)];
            QuantizedDot.QuantizeActivations(type, x, block);
            Assert.Equal((ushort)0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(block)); // d = 1
            int qs = type == GgmlType.Q8_0 ? 2 : 4;
            sbyte[] expected = [127, 2, -2, 4, 0, -127];
            for (int j = 0; j < expected.Length; j++)
            {
                Assert.Equal(expected[j], (sbyte)block[qs + j]);
            }

            if (type == GgmlType.Q8_1)
            {
                Assert.Equal(Half16.FromSingle(127 + 2 - 2 + 4 + 0 - 127), BinaryPrimitives.ReadUInt16LittleEndian(block.AsSpan(2)));
            }
        }
    }

    [Fact]
    public void Q8_KMapsTheSignedMaximumToMinus127()
    {
        var x = new float[256];
        x[0] = 127f;
        x[1] = 2.5f;
        x[17] = -3.5f;
        var block = new byte[292];
        QuantizedDot.QuantizeActivations(GgmlType.Q8_K, x, block);
        Assert.Equal(-1.0f, BinaryPrimitives.ReadSingleLittleEndian(block)); // d = 1 / iscale, iscale = -127 / 127
        Assert.Equal(-127, (sbyte)block[4]);
        Assert.Equal(-2, (sbyte)block[5]);   // -2.5 rounds to even
        Assert.Equal(4, (sbyte)block[4 + 17]); // 3.5 rounds to even
        Assert.Equal(-129, BinaryPrimitives.ReadInt16LittleEndian(block.AsSpan(260)));
        Assert.Equal(4, BinaryPrimitives.ReadInt16LittleEndian(block.AsSpan(262)));

        Array.Clear(x);
        QuantizedDot.QuantizeActivations(GgmlType.Q8_K, x, block);
        Assert.Equal(0.0f, BinaryPrimitives.ReadSingleLittleEndian(block));
        Assert.All(block.AsSpan(4).ToArray(), b => Assert.Equal(0, b));
    }

    internal static float[] RandomActivations(int n, int seed)
    {
        var random = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Roughly normal with occasional outliers, as hidden states have.
            double u = random.NextDouble() + random.NextDouble() + random.NextDouble() - 1.5;
            x[i] = (float)(u * (random.Next(50) == 0 ? 8 : 1));
        }

        return x;
    }

    /// <summary>Per-element bound on |x - dequantized activation|: half a quantization step plus fp16 scale rounding.</summary>
    private static float[] ActivationErrorBound(GgmlType activationType, float[] x)
    {
        var bound = new float[x.Length];
        int block = GgmlTypeInfo.Geometry(activationType).BlockSize;
        for (int start = 0; start < x.Length; start += block)
        {
            float maxAbs = 0;
            for (int i = start; i < start + block; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(x[i]));
            }

            for (int i = start; i < start + block; i++)
            {
                bound[i] = activationType switch
                {
                    GgmlType.F32 => 0,
                    GgmlType.F16 => Math.Abs(x[i]) * (1f / 2048) + 6e-8f,
                    GgmlType.BF16 => Math.Abs(x[i]) * (1f / 256),
                    // 0.5 step of max/127, plus 127 steps times the fp16 rounding (2^-11) of the step.
                    GgmlType.Q8_0 or GgmlType.Q8_1 => maxAbs / 127 * (0.5f + 127f / 2048) * 1.001f,
                    _ => maxAbs / 127 * 0.5f * 1.001f,
                };
            }
        }

        return bound;
    }

    [Theory]
    [MemberData(nameof(DequantizeTests.QuantizedModelFiles), MemberType = typeof(DequantizeTests))]
    public void VecDotOfRealWeightsMatchesDequantizedDot(string fileName)
    {
        var model = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/" + fileName));
        int checkedRows = 0;
        foreach (var tensor in model.Tensors.Values)
        {
            if (tensor.Dims.Length < 2 || !QuantizedDot.IsSupported(tensor.Type))
            {
                continue;
            }

            int n = (int)tensor.RowLength;
            var activationType = QuantizedDot.ActivationType(tensor.Type);
            var activations = new byte[GgmlTypeInfo.RowBytes(activationType, n)];
            var weights = new float[n];
            var dequantizedActivations = new float[n];
            for (long row = 0; row < Math.Min(tensor.Rows, 6); row++)
            {
                float[] x = RandomActivations(n, (int)row * 31 + n);
                QuantizedDot.QuantizeActivations(activationType, x, activations);
                Dequantize.Row(tensor.Type, model.Row(tensor, row), weights);
                Dequantize.Row(activationType, activations, dequantizedActivations);
                float[] errorBound = ActivationErrorBound(activationType, x);

                float actual = QuantizedDot.VecDot(tensor.Type, model.Row(tensor, row), activations, n);

                // 1. Against the exact dot of the two dequantized rows: only float rounding differs. Q4_1/Q5_1 use the
                //    activation block's fp16 s = d * sum(q) in place of fp16(d) * sum(q): allow the two fp16 roundings.
                double exact = 0, magnitude = 0, sRounding = 0;
                for (int i = 0; i < n; i++)
                {
                    exact += (double)weights[i] * dequantizedActivations[i];
                    magnitude += Math.Abs((double)weights[i] * dequantizedActivations[i]);
                }

                if (activationType == GgmlType.Q8_1)
                {
                    ReadOnlySpan<byte> weightRow = model.Row(tensor, row);
                    int blockBytes = GgmlTypeInfo.Geometry(tensor.Type).TypeSize;
                    for (int b = 0; b < n / 32; b++)
                    {
                        double blockSum = 0;
                        for (int i = b * 32; i < b * 32 + 32; i++)
                        {
                            blockSum += dequantizedActivations[i];
                        }

                        // Q4_1 and Q5_1 both store m at byte 2 of the block.
                        float m = Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(weightRow.Slice(b * blockBytes + 2, 2)));
                        sRounding += Math.Abs(m) * (Math.Abs(blockSum) + 1e-3) * (2.0 / 2048);
                    }
                }

                double tolerance = 1e-5 * magnitude + sRounding + 1e-6;
                Assert.True(Math.Abs(actual - exact) <= tolerance,
                    $"{fileName} {tensor.Name} row {row}: VecDot {actual} vs exact {exact} (tolerance {tolerance:G3})");

                // 2. Against the float activations: the activation quantization error is bounded element-wise.
                double reference = 0, quantizationBound = 0;
                for (int i = 0; i < n; i++)
                {
                    reference += (double)weights[i] * x[i];
                    quantizationBound += Math.Abs(weights[i]) * errorBound[i];
                    Assert.True(Math.Abs(dequantizedActivations[i] - x[i]) <= errorBound[i] + 1e-7f,
                        $"{activationType} activation {i}: {dequantizedActivations[i]} vs {x[i]}");
                }

                double bound = quantizationBound + tolerance;
                Assert.True(Math.Abs(actual - reference) <= bound,
                    $"{fileName} {tensor.Name} row {row}: VecDot {actual} vs float dot {reference} (bound {bound:G3})");
                checkedRows++;
            }
        }

        Assert.True(checkedRows > 0);
    }
}
