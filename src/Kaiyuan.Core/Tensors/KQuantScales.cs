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
}
