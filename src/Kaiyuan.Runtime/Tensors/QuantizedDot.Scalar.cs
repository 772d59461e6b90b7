using Kaiyuan.Gguf;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// Scalar reference kernels: integer sums per block exactly as llama.cpp forms them, one float multiply-add per block.
/// The SIMD kernels are tested against these.
/// </summary>
internal static class ScalarDot
{
    public static float Dot(GgmlType weightType, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n) => weightType switch
    {
        GgmlType.F32 => F32(MemoryMarshal.Cast<byte, float>(w)[..n], MemoryMarshal.Cast<byte, float>(a)[..n]),
        GgmlType.F16 => F16(MemoryMarshal.Cast<byte, ushort>(w)[..n], MemoryMarshal.Cast<byte, ushort>(a)[..n]),
        GgmlType.BF16 => BF16(MemoryMarshal.Cast<byte, ushort>(w)[..n], MemoryMarshal.Cast<byte, ushort>(a)[..n]),
        GgmlType.Q4_0 => Q4_0(w, a, n / BlockLayouts.QK),
        GgmlType.Q4_1 => Q4_1(w, a, n / BlockLayouts.QK),
        GgmlType.Q5_0 => Q5_0(w, a, n / BlockLayouts.QK),
        Q5Fields.Type => Q5_0Fields(w, a, n / BlockLayouts.QK),
        GgmlType.Q5_1 => Q5_1(w, a, n / BlockLayouts.QK),
        GgmlType.Q8_0 => Q8_0(w, a, n / BlockLayouts.QK),
        GgmlType.Q2_K => Q2_K(w, a, n / BlockLayouts.QK_K),
        GgmlType.Q3_K => Q3_K(w, a, n / BlockLayouts.QK_K),
        GgmlType.Q4_K => Q4OrQ5_K(w, a, n / BlockLayouts.QK_K, fifthBit: false),
        GgmlType.Q5_K => Q4OrQ5_K(w, a, n / BlockLayouts.QK_K, fifthBit: true),
        GgmlType.Q6_K => Q6_K(w, a, n / BlockLayouts.QK_K),
        GgmlType.IQ4_NL => IQ4_NL(w, a, n / BlockLayouts.QK),
        GgmlType.IQ4_XS => IQ4_XS(w, a, n / BlockLayouts.QK_K),
        GgmlType.TQ1_0 => TQ1_0(w, a, n / BlockLayouts.QK_K),
        GgmlType.TQ2_0 => TQ2_0(w, a, n / BlockLayouts.QK_K),
        _ when IqGridDecoder.Handles(weightType) => GridQuant(weightType, w, a, n / BlockLayouts.QK_K),
        _ => throw new NotSupportedException($"No vector dot for {weightType}."),
    };

    private static float F32(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sum += x[i] * y[i];
        }

