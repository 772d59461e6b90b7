using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>Every SIMD tier of the activation quantizer must write the scalar reference's bytes.</summary>
public class ActivationQuantizerTests
{
    private static IEnumerable<float[]> Rows(int n)
    {
        var random = new Random(11);
        for (int trial = 0; trial < 30; trial++)
        {
            yield return QuantizedDotTests.RandomActivations(n, random.Next());
        }

        // Exact ties: with max |x| = 127 the multiplier is 1 (Q8_0/Q8_1) or -1 (Q8_K), so halves hit ties.
        var ties = new float[n];
        for (int i = 0; i < n; i++)
        {
            ties[i] = i % 32 == 0 ? 127f : (i % 17 - 8) + 0.5f;
        }

        yield return ties;

        // Equal magnitudes with both signs: the first one decides Q8_K's sign.
        var signs = new float[n];
        for (int i = 0; i < n; i++)
        {
            signs[i] = i % 3 == 0 ? -3f : (i % 3 == 1 ? 3f : 0.25f);
        }

        yield return signs;
        yield return new float[n];
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q8_1)]
    [InlineData(GgmlType.Q8_K)]
    public void SimdTiersWriteTheScalarBytes(GgmlType activationType)
    {
        var tiers = new[] { IsaLevel.Avx2, IsaLevel.AvxVnni, IsaLevel.Avx512 }.Where(IsaLevels.IsSupported).ToArray();
        if (tiers.Length == 0)
        {
            Assert.Skip("This machine has no x86 SIMD tier (AVX2 + FMA); only the scalar quantizer runs here.");
        }

        const int n = 1024;
        var expected = new byte[GgmlTypeInfo.RowBytes(activationType, n)];
        var actual = new byte[expected.Length];
        foreach (float[] row in Rows(n))
        {
            ActivationQuantizer.Row(activationType, row, expected, IsaLevel.Scalar);
            foreach (var tier in tiers)
            {
                Array.Fill(actual, (byte)0xCD);
                ActivationQuantizer.Row(activationType, row, actual, tier);
                Assert.Equal(expected, actual);
            }
        }
    }
}
