using Kaiyuan.Gguf;

namespace Kaiyuan.Tensors;

/// <summary>
/// The grid i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) read the same way: each 32-element sub-block
/// is 4 or 8 grid points with signs, each 16-element half has an odd integer multiplier 2s+1, and a block has one float
/// scale d in a type-specific unit. An element is d·unit·(2s+1)·(q + shift/8), where q is the signed grid coordinate and
/// shift (±1) exists only in the 1-bit types. This decodes one sub-block into those integers for the scalar dequantizer
/// and dot product; the SIMD kernels read the same fields directly.
/// </summary>
internal static class IqGridDecoder
{
    /// <summary>True for the seven grid types.</summary>
    public static bool Handles(GgmlType type) => type is GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.IQ2_XXS or GgmlType.IQ2_XS
        or GgmlType.IQ2_S or GgmlType.IQ3_XXS or GgmlType.IQ3_S;

    /// <summary>The power of two the odd multipliers count in: 1/8 for the 2-bit grids, 1/4 for IQ3_XXS, 1 otherwise.</summary>
    public static float Unit(GgmlType type) => type switch
    {
        GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S => 0.125f,
        GgmlType.IQ3_XXS => 0.25f,
        _ => 1f,
    };

    /// <summary>The block's float scale d; IQ1_M spreads its fp16 bits over the top nibbles of its four scale words.</summary>
    public static float Scale(GgmlType type, ReadOnlySpan<byte> block)
    {
        if (type != GgmlType.IQ1_M) return BlockFields.Half(block, 0);
        ReadOnlySpan<byte> sc = block.Slice(BlockLayouts.IQ1_M.Scales, 8);
        int bits = sc[1] >> 4 | sc[3] & 0xF0 | (sc[5] >> 4) << 8 | (sc[7] & 0xF0) << 8;
        return Half16.ToSingle((ushort)bits);
    }

    /// <summary>Stores IQ1_M's fp16 scale bits in the top nibbles of its four scale words (the inverse of <see cref="Scale"/>).</summary>
    public static void WriteIq1MScale(Span<byte> block, ushort bits)
    {
        for (int word = 0; word < 4; word++)
        {
            int at = BlockLayouts.IQ1_M.Scales + 2 * word + 1;
            block[at] = (byte)(block[at] & 0x0F | (bits >> (4 * word) & 0xF) << 4);
        }
    }

