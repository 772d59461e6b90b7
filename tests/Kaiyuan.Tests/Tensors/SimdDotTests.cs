using Kaiyuan.Gguf;
using System.Buffers.Binary;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>Every SIMD tier against the scalar reference on random blocks of every type.</summary>
public class SimdDotTests
{
    public static TheoryData<GgmlType> WeightTypes() => new(
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        GgmlType.TQ1_0, GgmlType.TQ2_0, GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S,
        GgmlType.IQ3_XXS, GgmlType.IQ3_S);

    /// <summary>Random bytes for the quants, sane fp16 scales (and no -128 in Q8_0, which llama.cpp never writes).</summary>
    internal static byte[] RandomWeights(GgmlType type, int n, Random random)
    {
        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(type);
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, n)];
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)
        {
            float[] values = QuantizedDotTests.RandomActivations(n, random.Next());
            QuantizedDot.QuantizeActivations(type, values, bytes);
            return bytes;
        }

        random.NextBytes(bytes);
        int[] halfOffsets = type switch
        {
            GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.IQ1_S or GgmlType.IQ2_XXS
                or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS or GgmlType.IQ3_S => [0],
            GgmlType.IQ1_M => [],
            GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
            GgmlType.Q2_K => [80, 82],
            GgmlType.Q3_K => [108],
            GgmlType.Q6_K => [208],
            GgmlType.TQ1_0 => [52],
            GgmlType.TQ2_0 => [64],
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        for (int block = 0; block < n / blockSize; block++)
        {
            Span<byte> b = bytes.AsSpan(block * typeSize, typeSize);
            foreach (int offset in halfOffsets)
            {
                float value = (float)(random.NextDouble() * 0.02 - (offset == halfOffsets[0] ? 0.0 : 0.01));
                BinaryPrimitives.WriteUInt16LittleEndian(b.Slice(offset, 2), Half16.FromSingle(value));
            }

            if (type == GgmlType.IQ1_M)
            {
                IqGridDecoder.WriteIq1MScale(b, Half16.FromSingle((float)(random.NextDouble() * 0.02)));
            }

            if (type == GgmlType.Q8_0)
            {
                for (int j = 2; j < 34; j++)
                {
                    b[j] = b[j] == 0x80 ? (byte)0x81 : b[j];
                }
            }
        }

        return bytes;
    }

    private static IEnumerable<IsaLevel> SimdTiers() =>
        new[] { IsaLevel.Avx2, IsaLevel.AvxVnni, IsaLevel.Avx512, IsaLevel.Neon }.Where(IsaLevels.IsSupported);

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void SimdTiersMatchScalar(GgmlType type)
    {
        if (!SimdTiers().Any())
        {
            Assert.Skip("This machine has no SIMD tier (x86 AVX2 + FMA, or Arm64 AdvSimd + dot product); only the scalar kernels run here.");
        }

        var random = new Random(7 + (int)type);
        int blockSize = GgmlTypeInfo.Geometry(type).BlockSize;
        int[] lengths = blockSize == 1 ? [16, 40, 1000, 4096] : [blockSize, blockSize * 3, blockSize * 16];
        var activationType = QuantizedDot.ActivationType(type);
        foreach (int n in lengths)
        {
            for (int trial = 0; trial < 20; trial++)
            {
                byte[] weights = RandomWeights(type, n, random);
                var activations = new byte[GgmlTypeInfo.RowBytes(activationType, n)];
                QuantizedDot.QuantizeActivations(activationType, QuantizedDotTests.RandomActivations(n, random.Next()), activations);

                var w = new float[n];
                var a = new float[n];
                Dequantize.Row(type, weights, w);
                Dequantize.Row(activationType, activations, a);
                double magnitude = 0;
                for (int i = 0; i < n; i++)
                {
                    magnitude += Math.Abs((double)w[i] * a[i]);
                }

                float scalar = QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Scalar);
                float? previousTier = null;
                foreach (var tier in SimdTiers())
                {
                    float simd = QuantizedDot.VecDot(type, weights, activations, n, tier);
                    Assert.True(Math.Abs(simd - scalar) <= 1e-5 * magnitude + 1e-7,
                        $"{type} n={n} {tier}: {simd} vs scalar {scalar} (sum |w*a| = {magnitude:G4})");

                    // The tiers share one lane layout, so they agree to the bit — but for Q5_0's VBMI kernel, which sums even
                    // and odd blocks apart (pinned to the bit in Dot4Tests.VbmiPairDotsKeepTheirFloatOrderOnEveryBitPattern).
                    if (tier == IsaLevel.Avx512 && Avx2Dot.SumsEvenOddApart(type)) continue;
                    if (previousTier is float previous)
                    {
                        Assert.Equal(BitConverter.SingleToInt32Bits(previous), BitConverter.SingleToInt32Bits(simd));
                    }

                    previousTier = simd;
                }
            }
        }
    }

    /// <summary>
    /// IQ2_XXS's, IQ2_XS's, IQ3_XXS's and IQ3_S's VBMI kernels (the AVX-512 tier where the CPU has VBMI) against the AVX2 kernel to the bit,
    /// and against the scalar reference, on rows that use every grid index and every sign field in every position of a
    /// step, the extreme sub-block scales (0 and 15), extreme block scales and activations at ±127.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ3_S)]
    public void GridVbmiKernelsMatchAvx2OnEveryIndexAndSign(GgmlType type)
    {
        if (!IsaLevels.IsSupported(IsaLevel.Avx512) || !Avx2Dot.HasVbmi)
        {
            Assert.Skip($"This machine has no AVX-512 VBMI; the {type} dot runs the AVX2 grid kernel here.");
        }

        // IQ2_XXS: per sub-block 4 index bytes (8 weights each), then its signs and scale; IQ3_XXS: 8 index bytes (4 weights
        // each) per sub-block, all signs and scales after the indices.
        // IQ2_XS: per group a 16-bit word of a 9-bit index and the sign field, per sub-block a byte of two 4-bit scales.
        // IQ3_S: 8 index low bytes per sub-block, their ninth bits in a byte per sub-block, a plain sign byte per group and
        // a 4-bit scale per sub-block.
        bool iq3 = type == GgmlType.IQ3_XXS, xs = type == GgmlType.IQ2_XS, iq3s = type == GgmlType.IQ3_S;
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize, indicesPerSub = iq3 ? 8 : 4;

        const int blocks = 24, n = blocks * 256;
        var random = new Random(2026);
        float[] blockScales = [1e-3f, 60000f, 6.1e-5f, 5.96e-8f, 0.5f, 1f];
        var activationType = QuantizedDot.ActivationType(type);
        for (int trial = 0; trial < 12; trial++)
        {
            var weights = new byte[GgmlTypeInfo.RowBytes(type, n)];
            for (int b = 0; b < blocks; b++)
            {
                Span<byte> block = weights.AsSpan(b * blockBytes, blockBytes);
                float d = b < blockScales.Length ? blockScales[b] : (float)(random.NextDouble() * 0.02);
                BinaryPrimitives.WriteUInt16LittleEndian(block, Half16.FromSingle(trial % 2 == 0 ? d : -d));
                for (int sub = 0; sub < 8; sub++)
                {
                    // Index i of the row takes i + trial (mod 256) and group g sign field 37·g + trial (mod 128), so the row
                    // holds each index and field several times, each in a different position from trial to trial.
                    int scale = ((b + sub) % 4) switch { 0 => 0, 1 => 15, _ => random.Next(16) };
                    uint packed = (uint)scale << 28;
                    if (iq3s)
                    {
                        // Index 8·sub + k + trial of the block, mod 512 (the ninth bit from 2·block), every index over the trials.
                        int highBits = 0;
                        for (int k = 0; k < 8; k++)
                        {
                            int index = (64 * b + 8 * sub + k + 7 * trial) & 511;
                            block[BlockLayouts.IQ3_S.Qs + 8 * sub + k] = (byte)index;
                            highBits |= (index >> 8) << k;
                        }

                        block[BlockLayouts.IQ3_S.Qh + sub] = (byte)highBits;
                        for (int g = 0; g < 4; g++) block[BlockLayouts.IQ3_S.Signs + 4 * sub + g] = (byte)(37 * (32 * b + 4 * sub + g) + trial);
                        block[BlockLayouts.IQ3_S.Scales + sub / 2] |= (byte)(scale << (4 * (sub % 2)));
                        continue;
                    }

                    if (xs)
                    {
                        // Index 2·group + trial (mod 512): every index in every group position over the trials.
                        for (int g = 0; g < 4; g++)
                        {
                            int group = 32 * b + 4 * sub + g;
                            BinaryPrimitives.WriteUInt16LittleEndian(block[(BlockLayouts.IQ2_XS.Qs + 8 * sub + 2 * g)..],
                                (ushort)(((2 * group + trial) & 511) | ((37 * group + trial) & 127) << 9));
                        }

                        block[BlockLayouts.IQ2_XS.Scales + sub] = (byte)(scale | (15 - scale) << 4);
                        continue;
                    }

                    for (int k = 0; k < indicesPerSub; k++)
                        block[BlockLayouts.IQ2_XXS.Qs + 8 * sub + k] = (byte)(indicesPerSub * (32 * b + 4 * sub) / 4 + k + trial);
                    for (int g = 0; g < 4; g++)
                        packed |= (uint)((37 * (32 * b + 4 * sub + g) + trial) & 127) << (7 * g);

                    BinaryPrimitives.WriteUInt32LittleEndian(block[(iq3 ? BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * sub : BlockLayouts.IQ2_XXS.Qs + 8 * sub + 4)..], packed);
                }
            }

            float[] x = QuantizedDotTests.RandomActivations(n, 100 + trial);
            if (trial % 3 == 0)
            {
                // Every activation at the top of its block's range: quantized to ±127.
                for (int i = 0; i < n; i++) x[i] = random.Next(2) == 0 ? 4f : -4f;
            }

            var activations = new byte[GgmlTypeInfo.RowBytes(activationType, n)];
            QuantizedDot.QuantizeActivations(activationType, x, activations);

            float avx2 = QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Avx2);
            float vbmi = QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Avx512);
            float scalar = QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Scalar);
            Assert.Equal(BitConverter.SingleToInt32Bits(avx2), BitConverter.SingleToInt32Bits(vbmi));
            var w = new float[n];
            var a = new float[n];
            Dequantize.Row(type, weights, w);
            Dequantize.Row(activationType, activations, a);
            double magnitude = 0;
            for (int i = 0; i < n; i++) magnitude += Math.Abs((double)w[i] * a[i]);
            Assert.True(Math.Abs(vbmi - scalar) <= 1e-5 * magnitude, $"trial {trial}: vbmi {vbmi} vs scalar {scalar} (sum |w*a| = {magnitude:G4})");

            // Each block alone too, so a block's error cannot hide in the row's sum.
            for (int b = 0; b < blocks; b++)
            {
                var wb = weights.AsSpan(b * blockBytes, blockBytes);
                var ab = activations.AsSpan(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
                Assert.Equal(BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, wb, ab, 256, IsaLevel.Avx2)),
                    BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, wb, ab, 256, IsaLevel.Avx512)));
            }
        }
    }
}
