using Kaiyuan.Gguf;
using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Converts rows of any supported tensor type to float, with the arithmetic of ggml's dequantize_row_* (ggml-base is
/// built without -march flags, so a*b+c is two roundings there, not a fused multiply-add; we do the same).
/// </summary>
internal static class Dequantize
{
    /// <summary>True for the types <see cref="Row"/> can convert.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.TQ1_0 or GgmlType.TQ2_0 or Q5Fields.Type || IqGridDecoder.Handles(type);

    /// <summary>Dequantizes <c>dst.Length</c> elements (a multiple of the type's block size) from <paramref name="src"/>.</summary>
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        // The types a KV cache is kept in are read in short pieces at every attention step: converted with vector code and
        // checked no more than slicing does (the same values: a half converts exactly, an int8 times its scale with the
        // scalar path's one rounding).
        if (BitConverter.IsLittleEndian)
            switch (type)
            {
                case GgmlType.F32:
                    MemoryMarshal.Cast<byte, float>(src[..(dst.Length * sizeof(float))]).CopyTo(dst);
                    return;
                case GgmlType.F16:
                    unsafe
                    {
                        fixed (byte* from = src[..(dst.Length * 2)])
                        fixed (float* to = dst)
                            Half16.Widen((ushort*)from, to, dst.Length);
                    }
                    return;
                case GgmlType.Q8_0 when dst.Length % 32 == 0:
                    unsafe
                    {
                        fixed (byte* from = src[..(dst.Length / 32 * BlockLayouts.Q8_0.Size)])
                        fixed (float* to = dst)
                            Q8_0Blocks(from, to, dst.Length / 32);
                    }
                    return;
            }

        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(Q5Fields.FileType(type));
        if (!IsSupported(type))
        {
            throw new NotSupportedException($"Dequantization of {type} is not supported.");
        }

        if (dst.Length % blockSize != 0)
        {
            throw new ArgumentException($"Row length {dst.Length} is not a multiple of the {type} block size {blockSize}.", nameof(dst));
        }