    /// <summary>
    /// Decodes sub-block <paramref name="sub"/> (0..7): <paramref name="q"/> gets the 32 signed grid values,
    /// <paramref name="m0"/> and <paramref name="m1"/> the multipliers of elements 0–15 and 16–31, and
    /// <paramref name="shifts"/> the sign of each group of 8's 1/8 shift (1-bit types; 0 for the others).
    /// </summary>
    public static void SubBlock(GgmlType type, ReadOnlySpan<byte> block, int sub, Span<sbyte> q, out int m0, out int m1, Span<sbyte> shifts)
    {
        shifts[..4].Clear();
        switch (type)
        {
            case GgmlType.IQ2_XXS:
                {
                    int at = BlockLayouts.IQ2_XXS.Qs + 8 * sub;
                    uint indices = BlockFields.UInt32(block, at), signs = BlockFields.UInt32(block, at + 4);
                    for (int g = 0; g < 4; g++) Put8(q, g, IqGrids.Iq2Xxs[indices >> (8 * g) & 0xFF], IqGrids.EvenSigns[(int)(signs >> (7 * g)) & 127]);
                    m0 = m1 = 2 * (int)(signs >> 28) + 1;
                    break;
                }
            case GgmlType.IQ2_XS:
                {
                    for (int g = 0; g < 4; g++)
                    {
                        int packed = block[BlockLayouts.IQ2_XS.Qs + 8 * sub + 2 * g] | block[BlockLayouts.IQ2_XS.Qs + 8 * sub + 2 * g + 1] << 8;
                        Put8(q, g, IqGrids.Iq2Xs[packed & 511], IqGrids.EvenSigns[packed >> 9]);
                    }

                    (m0, m1) = Nibbles(block[BlockLayouts.IQ2_XS.Scales + sub]);
                    break;
                }
            case GgmlType.IQ2_S:
                {
                    int high = block[BlockLayouts.IQ2_S.Qh + sub];
                    for (int g = 0; g < 4; g++)
                    {
                        int index = block[BlockLayouts.IQ2_S.Qs + 4 * sub + g] | (high << (8 - 2 * g) & 0x300);
                        Put8(q, g, IqGrids.Iq2S[index], block[BlockLayouts.IQ2_S.Signs + 4 * sub + g]);
                    }

                    (m0, m1) = Nibbles(block[BlockLayouts.IQ2_S.Scales + sub]);
                    break;
                }
            case GgmlType.IQ3_XXS:
                {
                    uint signs = BlockFields.UInt32(block, BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * sub);
                    ReadOnlySpan<byte> indices = block.Slice(BlockLayouts.IQ3_XXS.Qs + 8 * sub, 8);
                    for (int g = 0; g < 4; g++)
                    {
                        ulong pair = IqGrids.Iq3Xxs[indices[2 * g]] | (ulong)IqGrids.Iq3Xxs[indices[2 * g + 1]] << 32;
                        Put8(q, g, pair, IqGrids.EvenSigns[(int)(signs >> (7 * g)) & 127]);
                    }

                    m0 = m1 = 2 * (int)(signs >> 28) + 1;
                    break;
                }
            case GgmlType.IQ3_S:
                {
                    int high = block[BlockLayouts.IQ3_S.Qh + sub];
                    ReadOnlySpan<byte> indices = block.Slice(BlockLayouts.IQ3_S.Qs + 8 * sub, 8);
                    for (int g = 0; g < 4; g++)
                    {
                        int first = indices[2 * g] | (high << (8 - 2 * g) & 256), second = indices[2 * g + 1] | (high << (7 - 2 * g) & 256);
                        ulong pair = IqGrids.Iq3S[first] | (ulong)IqGrids.Iq3S[second] << 32;
                        Put8(q, g, pair, block[BlockLayouts.IQ3_S.Signs + 4 * sub + g]);
                    }

                    m0 = m1 = 2 * (block[BlockLayouts.IQ3_S.Scales + sub / 2] >> (4 * (sub % 2)) & 0xF) + 1;
                    break;
                }
            case GgmlType.IQ1_S:
                {
                    int high = block[BlockLayouts.IQ1_S.Qh + 2 * sub] | block[BlockLayouts.IQ1_S.Qh + 2 * sub + 1] << 8;
                    for (int g = 0; g < 4; g++)
                    {
                        int index = block[BlockLayouts.IQ1_S.Qs + 4 * sub + g] | (high >> (3 * g) & 7) << 8;
                        Put8(q, g, IqGrids.Iq1S[index], 0);
                        shifts[g] = (sbyte)((high & 0x8000) != 0 ? -1 : 1);
                    }

                    m0 = m1 = 2 * (high >> 12 & 7) + 1;
                    break;
                }
            case GgmlType.IQ1_M:
                {
                    for (int g = 0; g < 4; g++)
                    {
                        // Each byte of qh serves two groups: its low nibble the first (3 index bits, then the shift sign), its high nibble the second.
                        int nibble = block[BlockLayouts.IQ1_M.Qh + 2 * sub + g / 2] >> (4 * (g % 2)) & 0xF;
                        Put8(q, g, IqGrids.Iq1S[block[BlockLayouts.IQ1_M.Qs + 4 * sub + g] | (nibble & 7) << 8], 0);
                        shifts[g] = (sbyte)((nibble & 8) != 0 ? -1 : 1);
                    }

                    int word = block[BlockLayouts.IQ1_M.Scales + 2 * (sub / 2)] | block[BlockLayouts.IQ1_M.Scales + 2 * (sub / 2) + 1] << 8;
                    int shift = 6 * (sub % 2);
                    m0 = 2 * (word >> shift & 7) + 1;
                    m1 = 2 * (word >> (shift + 3) & 7) + 1;
                    break;
                }
            default:
                throw new NotSupportedException($"{type} is not a grid i-quant.");
        }
    }

    private static (int Low, int High) Nibbles(byte scales) => (2 * (scales & 0xF) + 1, 2 * (scales >> 4) + 1);

    /// <summary>Group <paramref name="g"/>'s 8 values: the grid bytes as int8, negated where the sign bit is set.</summary>
    private static void Put8(Span<sbyte> q, int g, ulong grid, int signs)
    {
        for (int j = 0; j < 8; j++)
        {
            int value = (sbyte)(byte)(grid >> (8 * j));
            q[8 * g + j] = (sbyte)((signs >> j & 1) != 0 ? -value : value);
        }
    }
}
