using Kaiyuan.Gguf;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// How llama.cpp's x86 CPU backend prepares an activation row for a vector dot: Q8_0 / Q8_1 as the AVX
/// quantize_row_q8_0 / q8_1 (scale 127 / max|x|, round half to even), Q8_K as quantize_row_q8_K_ref (which x86 uses),
/// F16 / BF16 by element conversion. <see cref="ScalarRow"/> is the readable reference; the AVX2 tier must match it
/// byte for byte.
/// </summary>
internal static class ActivationQuantizer
{
    /// <summary>Quantizes on the best tier this machine has; every tier writes identical bytes.</summary>
    public static void Row(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst) =>
        Row(activationType, x, dst, IsaLevels.Best);

    public static void Row(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst, IsaLevel isa)
    {
        // Arm64 uses the scalar quantizer: it writes the same bytes, and activation rows are a small part of the work.
        if (IsaLevels.IsX86(isa))
        {
            Avx2ActivationQuantizer.Row(activationType, x, dst);
            return;
        }

        ScalarRow(activationType, x, dst);
    }

    public static void ScalarRow(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        switch (activationType)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(x).CopyTo(dst);
                break;
            case GgmlType.F16:
                for (int i = 0; i < x.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), Half16.FromSingle(x[i]));
                }

                break;
            case GgmlType.BF16:
                for (int i = 0; i < x.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), BFloat16.FromSingle(x[i]));
                }

                break;
            case GgmlType.Q8_0:
                for (int b = 0; b < x.Length / BlockLayouts.QK; b++)
                {
                    Q8_0Block(x.Slice(b * BlockLayouts.QK, BlockLayouts.QK), dst.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size));
                }

                break;
            case GgmlType.Q8_1:
                for (int b = 0; b < x.Length / BlockLayouts.QK; b++)
                {
                    Q8_1Block(x.Slice(b * BlockLayouts.QK, BlockLayouts.QK), dst.Slice(b * BlockLayouts.Q8_1.Size, BlockLayouts.Q8_1.Size));
                }

                break;
            case GgmlType.Q8_K:
                for (int b = 0; b < x.Length / BlockLayouts.QK_K; b++)
                {
                    Q8_KBlock(x.Slice(b * BlockLayouts.QK_K, BlockLayouts.QK_K), dst.Slice(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size));
                }

                break;
            default:
                throw new NotSupportedException($"{activationType} is not an activation format.");
        }
    }

    /// <summary>Quantizes 32 values to int8 with one scale; returns the scale and the sum of the quants.</summary>
    private static (float Scale, int Sum) QuantizeInt8(ReadOnlySpan<float> x, Span<byte> qs)
    {
        float maxAbs = 0;
        for (int j = 0; j < x.Length; j++)
        {
            maxAbs = MathF.Max(maxAbs, MathF.Abs(x[j]));
        }

        // AVX path: d = max/127 and a separately rounded reciprocal 127/max (not 1/d as the C reference does).
        float d = maxAbs / 127.0f;
        float inverse = maxAbs != 0.0f ? 127.0f / maxAbs : 0.0f;
        int sum = 0;
        for (int j = 0; j < x.Length; j++)
        {
            int q = (int)MathF.Round(x[j] * inverse, MidpointRounding.ToEven);
            q = Math.Clamp(q, sbyte.MinValue, sbyte.MaxValue);
            qs[j] = (byte)(sbyte)q;
            sum += q;
        }

        return (d, sum);
    }

    private static void Q8_0Block(ReadOnlySpan<float> x, Span<byte> block)
    {
        var (d, _) = QuantizeInt8(x, block.Slice(BlockLayouts.Q8_0.Qs, 32));
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(BlockLayouts.Q8_0.D, 2), Half16.FromSingle(d));
    }

    private static void Q8_1Block(ReadOnlySpan<float> x, Span<byte> block)
    {
        var (d, sum) = QuantizeInt8(x, block.Slice(BlockLayouts.Q8_1.Qs, 32));
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(BlockLayouts.Q8_1.D, 2), Half16.FromSingle(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(BlockLayouts.Q8_1.S, 2), Half16.FromSingle(d * sum));
    }

    private static void Q8_KBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        // The signed value of largest magnitude (first one on ties) sets the scale, so it maps to exactly -127.
        float max = 0, amax = 0;
        for (int j = 0; j < BlockLayouts.QK_K; j++)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax)
            {
                amax = ax;
                max = x[j];
            }
        }

        Span<sbyte> qs = MemoryMarshal.Cast<byte, sbyte>(block.Slice(BlockLayouts.Q8_K.Qs, BlockLayouts.QK_K));
        Span<byte> bsums = block.Slice(BlockLayouts.Q8_K.BSums, 32);
        if (amax == 0)
        {
            BinaryPrimitives.WriteSingleLittleEndian(block.Slice(BlockLayouts.Q8_K.D, 4), 0.0f);
            qs.Clear();
            bsums.Clear();
            return;
        }

        float iscale = -127.0f / max;
        for (int j = 0; j < BlockLayouts.QK_K; j++)
        {
            qs[j] = (sbyte)Math.Min(127, Rounding.NearestInt(iscale * x[j]));
        }

        for (int g = 0; g < 16; g++)
        {
            int sum = 0;
            for (int l = 0; l < 16; l++)
            {
                sum += qs[g * 16 + l];
            }

            BinaryPrimitives.WriteInt16LittleEndian(bsums.Slice(2 * g, 2), (short)sum);
        }

        BinaryPrimitives.WriteSingleLittleEndian(block.Slice(BlockLayouts.Q8_K.D, 4), 1.0f / iscale);
    }
}
