using System.Numerics;

namespace Kaiyuan.Tensors;

/// <summary>
/// The codebooks the grid i-quant kernels read: every grid point of <see cref="IqGridPoints"/> expanded once into the
/// byte values of its coordinates (coordinate 0 in the lowest byte), so a kernel loads 8 (or 4) weights with one read.
/// The arrays are pinned, so the SIMD kernels hold raw pointers to them.
/// </summary>
internal static class IqGrids
{
    /// <summary>IQ2_XXS: 256 points of 8 unsigned magnitudes.</summary>
    public static readonly ulong[] Iq2Xxs = Expand8(IqGridPoints.Iq2Xxs, Iq2Levels);

    /// <summary>IQ2_XS: 512 points of 8 unsigned magnitudes.</summary>
    public static readonly ulong[] Iq2Xs = Expand8(IqGridPoints.Iq2Xs, Iq2Levels);

    /// <summary>IQ2_S: 1,024 points of 8 unsigned magnitudes.</summary>
    public static readonly ulong[] Iq2S = Expand8(IqGridPoints.Iq2S, Iq2Levels);

    /// <summary>IQ3_XXS: 256 points of 4 unsigned magnitudes.</summary>
    public static readonly uint[] Iq3Xxs = Expand4(IqGridPoints.Iq3Xxs, Iq3XxsLevels);

    /// <summary>IQ3_S: 512 points of 4 unsigned magnitudes.</summary>
    public static readonly uint[] Iq3S = Expand4(IqGridPoints.Iq3S, Iq3SLevels);

    /// <summary>IQ1_S and IQ1_M: 2,048 points of 8 signed values −1, 0 or 1 (as int8 bytes).</summary>
    public static readonly ulong[] Iq1S = Expand8(IqGridPoints.Iq1S, [0xFF, 0x00, 0x01]);

    /// <summary>
    /// The 2-bit grids' three magnitudes: near 1, 3 and 5 in units of 1/8, the middle and top nudged up (25 and 43,
    /// not 24 and 40) as the format defines them.
    /// </summary>
    internal static ReadOnlySpan<byte> Iq2Levels => [0x08, 0x19, 0x2B];

    /// <summary>IQ3_XXS's eight magnitudes: 4·(2l+1) for l below 7, the top one 62.</summary>
    internal static ReadOnlySpan<byte> Iq3XxsLevels => [0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3E];

    /// <summary>IQ3_S's eight magnitudes: the odd numbers 1…15.</summary>
    internal static ReadOnlySpan<byte> Iq3SLevels => [0x01, 0x03, 0x05, 0x07, 0x09, 0x0B, 0x0D, 0x0F];

    /// <summary>
    /// Eight signs from a stored 7-bit field: bits 0–6 as stored, bit 7 set when that makes the count of negative signs
    /// even (the quantizer flips the least important weight to make it so, which saves the eighth bit).
    /// </summary>
    public static readonly byte[] EvenSigns = EvenSignsFromParity();

    /// <summary><see cref="EvenSigns"/> as eight bytes of 1 or −1 each, the form the SIMD kernels multiply by.</summary>
    public static readonly ulong[] EvenSignVectors = SignVectors(EvenSigns);

    private static ulong[] SignVectors(byte[] signs)
    {
        var table = GC.AllocateArray<ulong>(signs.Length, pinned: true);
        for (int i = 0; i < signs.Length; i++)
            for (int j = 0; j < 8; j++) table[i] |= (ulong)((signs[i] >> j & 1) != 0 ? 0xFF : 0x01) << (8 * j);
        return table;
    }

    private static byte[] EvenSignsFromParity()
    {
        var table = GC.AllocateArray<byte>(128, pinned: true);
        for (int bits = 0; bits < 128; bits++) table[bits] = (byte)(bits | (BitOperations.PopCount((uint)bits) & 1) << 7);
        return table;
    }

    private static ulong[] Expand8(ReadOnlySpan<ushort> points, ReadOnlySpan<byte> levels)
    {
        var grid = GC.AllocateArray<ulong>(points.Length, pinned: true);
        for (int i = 0; i < points.Length; i++)
        {
            ulong entry = 0;
            for (int j = 0; j < 8; j++) entry |= (ulong)levels[points[i] >> (2 * j) & 3] << (8 * j);
            grid[i] = entry;
        }

        return grid;
    }

    private static uint[] Expand4(ReadOnlySpan<ushort> points, ReadOnlySpan<byte> levels)
    {
        var grid = GC.AllocateArray<uint>(points.Length, pinned: true);
        for (int i = 0; i < points.Length; i++)
        {
            uint entry = 0;
            for (int j = 0; j < 4; j++) entry |= (uint)levels[points[i] >> (3 * j) & 7] << (8 * j);
            grid[i] = entry;
        }

        return grid;
    }
}