        return sum;
    }

    private static float F16(ReadOnlySpan<ushort> x, ReadOnlySpan<ushort> y)
    {
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sum += Half16.ToSingle(x[i]) * Half16.ToSingle(y[i]);
        }

        return sum;
    }

    private static float BF16(ReadOnlySpan<ushort> x, ReadOnlySpan<ushort> y)
    {
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sum += BFloat16.ToSingle(x[i]) * BFloat16.ToSingle(y[i]);
        }

        return sum;
    }

    private static ReadOnlySpan<sbyte> Int8(ReadOnlySpan<byte> block, int offset, int count) =>
        MemoryMarshal.Cast<byte, sbyte>(block.Slice(offset, count));

    /// <summary>Σ levels·activations over one 32-element run: 16 bytes of level indices against 32 int8 activations.</summary>
    private static int Iq4Run(ReadOnlySpan<byte> qs, ReadOnlySpan<sbyte> q8)
    {
        ReadOnlySpan<sbyte> levels = Iq4Levels.Values;
        int sumi = 0;
        for (int j = 0; j < 16; j++)
        {
            sumi += levels[qs[j] & 0xF] * q8[j] + levels[qs[j] >> 4] * q8[j + 16];
        }

        return sumi;
    }

    private static float IQ4_NL(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.IQ4_NL.Size, BlockLayouts.IQ4_NL.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            int sumi = Iq4Run(x.Slice(BlockLayouts.IQ4_NL.Qs, 16), Int8(y, BlockLayouts.Q8_0.Qs, 32));
            sum += BlockFields.Half(x, BlockLayouts.IQ4_NL.D) * BlockFields.Half(y, BlockLayouts.Q8_0.D) * sumi;
        }

        return sum;
    }

    /// <summary>IQ4_XS against Q8_K: each sub-block's integer sum weighted by its integer scale − 32, one float multiply per block.</summary>
    private static float IQ4_XS(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.IQ4_XS.Size, BlockLayouts.IQ4_XS.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
            int sumi = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                sumi += (Iq4Levels.XsScale(x, ib) - 32) * Iq4Run(x.Slice(BlockLayouts.IQ4_XS.Qs + 16 * ib, 16), Int8(y, BlockLayouts.Q8_K.Qs + 32 * ib, 32));
            }

            sum += BlockFields.Half(x, BlockLayouts.IQ4_XS.D) * BlockFields.Single(y, BlockLayouts.Q8_K.D) * sumi;
        }

        return sum;
    }

    /// <summary>
    /// A grid i-quant against Q8_K: per block the exact integer Σ(2s+1)·Σq·q8 over the half sub-blocks (and, for the
    /// 1-bit types, Σ(2s+1)·shift·Σq8 for the 1/8 shifts), then one float multiply by d·dy; the type's power-of-two unit
    /// is applied to the row's sum, as llama.cpp does.
    /// </summary>
    private static float GridQuant(GgmlType type, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        int size = GgmlTypeInfo.Geometry(type).TypeSize;
        Span<sbyte> q = stackalloc sbyte[32];
        Span<sbyte> shifts = stackalloc sbyte[4];
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * size, size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
            int sumi = 0, shiftSum = 0;
            for (int sub = 0; sub < 8; sub++)
            {
                IqGridDecoder.SubBlock(type, x, sub, q, out int m0, out int m1, shifts);
                ReadOnlySpan<sbyte> q8 = Int8(y, BlockLayouts.Q8_K.Qs + 32 * sub, 32);
                for (int g = 0; g < 4; g++)
                {
                    int products = 0, activations = 0;
                    for (int j = 8 * g; j < 8 * g + 8; j++)
                    {
                        products += q[j] * q8[j];
                        activations += q8[j];
                    }

                    int m = g < 2 ? m0 : m1;
                    sumi += m * products;
                    shiftSum += m * shifts[g] * activations;
                }
            }

            sum += IqGridDecoder.Scale(type, x) * BlockFields.Single(y, BlockLayouts.Q8_K.D) * (sumi + 0.125f * shiftSum);
        }

        return IqGridDecoder.Unit(type) * sum;
    }

    /// <summary>TQ1_0 against Q8_K: an exact integer sum per block, then one float multiply by d·dy (as llama.cpp).</summary>
    private static float TQ1_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.TQ1_0.Size, BlockLayouts.TQ1_0.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
            ReadOnlySpan<sbyte> q8 = Int8(y, BlockLayouts.Q8_K.Qs, BlockLayouts.QK_K);
            int sumi = 0;
            for (int index = 0; index < BlockLayouts.TQ1_0.D; index++)
            {
                for (int n = 0; n < Ternary.DigitsOf(index); n++) sumi += Ternary.Digit(x[index], n) * q8[Ternary.Element(index, n)];
            }

            sum += sumi * (BlockFields.Half(x, BlockLayouts.TQ1_0.D) * BlockFields.Single(y, BlockLayouts.Q8_K.D));
        }

        return sum;
    }

    /// <summary>TQ2_0 against Q8_K: Σ (code − 1)·y per block exactly, then one float multiply by dy·d.</summary>
    private static float TQ2_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.TQ2_0.Size, BlockLayouts.TQ2_0.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
            ReadOnlySpan<sbyte> q8 = Int8(y, BlockLayouts.Q8_K.Qs, BlockLayouts.QK_K);
            int sumi = 0;
            for (int c = 0; c < 2; c++)
            {
                for (int l = 0; l < 4; l++)
                {
                    for (int m = 0; m < 32; m++) sumi += ((x[32 * c + m] >> (2 * l) & 3) - 1) * q8[128 * c + 32 * l + m];
                }
            }

            sum += sumi * (BlockFields.Single(y, BlockLayouts.Q8_K.D) * BlockFields.Half(x, BlockLayouts.TQ2_0.D));
        }

        return sum;
    }

    private static float Q4_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q4_0.Size, BlockLayouts.Q4_0.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            ReadOnlySpan<byte> qx = x.Slice(BlockLayouts.Q4_0.Qs, 16);
            ReadOnlySpan<sbyte> qy = Int8(y, BlockLayouts.Q8_0.Qs, 32);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += ((qx[j] & 0xF) - 8) * qy[j] + ((qx[j] >> 4) - 8) * qy[j + 16];
            }

            sum += sumi * (BlockFields.Half(x, BlockLayouts.Q4_0.D) * BlockFields.Half(y, BlockLayouts.Q8_0.D));
        }

        return sum;
    }

    private static float Q4_1(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0, minTerms = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q4_1.Size, BlockLayouts.Q4_1.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_1.Size, BlockLayouts.Q8_1.Size);
            ReadOnlySpan<byte> qx = x.Slice(BlockLayouts.Q4_1.Qs, 16);
            ReadOnlySpan<sbyte> qy = Int8(y, BlockLayouts.Q8_1.Qs, 32);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += (qx[j] & 0xF) * qy[j] + (qx[j] >> 4) * qy[j + 16];
            }

            // The min contributes m * sum(y) = m * s, with s precomputed in the activation block.
            minTerms += BlockFields.Half(x, BlockLayouts.Q4_1.M) * BlockFields.Half(y, BlockLayouts.Q8_1.S);
            sum += sumi * (BlockFields.Half(x, BlockLayouts.Q4_1.D) * BlockFields.Half(y, BlockLayouts.Q8_1.D));
        }

        return sum + minTerms;
    }

    /// <summary>Repacked Q5_0 (<see cref="Q5Fields"/>): each block back in ggml's layout, then <see cref="Q5_0"/>'s sum for it, added in block order as there.</summary>
    private static float Q5_0Fields(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        Span<byte> block = stackalloc byte[BlockLayouts.Q5_0.Size];
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            Q5Fields.UnpackBlock(w.Slice(b * BlockLayouts.Q5_0.Size, BlockLayouts.Q5_0.Size), block);
            sum += Q5_0(block, a.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size), 1);
        }
        return sum;
    }

    private static float Q5_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q5_0.Size, BlockLayouts.Q5_0.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            uint qh = BlockFields.UInt32(x, BlockLayouts.Q5_0.Qh);
            ReadOnlySpan<byte> qx = x.Slice(BlockLayouts.Q5_0.Qs, 16);
            ReadOnlySpan<sbyte> qy = Int8(y, BlockLayouts.Q8_0.Qs, 32);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                int v0 = ((qx[j] & 0xF) | (int)(((qh >> j) & 1) << 4)) - 16;
                int v1 = ((qx[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
                sumi += v0 * qy[j] + v1 * qy[j + 16];
            }

            sum += sumi * (BlockFields.Half(x, BlockLayouts.Q5_0.D) * BlockFields.Half(y, BlockLayouts.Q8_0.D));
        }

        return sum;
    }

    private static float Q5_1(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0, minTerms = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q5_1.Size, BlockLayouts.Q5_1.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_1.Size, BlockLayouts.Q8_1.Size);
            uint qh = BlockFields.UInt32(x, BlockLayouts.Q5_1.Qh);
            ReadOnlySpan<byte> qx = x.Slice(BlockLayouts.Q5_1.Qs, 16);
            ReadOnlySpan<sbyte> qy = Int8(y, BlockLayouts.Q8_1.Qs, 32);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                int v0 = (qx[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                int v1 = (qx[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                sumi += v0 * qy[j] + v1 * qy[j + 16];
            }

            minTerms += BlockFields.Half(x, BlockLayouts.Q5_1.M) * BlockFields.Half(y, BlockLayouts.Q8_1.S);
            sum += sumi * (BlockFields.Half(x, BlockLayouts.Q5_1.D) * BlockFields.Half(y, BlockLayouts.Q8_1.D));
        }

        return sum + minTerms;
    }

    private static float Q8_0(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            ReadOnlySpan<byte> y = a.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            ReadOnlySpan<sbyte> qx = Int8(x, BlockLayouts.Q8_0.Qs, 32);
            ReadOnlySpan<sbyte> qy = Int8(y, BlockLayouts.Q8_0.Qs, 32);
            int sumi = 0;
            for (int j = 0; j < 32; j++)
            {
                sumi += qx[j] * qy[j];
            }

            sum += sumi * (BlockFields.Half(x, BlockLayouts.Q8_0.D) * BlockFields.Half(y, BlockLayouts.Q8_0.D));
        }

        return sum;
    }

    /// <summary>View of one Q8_K activation block: its scale, quants and per-16 quant sums.</summary>
    private readonly ref struct ActivationBlockK
    {
        public readonly float D;
        public readonly ReadOnlySpan<sbyte> Qs;
        public readonly ReadOnlySpan<short> BSums;

        public ActivationBlockK(ReadOnlySpan<byte> activations, int blockIndex)
        {
            ReadOnlySpan<byte> y = activations.Slice(blockIndex * BlockLayouts.Q8_K.Size, BlockLayouts.Q8_K.Size);
            D = BlockFields.Single(y, BlockLayouts.Q8_K.D);
            Qs = Int8(y, BlockLayouts.Q8_K.Qs, 256);
            BSums = MemoryMarshal.Cast<byte, short>(y.Slice(BlockLayouts.Q8_K.BSums, 32));
        }
    }

    private static float Q2_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q2_K.Size, BlockLayouts.Q2_K.Size);
            var y = new ActivationBlockK(a, b);
            float yd = y.D;
            ReadOnlySpan<sbyte> qy = y.Qs;
            ReadOnlySpan<short> bsums = y.BSums;
            ReadOnlySpan<byte> scales = x.Slice(BlockLayouts.Q2_K.Scales, 16);
            ReadOnlySpan<byte> qs = x.Slice(BlockLayouts.Q2_K.Qs, 64);

            // Mins are applied through the activation's group sums: sum_g m_g * sum(y in g).
            int minSum = 0;
            for (int g = 0; g < 16; g++)
            {
                minSum += (scales[g] >> 4) * bsums[g];
            }

            int sumi = 0, group = 0, element = 0;
            for (int half = 0; half < 2; half++)
            {
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int part = 0; part < 2; part++)
                    {
                        int groupSum = 0;
                        for (int l = 0; l < 16; l++)
                        {
                            groupSum += ((qs[half * 32 + part * 16 + l] >> shift) & 3) * qy[element++];
                        }

                        sumi += (scales[group++] & 0xF) * groupSum;
                    }
                }
            }

            float d = yd * BlockFields.Half(x, BlockLayouts.Q2_K.D);
            float dmin = yd * BlockFields.Half(x, BlockLayouts.Q2_K.DMin);
            sum += d * sumi - dmin * minSum;
        }

        return sum;
    }

    private static float Q3_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q3_K.Size, BlockLayouts.Q3_K.Size);
            var y = new ActivationBlockK(a, b);
            float yd = y.D;
            ReadOnlySpan<sbyte> qy = y.Qs;
            ReadOnlySpan<byte> hmask = x.Slice(BlockLayouts.Q3_K.HMask, 32);
            ReadOnlySpan<byte> qs = x.Slice(BlockLayouts.Q3_K.Qs, 64);
            ReadOnlySpan<byte> scales = x.Slice(BlockLayouts.Q3_K.Scales, 12);

            int sumi = 0, group = 0, element = 0, highBit = 1;
            for (int half = 0; half < 2; half++)
            {
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int part = 0; part < 2; part++)
                    {
                        int groupSum = 0;
                        for (int l = 0; l < 16; l++)
                        {
                            int index = part * 16 + l;
                            int q = ((qs[half * 32 + index] >> shift) & 3) - ((hmask[index] & highBit) != 0 ? 0 : 4);
                            groupSum += q * qy[element++];
                        }

                        sumi += KQuantScales.ScaleQ3K(group++, scales) * groupSum;
                    }

                    highBit <<= 1;
                }
            }

            sum += yd * BlockFields.Half(x, BlockLayouts.Q3_K.D) * sumi;
        }

        return sum;
    }

    /// <summary>Q4_K, or Q5_K when <paramref name="fifthBit"/>: the same 6-bit scales and mins, Q5_K adds a high bit per quant.</summary>
    private static float Q4OrQ5_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks, bool fifthBit)
    {
        int size = fifthBit ? BlockLayouts.Q5_K.Size : BlockLayouts.Q4_K.Size;
        int d = fifthBit ? BlockLayouts.Q5_K.D : BlockLayouts.Q4_K.D, dMin = fifthBit ? BlockLayouts.Q5_K.DMin : BlockLayouts.Q4_K.DMin;
        int scalesAt = fifthBit ? BlockLayouts.Q5_K.Scales : BlockLayouts.Q4_K.Scales, qsAt = fifthBit ? BlockLayouts.Q5_K.Qs : BlockLayouts.Q4_K.Qs;
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * size, size);
            var y = new ActivationBlockK(a, b);
            float yd = y.D;
            ReadOnlySpan<sbyte> qy = y.Qs;
            ReadOnlySpan<short> bsums = y.BSums;
            ReadOnlySpan<byte> scales = x.Slice(scalesAt, 12);
            ReadOnlySpan<byte> qh = fifthBit ? x.Slice(BlockLayouts.Q5_K.Qh, 32) : default;
            ReadOnlySpan<byte> qs = x.Slice(qsAt, 128);

            int sumi = 0, minSum = 0;
            for (int sub = 0; sub < 8; sub++)
            {
                var (scale, min) = KQuantScales.ScaleMinK4(sub, scales);
                minSum += min * (bsums[2 * sub] + bsums[2 * sub + 1]);
                ReadOnlySpan<byte> q = qs.Slice(sub / 2 * 32, 32);
                int shift = (sub & 1) * 4;
                int subSum = 0;
                for (int l = 0; l < 32; l++)
                {
                    int value = (q[l] >> shift) & 0xF;
                    if (fifthBit) value |= ((qh[l] >> sub) & 1) << 4;
                    subSum += value * qy[sub * 32 + l];
                }

                sumi += scale * subSum;
            }

            sum += yd * BlockFields.Half(x, d) * sumi - yd * BlockFields.Half(x, dMin) * minSum;
        }

        return sum;
    }

    private static float Q6_K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = w.Slice(b * BlockLayouts.Q6_K.Size, BlockLayouts.Q6_K.Size);
            var y = new ActivationBlockK(a, b);
            float yd = y.D;
            ReadOnlySpan<sbyte> qy = y.Qs;
            ReadOnlySpan<byte> ql = x.Slice(BlockLayouts.Q6_K.Ql, 128);
            ReadOnlySpan<byte> qh = x.Slice(BlockLayouts.Q6_K.Qh, 64);
            ReadOnlySpan<sbyte> scales = Int8(x, BlockLayouts.Q6_K.Scales, 16);

            int sumi = 0;
            for (int group = 0; group < 16; group++)
            {
                // Element e = 128 * half + 32 * quarter + l (l < 32); group = e / 16.
                int half = group / 8, quarter = (group / 2) % 4, firstL = (group % 2) * 16;
                ReadOnlySpan<byte> low = ql.Slice(half * 64 + (quarter % 2) * 32, 32);
                ReadOnlySpan<byte> high = qh.Slice(half * 32, 32);
                int nibbleShift = quarter / 2 * 4, highShift = quarter * 2;
                int groupSum = 0;
                for (int l = firstL; l < firstL + 16; l++)
                {
                    int q = (((low[l] >> nibbleShift) & 0xF) | (((high[l] >> highShift) & 3) << 4)) - 32;
                    groupSum += q * qy[group * 16 + l - firstL];
                }

                sumi += scales[group] * groupSum;
            }

            sum += yd * BlockFields.Half(x, BlockLayouts.Q6_K.D) * sumi;
        }

        return sum;
    }
}
