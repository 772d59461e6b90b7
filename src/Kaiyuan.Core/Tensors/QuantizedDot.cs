using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

// Interim float-only kernels; the quantized kernels replace this file.
public static class Half16
{
    public static float ToSingle(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);
    public static ushort FromSingle(float f) => BitConverter.HalfToUInt16Bits((Half)f);
}

public static class BFloat16
{
    public static float ToSingle(ushort b) => BitConverter.Int32BitsToSingle(b << 16);
    public static ushort FromSingle(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }
}

public static class Dequantize
{
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst); break;
            case GgmlType.F16:
                var h = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = Half16.ToSingle(h[i]);
                break;
            case GgmlType.BF16:
                var b = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16.ToSingle(b[i]);
                break;
            default: throw new NotSupportedException($"tensor type {type} is not supported");
        }
    }
}

public static class QuantizedDot
{
    public static GgmlType ActivationType(GgmlType weightType) => weightType;

    public static bool IsSupported(GgmlType weightType) => weightType is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    public static void QuantizeActivations(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        switch (activationType)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(x).CopyTo(dst); break;
            case GgmlType.F16:
                var h = MemoryMarshal.Cast<byte, ushort>(dst);
                for (int i = 0; i < x.Length; i++) h[i] = Half16.FromSingle(x[i]);
                break;
            case GgmlType.BF16:
                var b = MemoryMarshal.Cast<byte, ushort>(dst);
                for (int i = 0; i < x.Length; i++) b[i] = BFloat16.FromSingle(x[i]);
                break;
            default: throw new NotSupportedException($"activation type {activationType} is not supported");
        }
    }

    public static float VecDot(GgmlType weightType, ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        Span<float> w = stackalloc float[0];
        switch (weightType)
        {
            case GgmlType.F32:
                return System.Numerics.Tensors.TensorPrimitives.Dot(MemoryMarshal.Cast<byte, float>(weightRow)[..n], MemoryMarshal.Cast<byte, float>(activationRow)[..n]);
            default:
                float sum = 0;
                var wr = MemoryMarshal.Cast<byte, ushort>(weightRow);
                var ar = MemoryMarshal.Cast<byte, ushort>(activationRow);
                bool bf = weightType == GgmlType.BF16;
                for (int i = 0; i < n; i++)
                    sum += bf ? BFloat16.ToSingle(wr[i]) * BFloat16.ToSingle(ar[i]) : Half16.ToSingle(wr[i]) * Half16.ToSingle(ar[i]);
                return sum;
        }
    }
}