        int blocks = dst.Length / blockSize;
        if (src.Length < (long)blocks * typeSize)
        {
            throw new ArgumentException($"Source holds {src.Length} bytes; {blocks * typeSize} are needed.", nameof(src));
        }

        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * typeSize, typeSize);
            Span<float> y = dst.Slice(b * blockSize, blockSize);
            switch (type)
            {
                case GgmlType.F32: y[0] = BinaryPrimitives.ReadSingleLittleEndian(block); break;
                case GgmlType.F16: y[0] = Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block)); break;
                case GgmlType.BF16: y[0] = BFloat16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block)); break;
                case GgmlType.Q4_0: Q4_0(block, y); break;
                case GgmlType.Q4_1: Q4_1(block, y); break;
                case GgmlType.Q5_0: Q5_0(block, y); break;
                case Q5Fields.Type: Q5FieldsBlock(block, y); break;
                case GgmlType.Q5_1: Q5_1(block, y); break;
                case GgmlType.Q8_0: Q8_0(block, y); break;
                case GgmlType.Q8_1: Q8_1(block, y); break;
                case GgmlType.Q2_K: Q2_K(block, y); break;
                case GgmlType.Q3_K: Q3_K(block, y); break;
                case GgmlType.Q4_K: Q4_K(block, y); break;
                case GgmlType.Q5_K: Q5_K(block, y); break;
                case GgmlType.Q6_K: Q6_K(block, y); break;
                case GgmlType.Q8_K: Q8_K(block, y); break;
                case GgmlType.IQ4_NL: IQ4_NL(block, y); break;
                case GgmlType.IQ4_XS: IQ4_XS(block, y); break;
                case GgmlType.TQ1_0: TQ1_0(block, y); break;
                case GgmlType.TQ2_0: TQ2_0(block, y); break;
                default: GridBlock(type, block, y); break;
            }
        }
    }

    private static void Q4_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q4_0.D);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q4_0.Qs, 16);
        for (int j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    private static void Q4_1(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q4_1.D);
        float m = BlockFields.Half(block, BlockLayouts.Q4_1.M);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q4_1.Qs, 16);
        for (int j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0xF) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }

    private static void Q5FieldsBlock(ReadOnlySpan<byte> packed, Span<float> y)
    {
        Span<byte> block = stackalloc byte[BlockLayouts.Q5_0.Size];
        Q5Fields.UnpackBlock(packed, block);
        Q5_0(block, y);
    }

    private static void Q5_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q5_0.D);
        uint qh = BlockFields.UInt32(block, BlockLayouts.Q5_0.Qh);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q5_0.Qs, 16);
        for (int j = 0; j < 16; j++)
        {
            int high0 = (int)((qh >> j) & 1) << 4;
            int high1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (((qs[j] & 0xF) | high0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | high1) - 16) * d;
        }
    }

    private static void Q5_1(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q5_1.D);
        float m = BlockFields.Half(block, BlockLayouts.Q5_1.M);
        uint qh = BlockFields.UInt32(block, BlockLayouts.Q5_1.Qh);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q5_1.Qs, 16);
        for (int j = 0; j < 16; j++)
        {
            int high0 = (int)((qh >> j) & 1) << 4;
            int high1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = ((qs[j] & 0xF) | high0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | high1) * d + m;
        }
    }

    /// <summary>
    /// <paramref name="blocks"/> Q8_0 blocks at <paramref name="src"/> as floats, each q · d rounded once as the
    /// element-wise definition does, with the widest vectors the machine has (a KV cache's tiles are read this way at
    /// every attention step).
    /// </summary>
    internal static unsafe void Q8_0Blocks(byte* src, float* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++, src += BlockLayouts.Q8_0.Size, dst += 32)
        {
            float d = Half16.ToSingle(*(ushort*)(src + BlockLayouts.Q8_0.D));
            sbyte* q = (sbyte*)(src + BlockLayouts.Q8_0.Qs);
            if (Avx512F.IsSupported)
            {
                var scale = Vector512.Create(d);
                (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q))) * scale).Store(dst);
                (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16))) * scale).Store(dst + 16);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var scale = Vector256.Create(d);
                var (lo, hi) = Vector256.Widen(Vector256.Load(q));
                var (q0, q1) = Vector256.Widen(lo);
                var (q2, q3) = Vector256.Widen(hi);
                (Vector256.ConvertToSingle(q0) * scale).Store(dst);
                (Vector256.ConvertToSingle(q1) * scale).Store(dst + 8);
                (Vector256.ConvertToSingle(q2) * scale).Store(dst + 16);
                (Vector256.ConvertToSingle(q3) * scale).Store(dst + 24);
            }
            else if (Vector128.IsHardwareAccelerated)
            {
                var scale = Vector128.Create(d);
                for (int half = 0; half < 32; half += 16)
                {
                    var (lo, hi) = Vector128.Widen(Vector128.Load(q + half));
                    var (q0, q1) = Vector128.Widen(lo);
                    var (q2, q3) = Vector128.Widen(hi);
                    (Vector128.ConvertToSingle(q0) * scale).Store(dst + half);
                    (Vector128.ConvertToSingle(q1) * scale).Store(dst + half + 4);
                    (Vector128.ConvertToSingle(q2) * scale).Store(dst + half + 8);
                    (Vector128.ConvertToSingle(q3) * scale).Store(dst + half + 12);
                }
            }
            else
                for (int i = 0; i < 32; i++) dst[i] = q[i] * d;
        }
    }

    private static void Q8_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q8_0.D);
        ReadOnlySpan<sbyte> qs = MemoryMarshal.Cast<byte, sbyte>(block.Slice(BlockLayouts.Q8_0.Qs, 32));
        for (int j = 0; j < 32; j++)
        {
            y[j] = qs[j] * d;
        }
    }

    private static void Q8_1(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q8_1.D);
        ReadOnlySpan<sbyte> qs = MemoryMarshal.Cast<byte, sbyte>(block.Slice(BlockLayouts.Q8_1.Qs, 32));
        for (int j = 0; j < 32; j++)
        {
            y[j] = qs[j] * d;
        }
    }

    private static void Q2_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q2_K.D);
        float dmin = BlockFields.Half(block, BlockLayouts.Q2_K.DMin);
        ReadOnlySpan<byte> scales = block.Slice(BlockLayouts.Q2_K.Scales, 16);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q2_K.Qs, 64);

        // Each 128 elements use 32 quant bytes: four 2-bit planes (shift 0, 2, 4, 6), each plane two groups of 16.
        int group = 0;
        int output = 0;
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> q = qs.Slice(half * 32, 32);
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int part = 0; part < 2; part++)
                {
                    int sc = scales[group++];
                    float dl = d * (sc & 0xF);
                    float ml = dmin * (sc >> 4);
                    for (int l = 0; l < 16; l++)
                    {
                        y[output++] = dl * ((q[part * 16 + l] >> shift) & 3) - ml;
                    }
                }
            }
        }
    }

    private static void Q3_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q3_K.D);
        ReadOnlySpan<byte> hmask = block.Slice(BlockLayouts.Q3_K.HMask, 32);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q3_K.Qs, 64);
        ReadOnlySpan<byte> scales = block.Slice(BlockLayouts.Q3_K.Scales, 12);

        // Same plane order as Q2_K; the high bit of each quant comes from hmask bit (group / 2), and a clear bit means -4.
        int group = 0;
        int output = 0;
        int highBit = 1;
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> q = qs.Slice(half * 32, 32);
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int part = 0; part < 2; part++)
                {
                    float dl = d * KQuantScales.ScaleQ3K(group++, scales);
                    for (int l = 0; l < 16; l++)
                    {
                        int index = part * 16 + l;
                        int value = ((q[index] >> shift) & 3) - ((hmask[index] & highBit) != 0 ? 0 : 4);
                        y[output++] = dl * value;
                    }
                }

                highBit <<= 1;
            }
        }
    }

    private static void Q4_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q4_K.D);
        float dmin = BlockFields.Half(block, BlockLayouts.Q4_K.DMin);
        ReadOnlySpan<byte> scales = block.Slice(BlockLayouts.Q4_K.Scales, 12);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q4_K.Qs, 128);

        for (int pair = 0; pair < 4; pair++)
        {
            var (sc0, m0) = KQuantScales.ScaleMinK4(2 * pair, scales);
            var (sc1, m1) = KQuantScales.ScaleMinK4(2 * pair + 1, scales);
            float d0 = d * sc0, min0 = dmin * m0;
            float d1 = d * sc1, min1 = dmin * m1;
            ReadOnlySpan<byte> q = qs.Slice(pair * 32, 32);
            Span<float> out0 = y.Slice(pair * 64, 32);
            Span<float> out1 = y.Slice(pair * 64 + 32, 32);
            for (int l = 0; l < 32; l++)
            {
                out0[l] = d0 * (q[l] & 0xF) - min0;
                out1[l] = d1 * (q[l] >> 4) - min1;
            }
        }
    }

    private static void Q5_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q5_K.D);
        float dmin = BlockFields.Half(block, BlockLayouts.Q5_K.DMin);
        ReadOnlySpan<byte> scales = block.Slice(BlockLayouts.Q5_K.Scales, 12);
        ReadOnlySpan<byte> qh = block.Slice(BlockLayouts.Q5_K.Qh, 32);
        ReadOnlySpan<byte> qs = block.Slice(BlockLayouts.Q5_K.Qs, 128);

        for (int pair = 0; pair < 4; pair++)
        {
            var (sc0, m0) = KQuantScales.ScaleMinK4(2 * pair, scales);
            var (sc1, m1) = KQuantScales.ScaleMinK4(2 * pair + 1, scales);
            float d0 = d * sc0, min0 = dmin * m0;
            float d1 = d * sc1, min1 = dmin * m1;
            int bit0 = 1 << (2 * pair), bit1 = 2 << (2 * pair);
            ReadOnlySpan<byte> q = qs.Slice(pair * 32, 32);
            Span<float> out0 = y.Slice(pair * 64, 32);
            Span<float> out1 = y.Slice(pair * 64 + 32, 32);
            for (int l = 0; l < 32; l++)
            {
                out0[l] = d0 * ((q[l] & 0xF) + ((qh[l] & bit0) != 0 ? 16 : 0)) - min0;
                out1[l] = d1 * ((q[l] >> 4) + ((qh[l] & bit1) != 0 ? 16 : 0)) - min1;
            }
        }
    }

    private static void Q6_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.Q6_K.D);
        ReadOnlySpan<byte> ql = block.Slice(BlockLayouts.Q6_K.Ql, 128);
        ReadOnlySpan<byte> qh = block.Slice(BlockLayouts.Q6_K.Qh, 64);
        ReadOnlySpan<sbyte> scales = MemoryMarshal.Cast<byte, sbyte>(block.Slice(BlockLayouts.Q6_K.Scales, 16));

        // Each half of 128 elements uses 64 low-nibble bytes and 32 high-bit bytes. Element l (l < 32) of each quarter
        // k takes the low (k = 0, 1) or high (k = 2, 3) nibble of ql[l + 32 * (k % 2)] and bits 2k..2k+1 of qh[l].
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> low = ql.Slice(half * 64, 64);
            ReadOnlySpan<byte> high = qh.Slice(half * 32, 32);
            ReadOnlySpan<sbyte> sc = scales.Slice(half * 8, 8);
            Span<float> o = y.Slice(half * 128, 128);
            for (int l = 0; l < 32; l++)
            {
                int group = l / 16;
                int q1 = ((low[l] & 0xF) | ((high[l] & 3) << 4)) - 32;
                int q2 = ((low[l + 32] & 0xF) | (((high[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((low[l] >> 4) | (((high[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((low[l + 32] >> 4) | (((high[l] >> 6) & 3) << 4)) - 32;
                o[l] = d * sc[group] * q1;
                o[l + 32] = d * sc[group + 2] * q2;
                o[l + 64] = d * sc[group + 4] * q3;
                o[l + 96] = d * sc[group + 6] * q4;
            }
        }
    }

    private static void IQ4_NL(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.IQ4_NL.D);
        Iq4Run(block.Slice(BlockLayouts.IQ4_NL.Qs, 16), d, y);
    }

    private static void IQ4_XS(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.IQ4_XS.D);
        for (int ib = 0; ib < 8; ib++)
        {
            // The sub-block scale is rounded to float once, then each level multiplied by it.
            float dl = d * (Iq4Levels.XsScale(block, ib) - 32);
            Iq4Run(block.Slice(BlockLayouts.IQ4_XS.Qs + 16 * ib, 16), dl, y.Slice(32 * ib, 32));
        }
    }

    /// <summary>32 elements from 16 bytes of level indices: low nibbles first, then high nibbles.</summary>
    private static void Iq4Run(ReadOnlySpan<byte> qs, float d, Span<float> y)
    {
        ReadOnlySpan<sbyte> levels = Iq4Levels.Values;
        for (int j = 0; j < 16; j++)
        {
            y[j] = d * levels[qs[j] & 0xF];
            y[j + 16] = d * levels[qs[j] >> 4];
        }
    }

    private static void TQ1_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.TQ1_0.D);
        for (int index = 0; index < BlockLayouts.TQ1_0.D; index++)
        {
            for (int n = 0; n < Ternary.DigitsOf(index); n++) y[Ternary.Element(index, n)] = Ternary.Digit(block[index], n) * d;
        }
    }

    private static void TQ2_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Half(block, BlockLayouts.TQ2_0.D);
        for (int c = 0; c < 2; c++)
        {
            for (int l = 0; l < 4; l++)
            {
                for (int m = 0; m < 32; m++) y[128 * c + 32 * l + m] = ((block[32 * c + m] >> (2 * l) & 3) - 1) * d;
            }
        }
    }

    /// <summary>
    /// A grid i-quant block: per half sub-block the scale d·unit·(2s+1) is rounded to float once and each value
    /// (grid ± shift/8, exact in float) multiplied by it, as ggml's dequantize_row_iq* do.
    /// </summary>
    private static void GridBlock(GgmlType type, ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = IqGridDecoder.Scale(type, block), unit = IqGridDecoder.Unit(type);
        Span<sbyte> q = stackalloc sbyte[32];
        Span<sbyte> shifts = stackalloc sbyte[4];
        for (int sub = 0; sub < 8; sub++)
        {
            IqGridDecoder.SubBlock(type, block, sub, q, out int m0, out int m1, shifts);
            float d0 = d * m0 * unit, d1 = d * m1 * unit;
            for (int j = 0; j < 32; j++) y[32 * sub + j] = (j < 16 ? d0 : d1) * (q[j] + shifts[j / 8] * 0.125f);
        }
    }

    private static void Q8_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = BlockFields.Single(block, BlockLayouts.Q8_K.D);
        ReadOnlySpan<sbyte> qs = MemoryMarshal.Cast<byte, sbyte>(block.Slice(BlockLayouts.Q8_K.Qs, 256));
        for (int j = 0; j < 256; j++)
        {
            y[j] = d * qs[j];
        }
    }
}
