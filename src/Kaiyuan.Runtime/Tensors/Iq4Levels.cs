namespace Kaiyuan.Tensors;

/// <summary>
/// The 16 levels IQ4_NL and IQ4_XS map their 4-bit indices to: a fixed non-uniform int8 grid, denser near zero where
/// weights cluster (part of the GGUF format: llama.cpp's <c>kvalues_iq4nl</c>). Kernels look the levels up with a byte
/// shuffle, then multiply them as int8 like any other quant.
/// </summary>
internal static class Iq4Levels
{
    public static ReadOnlySpan<sbyte> Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>The 6-bit scale of IQ4_XS sub-block <paramref name="subBlock"/> (0..7), from its two bit fields; the weight is d·(scale − 32)·level.</summary>
    public static int XsScale(ReadOnlySpan<byte> block, int subBlock) =>
        XsScale(BlockFields.UInt32(block, BlockLayouts.IQ4_XS.ScalesL), block[BlockLayouts.IQ4_XS.ScalesH] | block[BlockLayouts.IQ4_XS.ScalesH + 1] << 8, subBlock);

    /// <summary><see cref="XsScale(ReadOnlySpan{byte}, int)"/> from the block's two scale fields read as little-endian integers.</summary>
    public static int XsScale(uint lowNibbles, int highPairs, int subBlock) =>
        (int)(lowNibbles >> (4 * subBlock) & 0xF) | (highPairs >> (2 * subBlock) & 3) << 4;
}
