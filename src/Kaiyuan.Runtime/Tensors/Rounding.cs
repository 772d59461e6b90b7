namespace Kaiyuan.Tensors;

/// <summary>ggml's rounding helpers.</summary>
internal static class Rounding
{
    /// <summary>
    /// ggml's nearest_int: adding 1.5 * 2^23 makes the float adder round to an integer (ties to even), which is then read
    /// from the mantissa bits. Valid for |value| &lt;= 2^22, as in ggml.
    /// </summary>
    public static int NearestInt(float value)
    {
        float shifted = value + 12582912.0f;
        int bits = BitConverter.SingleToInt32Bits(shifted);
        return (bits & 0x007FFFFF) - 0x00400000;
    }
}
