using Kaiyuan.Gguf;
using System.Buffers.Binary;

namespace Kaiyuan.Tensors;

/// <summary>
/// IQ4_NL and IQ4_XS quantizers reproducing llama.cpp's <c>quantize_iq4_nl</c> / <c>quantize_iq4_xs</c> (the shared
/// non-linear 4-bit search), with or without an importance matrix, so the bytes match llama-quantize's. Each 32-element
/// block gets its own least-squares scale over the <see cref="Iq4Levels"/>; IQ4_XS then stores those scales as 6-bit
/// multiples of one fp16 super-block scale and re-picks every level with the scale it will really be decoded with.
/// Arithmetic follows ggml's operation order, one rounding per C operator.
/// </summary>
internal static class Iq4Quantizer
{
    private const int BlockSize = 32;
    private const int SuperBlockSize = 256;

    /// <summary>Scales tried either side of the first fit (llama.cpp's ntry).</summary>
    private const int Tries = 7;

    /// <summary>The first level, −127: the signed maximum of a block maps onto it or onto its mirror.</summary>
    private const int FirstLevel = -127;

    /// <summary>
    /// Quantizes a row (a multiple of the type's block) into <paramref name="dst"/>. <paramref name="importance"/> is empty
    /// or one weight per element (llama.cpp's <c>quant_weights</c>).
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        bool xs = type switch
        {
            GgmlType.IQ4_NL => false,
            GgmlType.IQ4_XS => true,
            _ => throw new ArgumentException($"{type} is not an IQ4 type.", nameof(type)),
        };
        int superBlock = xs ? SuperBlockSize : BlockSize;
        int blockBytes = xs ? BlockLayouts.IQ4_XS.Size : BlockLayouts.IQ4_NL.Size;

