using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Kaiyuan.Tensors;

/// <summary>Unpacking of the 6-bit scale fields shared by the K-quant kernels.</summary>
internal static class KQuantScales
{
    /// <summary>
    /// Scale and min of sub-block <paramref name="j"/> (0..7) from the 12-byte field of Q4_K / Q5_K (ggml's
    /// get_scale_min_k4): sub-blocks 0..3 use the low 6 bits of bytes 0..7; 4..7 combine a nibble of bytes 8..11 with
    /// the top 2 bits of bytes 0..7.
    /// </summary>
    public static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> scales)
    {
        if (j < 4)
        {
            return (scales[j] & 63, scales[j + 4] & 63);
        }

        int scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        int min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        return (scale, min);
    }

    /// <summary>
    /// Signed scale of group <paramref name="i"/> (0..15) of a Q3_K block: a low nibble from bytes 0..7 (low nibbles for
    /// groups 0..7, high nibbles for 8..15) and 2 high bits from bytes 8..11, minus the bias 32.
    /// </summary>
    public static int ScaleQ3K(int i, ReadOnlySpan<byte> scales)
    {
        int low = i < 8 ? scales[i] & 0xF : scales[i - 8] >> 4;
        int high = (scales[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        return (low | (high << 4)) - 32;
    }

    /// <summary>
    /// All eight scales and mins of a Q4_K / Q5_K block at once (the same values as <see cref="ScaleMinK4"/>):
    /// byte j of <paramref name="scales"/> is scale j, byte j of <paramref name="mins"/> is min j.
    /// </summary>
    // Inlined: called once per block inside the SIMD kernels, where a call spills every vector register.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackK4(ReadOnlySpan<byte> packed, out ulong scales, out ulong mins)
    {
        uint a0 = BinaryPrimitives.ReadUInt32LittleEndian(packed);
        uint a1 = BinaryPrimitives.ReadUInt32LittleEndian(packed[4..]);
        uint a2 = BinaryPrimitives.ReadUInt32LittleEndian(packed[8..]);
        uint scales0to3 = a0 & 0x3F3F3F3F;
        uint mins0to3 = a1 & 0x3F3F3F3F;
        uint scales4to7 = (a2 & 0x0F0F0F0F) | (((a0 >> 6) & 0x03030303) << 4);
        uint mins4to7 = ((a2 >> 4) & 0x0F0F0F0F) | (((a1 >> 6) & 0x03030303) << 4);
        scales = scales0to3 | ((ulong)scales4to7 << 32);
        mins = mins0to3 | ((ulong)mins4to7 << 32);
    }

    /// <summary>All sixteen Q3_K scales at once, still biased by 32 (byte i = <see cref="ScaleQ3K"/>(i) + 32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (ulong Low, ulong High) UnpackQ3K(ReadOnlySpan<byte> packed)
    {
        uint a0 = BinaryPrimitives.ReadUInt32LittleEndian(packed);
        uint a1 = BinaryPrimitives.ReadUInt32LittleEndian(packed[4..]);
        uint a2 = BinaryPrimitives.ReadUInt32LittleEndian(packed[8..]);
        uint s0 = (a0 & 0x0F0F0F0F) | ((a2 & 0x03030303) << 4);
        uint s1 = (a1 & 0x0F0F0F0F) | (((a2 >> 2) & 0x03030303) << 4);
        uint s2 = ((a0 >> 4) & 0x0F0F0F0F) | (((a2 >> 4) & 0x03030303) << 4);
        uint s3 = ((a1 >> 4) & 0x0F0F0F0F) | (((a2 >> 6) & 0x03030303) << 4);
        return (s0 | ((ulong)s1 << 32), s2 | ((ulong)s3 << 32));
    }
}
