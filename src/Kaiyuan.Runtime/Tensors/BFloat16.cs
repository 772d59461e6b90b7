namespace Kaiyuan.Tensors;

/// <summary>bfloat16 conversions as ggml does them (ggml_compute_fp32_to_bf16 / ggml_compute_bf16_to_fp32).</summary>
internal static class BFloat16
{
    /// <summary>bf16 is the top half of a float, so widening is a shift.</summary>
    public static float ToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Round-to-nearest-even on the upper 16 bits; a NaN is kept and forced quiet, as ggml does.</summary>
    public static ushort FromSingle(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if ((bits & 0x7FFFFFFF) > 0x7F800000)
        {
            return (ushort)((bits >> 16) | 64);
        }

        return (ushort)((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16);
    }
}