        // Scratch for one super-block, reused across the row.
        Span<float> weight = stackalloc float[BlockSize];
        Span<float> scales = stackalloc float[SuperBlockSize / BlockSize];
        Span<byte> levels = stackalloc byte[SuperBlockSize];
        for (int b = 0; b < src.Length / superBlock; b++)
        {
            var x = src.Slice(b * superBlock, superBlock);
            var qw = importance.IsEmpty ? default : importance.Slice(b * superBlock, superBlock);
            var y = dst.Slice(b * blockBytes, blockBytes);
            if (xs) SuperBlock(x, qw, y, weight, scales, levels);
            else Block(x, qw, y, weight, levels);
        }
    }

    /// <summary>One IQ4_NL block: its searched scale in fp16, levels picked with the unrounded scale (as ggml).</summary>
    private static void Block(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<float> weight, Span<byte> levels)
    {
        float sigma2 = MeanSquareTimesTwo(x);
        float d = SearchScale(x, qw, sigma2, weight, levels);
        BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ4_NL.D, 2), Half16.FromSingle(d));
        float id = d != 0 ? 1 / d : 0f;
        for (int j = 0; j < BlockSize; j++) levels[j] = (byte)BestIndex(id * x[j]);
        Pack(levels[..BlockSize], y.Slice(BlockLayouts.IQ4_NL.Qs, BlockSize / 2));
    }

    /// <summary>
    /// One IQ4_XS super-block: the eight block scales become 6-bit multiples (biased by 32) of d = −(signed largest
    /// scale)/32, and each block's levels are chosen again with d·multiple.
    /// </summary>
    private static void SuperBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<float> weight, Span<float> scales, Span<byte> levels)
    {
        float sigma2 = MeanSquareTimesTwo(x);
        float maxScale = 0, amaxScale = 0;
        for (int ib = 0; ib < SuperBlockSize / BlockSize; ib++)
        {
            var blockWeights = qw.IsEmpty ? default : qw.Slice(ib * BlockSize, BlockSize);
            float scale = SearchScale(x.Slice(ib * BlockSize, BlockSize), blockWeights, sigma2, weight, levels.Slice(ib * BlockSize, BlockSize));
            scales[ib] = scale;
            if (MathF.Abs(scale) > amaxScale)
            {
                amaxScale = MathF.Abs(scale);
                maxScale = scale;
            }
        }

        float d = -maxScale / 32;
        BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ4_XS.D, 2), Half16.FromSingle(d));
        float id = d != 0 ? 1 / d : 0f;
        uint scalesLow = 0;
        int scalesHigh = 0;
        for (int ib = 0; ib < SuperBlockSize / BlockSize; ib++)
        {
            int l = Math.Clamp(Rounding.NearestInt(id * scales[ib]), -32, 31);
            float dl = d * l;
            float idl = dl != 0 ? 1 / dl : 0f;
            for (int j = 0; j < BlockSize; j++) levels[ib * BlockSize + j] = (byte)BestIndex(idl * x[ib * BlockSize + j]);
            l += 32;
            scalesLow |= (uint)(l & 0xF) << (4 * ib);
            scalesHigh |= (l >> 4) << (2 * ib);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ4_XS.ScalesH, 2), (ushort)scalesHigh);
        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.IQ4_XS.ScalesL, 4), scalesLow);
        for (int ib = 0; ib < SuperBlockSize / BlockSize; ib++)
        {
            Pack(levels.Slice(ib * BlockSize, BlockSize), y.Slice(BlockLayouts.IQ4_XS.Qs + ib * BlockSize / 2, BlockSize / 2));
        }
    }

    /// <summary>2·mean(x²) over the super-block: the floor the importance-weighted error weights add to x².</summary>
    private static float MeanSquareTimesTwo(ReadOnlySpan<float> x) => ScaleSearch.SumOfSquares(x) * (2f / x.Length);

    /// <summary>
    /// The weighted least-squares scale of one 32-element block: first the scale mapping the signed maximum to +127 (the
    /// last level clamps it to 113), then the 15 scales mapping it to −127 ± 7, keeping the best fit. Weights are x² without
    /// an importance, else importance·sqrt(sigma2 + x²). 0 for a block that is (nearly) all zero.
    /// </summary>
    private static float SearchScale(ReadOnlySpan<float> xb, ReadOnlySpan<float> qw, float sigma2, Span<float> weight, Span<byte> levels)
    {
        ScaleSearch.ElementWeights(xb, qw, sigma2, weight);

        float amax = 0, max = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            float ax = MathF.Abs(xb[j]);
            if (ax > amax)
            {
                amax = ax;
                max = xb[j];
            }
        }

        if (amax < ScaleSearch.GroupMaxEpsilon)
        {
            levels[..BlockSize].Clear();
            return 0f;
        }

        var values = Iq4Levels.Values;
        float id = 1 / (-max / FirstLevel);
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            int l = BestIndex(id * xb[j]);
            levels[j] = (byte)l;
            float q = values[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }

        float d = sumq2 > 0 ? sumqx / sumq2 : 0f;
        float best = d * sumqx;
        for (int step = -Tries; step <= Tries; step++)
        {
            id = (step + FirstLevel) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float q = values[BestIndex(id * xb[j])];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }

            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }

        return d;
    }

    /// <summary>ggml's best_index_int8: the nearest level by bisection, the upper one on an exact tie.</summary>
    internal static int BestIndex(float x)
    {
        var values = Iq4Levels.Values;
        if (x <= values[0]) return 0;
        if (x >= values[^1]) return values.Length - 1;
        int lo = 0, hi = values.Length - 1;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (x < values[mid]) hi = mid;
            else lo = mid;
        }

        return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
    }

    /// <summary>Elements 0..15 of a block in the low nibbles, 16..31 in the high.</summary>
    private static void Pack(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        for (int j = 0; j < BlockSize / 2; j++) qs[j] = (byte)(levels[j] | levels[j + BlockSize / 2] << 4);
    }
}
