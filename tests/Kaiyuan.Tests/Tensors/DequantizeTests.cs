using Kaiyuan.Gguf;
using System.Buffers.Binary;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class DequantizeTests
{
    [Fact]
    public void VectorRowsOfKvCacheTypesEqualTheElementwiseDefinition()
    {
        // F16 rows (every bit pattern: subnormals, infinities, NaNs) and Q8_0 blocks with varied scales, as a KV cache
        // holds them: the vector paths must give exactly half → float and int8 × scale.
        // Then 13 more, so a tail is left after each vector width; NaN payloads too must come out as F16C gives them.
        const int count = 65536 + 13;
        var halves = new byte[count * 2];
        for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt16LittleEndian(halves.AsSpan(2 * i), (ushort)(i < 65536 ? i : i * 40503));
        var y = new float[count];
        Dequantize.Row(GgmlType.F16, halves, y);
        for (int i = 0; i < count; i++)
        {
            ushort h = BinaryPrimitives.ReadUInt16LittleEndian(halves.AsSpan(2 * i));
            float expected = Half16.ToSingle(h);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[i]), $"half 0x{h:X4}: {y[i]} instead of {expected}");
        }

        var random = new Random(4);
        const int blocks = 40;
        var q8 = new byte[blocks * 34];
        random.NextBytes(q8);
        for (int b = 0; b < blocks; b++) BinaryPrimitives.WriteUInt16LittleEndian(q8.AsSpan(b * 34), Half16.FromSingle((random.NextSingle() - 0.5f) * 0.01f));
        var rows = new float[blocks * 32];
        Dequantize.Row(GgmlType.Q8_0, q8, rows);
        for (int b = 0; b < blocks; b++)
        {
            float d = Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(q8.AsSpan(b * 34)));
            for (int j = 0; j < 32; j++) Assert.Equal((sbyte)q8[b * 34 + 2 + j] * d, rows[b * 32 + j]);
        }
    }

    [Fact]
    public void Q4_0BlockWithUnitScale()
    {
        var block = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3C00); // d = 1
        for (int j = 0; j < 16; j++)
        {
            block[2 + j] = (byte)(j | ((15 - j) << 4));
        }

        var y = new float[32];
        Dequantize.Row(GgmlType.Q4_0, block, y);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(j - 8, y[j]);
            Assert.Equal(7 - j, y[j + 16]);
        }
    }

    [Fact]
    public void Q4_1BlockAddsTheMin()
    {
        var block = new byte[20];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800);          // d = 0.5
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), 0xBC00); // m = -1
        for (int j = 0; j < 16; j++)
        {
            block[4 + j] = (byte)(j | (j << 4));
        }

        var y = new float[32];
        Dequantize.Row(GgmlType.Q4_1, block, y);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(0.5f * j - 1, y[j]);
            Assert.Equal(0.5f * j - 1, y[j + 16]);
        }
    }

    [Fact]
    public void Q5_0HighBitsComeFromQh()
    {
        var block = new byte[22];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3C00);
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2), 0x80010001u); // elements 0, 16 and 31
        var y = new float[32];
        Dequantize.Row(GgmlType.Q5_0, block, y);
        for (int j = 0; j < 32; j++)
        {
            Assert.Equal(j is 0 or 16 or 31 ? 0 : -16, y[j]);
        }
    }

    [Fact]
    public void Q8_0BlockScalesSignedBytes()
    {
        var block = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x4000); // d = 2
        for (int j = 0; j < 32; j++)
        {
            block[2 + j] = (byte)(sbyte)(j - 16);
        }

        var y = new float[32];
        Dequantize.Row(GgmlType.Q8_0, block, y);
        for (int j = 0; j < 32; j++)
        {
            Assert.Equal(2 * (j - 16), y[j]);
        }
    }

    [Fact]
    public void Q2_KPlanesAndScales()
    {
        var block = new byte[84];
        block.AsSpan(0, 16).Fill(0x12);            // scale 2, min 1 for every group
        block.AsSpan(16, 64).Fill(0b11_10_01_00);  // plane k holds the value k
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(80), 0x3C00);
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(82), 0x3C00);
        var y = new float[256];
        Dequantize.Row(GgmlType.Q2_K, block, y);
        for (int e = 0; e < 256; e++)
        {
            int plane = e % 128 / 32;
            Assert.Equal(2 * plane - 1, y[e]);
        }
    }

    [Fact]
    public void Q4_KSixBitScalesAndMins()
    {
        int[] scales = [1, 10, 33, 63, 5, 17, 40, 62];
        int[] mins = [0, 2, 63, 31, 16, 48, 7, 1];
        var block = new byte[144];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3C00);          // d = 1
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), 0x3800); // dmin = 0.5
        PackScaleMinK4(scales, mins, block.AsSpan(4, 12));
        for (int l = 0; l < 128; l++)
        {
            block[16 + l] = (byte)((l % 16) | ((15 - l % 16) << 4));
        }

        var y = new float[256];
        Dequantize.Row(GgmlType.Q4_K, block, y);
        for (int pair = 0; pair < 4; pair++)
        {
            for (int l = 0; l < 32; l++)
            {
                int q = (pair * 32 + l) % 16;
                Assert.Equal(scales[2 * pair] * q - 0.5f * mins[2 * pair], y[pair * 64 + l]);
                Assert.Equal(scales[2 * pair + 1] * (15 - q) - 0.5f * mins[2 * pair + 1], y[pair * 64 + 32 + l]);
            }
        }
    }

    [Fact]
    public void Q6_KQuartersAndSignedScales()
    {
        var block = new byte[210];
        block.AsSpan(0, 128).Fill(0x21);           // low nibble 1, high nibble 2
        block.AsSpan(128, 64).Fill(0b11_10_01_00); // high bits 0, 1, 2, 3 for quarters 0..3
        for (int g = 0; g < 16; g++)
        {
            block[192 + g] = (byte)(sbyte)(g - 8);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(208), 0x3C00);
        var y = new float[256];
        Dequantize.Row(GgmlType.Q6_K, block, y);
        int[] quarterValue = [1 - 32, 17 - 32, 34 - 32, 50 - 32];
        for (int e = 0; e < 256; e++)
        {
            Assert.Equal((e / 16 - 8) * quarterValue[e % 128 / 32], y[e]);
        }
    }

    /// <summary>The 16 non-uniform levels of llama.cpp's IQ4 grid, in index order.</summary>
    private static readonly int[] Iq4Grid = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    [Fact]
    public void IQ4_NLMapsNibblesThroughTheGrid()
    {
        var block = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3800); // d = 0.5
        for (int j = 0; j < 16; j++) block[2 + j] = (byte)(j | (15 - j) << 4);
        var y = new float[32];
        Dequantize.Row(GgmlType.IQ4_NL, block, y);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(0.5f * Iq4Grid[j], y[j]);
            Assert.Equal(0.5f * Iq4Grid[15 - j], y[j + 16]);
        }
    }

    [Fact]
    public void IQ4_XSSplitsSixBitScalesOverTwoFields()
    {
        // Sub-block scales 0, 1, 31, 32, 33, 47, 48, 63: low 4 bits two per byte, high 2 bits in a uint16.
        int[] scales = [0, 1, 31, 32, 33, 47, 48, 63];
        var block = new byte[136];
        BinaryPrimitives.WriteUInt16LittleEndian(block, 0x3C00); // d = 1
        int high = 0;
        for (int ib = 0; ib < 8; ib++)
        {
            high |= (scales[ib] >> 4) << (2 * ib);
            block[4 + ib / 2] |= (byte)((scales[ib] & 0xF) << (4 * (ib % 2)));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), (ushort)high);
        for (int l = 0; l < 128; l++) block[8 + l] = (byte)(l % 16 | (l * 7 % 16) << 4);

        var y = new float[256];
        Dequantize.Row(GgmlType.IQ4_XS, block, y);
        for (int ib = 0; ib < 8; ib++)
        {
            for (int j = 0; j < 16; j++)
            {
                int l = 16 * ib + j;
                Assert.Equal((float)(scales[ib] - 32) * Iq4Grid[l % 16], y[32 * ib + j]);
                Assert.Equal((float)(scales[ib] - 32) * Iq4Grid[l * 7 % 16], y[32 * ib + 16 + j]);
            }
        }
    }

    [Fact]
    public void TernaryBytesGiveBackEveryFiveDigitCombination()
    {
        // TQ1_0 packs digits d0..d4 (0..2) into ceil(Σ dᵢ·3^(4−i) · 256 / 243): every one of the 243 must read back.
        for (int code = 0; code < 243; code++)
        {
            byte packed = (byte)((code * 256 + 242) / 243);
            for (int n = 0, rest = code; n < 5; n++)
            {
                int power = (int)Math.Pow(3, 4 - n);
                Assert.Equal(rest / power - 1, Ternary.Digit(packed, n));
                rest %= power;
            }
        }
    }

    /// <summary>Inverse of ggml's get_scale_min_k4 packing, to build test blocks.</summary>
    internal static void PackScaleMinK4(int[] scales, int[] mins, Span<byte> packed)
    {
        for (int j = 0; j < 4; j++)
        {
            packed[j] = (byte)(scales[j] | ((scales[j + 4] >> 4) << 6));
            packed[j + 4] = (byte)(mins[j] | ((mins[j + 4] >> 4) << 6));
            packed[j + 8] = (byte)((scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4));
        }
    }

    public static TheoryData<string> QuantizedModelFiles() => new(
        "llama-f16.gguf", "llama-bf16.gguf", "llama-q8_0.gguf", "llama-q4_0.gguf", "llama-q4_1.gguf", "llama-q5_0.gguf",
        "llama-q5_1.gguf", "llama-q2_k.gguf", "llama-q3_k_m.gguf", "llama-q4_k_m.gguf", "llama-q5_k_m.gguf",
        "llama-q6_k.gguf", "llama-iq4_nl.gguf", "llama-iq4_xs.gguf", "llama-tq1_0.gguf", "llama-tq2_0.gguf",
        "llama-iq1_s.gguf", "llama-iq1_m.gguf", "llama-iq2_xxs.gguf", "llama-iq2_xs.gguf", "llama-iq2_s.gguf", "llama-iq2_m.gguf",
        "llama-iq3_xxs.gguf", "llama-iq3_s.gguf", "llama-iq3_m.gguf");

    internal static double Square(double v) => v * v;

    /// <summary>||actual − expected|| / ||expected||.</summary>
    internal static double RelativeRms(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        double errorSquares = 0, valueSquares = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            errorSquares += Square(actual[i] - expected[i]);
            valueSquares += Square(expected[i]);
        }

        return Math.Sqrt(errorSquares / valueSquares);
    }

    /// <summary>
    /// Relative RMS error ||dequantized - original|| / ||original|| allowed per tensor, a little above what llama.cpp's
    /// quantizers reach on these N(0, 1/fan_in) weights (a wrong layout gives errors of order 1).
    /// </summary>
    internal static double RelativeRmsBound(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1e-3,
        GgmlType.BF16 => 8e-3,
        GgmlType.Q8_0 => 0.01,
        GgmlType.Q6_K => 0.025,
        GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q5_K => 0.05,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q4_K or GgmlType.IQ4_NL or GgmlType.IQ4_XS => 0.1,
        GgmlType.Q3_K => 0.2,
        GgmlType.Q2_K => 0.4,
        // Ternary types are for models trained ternary; llama.cpp scales by max |x|, so most Gaussian weights round to 0
        // (both layouts hold the same values, so both measure 0.804 here).
        GgmlType.TQ1_0 or GgmlType.TQ2_0 => 0.85,
        // The grid i-quants without an importance matrix (measured: IQ3_S 0.166, IQ3_XXS 0.191, IQ2_S 0.257, IQ2_XS 0.311,
        // IQ2_XXS 0.354, IQ1_M 0.477, IQ1_S 0.506).
        GgmlType.IQ3_S or GgmlType.IQ3_XXS => 0.22,
        GgmlType.IQ2_S => 0.3,
        GgmlType.IQ2_XS or GgmlType.IQ2_XXS => 0.4,
        GgmlType.IQ1_S or GgmlType.IQ1_M => 0.55,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    [Theory]
    [MemberData(nameof(QuantizedModelFiles))]
    public void RealTensorsDequantizeCloseToTheF32Original(string fileName)
    {
        var quantized = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/" + fileName));
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/llama-f32.gguf"));
        int checkedTensors = 0;
        foreach (var tensor in quantized.Tensors.Values)
        {
            var reference = original.Tensors[tensor.Name];
            Assert.Equal(GgmlType.F32, reference.Type);
            Assert.Equal(reference.Elements, tensor.Elements);
            var actual = new float[tensor.Elements];
            var expected = new float[tensor.Elements];
            Dequantize.Row(tensor.Type, quantized.Data(tensor), actual);
            Dequantize.Row(GgmlType.F32, original.Data(reference), expected);

            if (tensor.Type is GgmlType.F16 or GgmlType.BF16)
            {
                // Conversion is deterministic: the file must hold exactly our rounding of the original.
                for (int i = 0; i < expected.Length; i++)
                {
                    float rounded = tensor.Type == GgmlType.F16
                        ? Half16.ToSingle(Half16.FromSingle(expected[i]))
                        : BFloat16.ToSingle(BFloat16.FromSingle(expected[i]));
                    Assert.Equal(rounded, actual[i]);
                }
            }

            double errorSquares = 0, valueSquares = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                errorSquares += (double)(actual[i] - expected[i]) * (actual[i] - expected[i]);
                valueSquares += (double)expected[i] * expected[i];
            }

            double relativeRms = valueSquares == 0 ? Math.Sqrt(errorSquares) : Math.Sqrt(errorSquares / valueSquares);
            TestContext.Current.TestOutputHelper?.WriteLine($"{tensor.Name} {tensor.Type}: relative RMS {relativeRms:G3}");
            Assert.True(relativeRms <= RelativeRmsBound(tensor.Type),
                $"{fileName} {tensor.Name} ({tensor.Type}): relative RMS error {relativeRms:G4} exceeds {RelativeRmsBound(tensor.Type)}");
            checkedTensors++;
        }

        Assert.True(checkedTensors > 0);
    }
}
