using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// IEEE 754 binary16 conversions with the exact results of x86 F16C (vcvtph2ps / vcvtps2ph with round-to-nearest-even),
/// which is what llama.cpp's x86 build uses for every fp16 scale and fp16 tensor.
/// </summary>
internal static class Half16
{
    /// <summary>Widens an fp16 bit pattern to float exactly; a signalling NaN comes back quiet, as F16C does.</summary>
    /// <remarks>Inlined: a call inside a SIMD kernel's loop makes the JIT spill every vector register around it.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint magnitude = (uint)(h & 0x7FFF);
        if (magnitude >= 0x7C00)
        {
            // Infinity keeps a zero mantissa; NaN payloads shift up and gain the quiet bit.
            uint nanOrInf = magnitude == 0x7C00 ? 0x7F800000u : 0x7FC00000u | ((magnitude & 0x3FF) << 13);
            return BitConverter.UInt32BitsToSingle(sign | nanOrInf);
        }

        // Placing exponent and mantissa 13 bits up gives a float 2^112 times too small (exponent bias 15 vs 127);
        // the power-of-two multiply is exact for normal and subnormal halves alike.
        float value = BitConverter.UInt32BitsToSingle(magnitude << 13) * 5.192296858534828e33f;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | sign);
    }

    /// <summary>
    /// Widens <paramref name="count"/> fp16 values to floats with <see cref="ToSingle"/>'s exact results, 16, 8 or 4 at a
    /// time (an fp16 KV cache is read this way at every attention step: a call per cached row cost more than the attention).
    /// </summary>
    public static unsafe void Widen(ushort* src, float* dst, int count)
    {
        int i = 0;
        if (Avx512F.IsSupported)
            for (; i + 16 <= count; i += 16)
                Widen(Avx512F.ConvertToVector512UInt32(Vector256.Load(src + i))).AsSingle().Store(dst + i);
        if (Avx2.IsSupported)
            for (; i + 8 <= count; i += 8)
                Widen(Avx2.ConvertToVector256Int32(Vector128.Load(src + i)).AsUInt32()).AsSingle().Store(dst + i);
        else if (Vector128.IsHardwareAccelerated)
            for (; i + 8 <= count; i += 8)
            {
                var (low, high) = Vector128.Widen(Vector128.Load(src + i));
                Widen(low).AsSingle().Store(dst + i);
                Widen(high).AsSingle().Store(dst + i + 4);
            }
        for (; i < count; i++) dst[i] = ToSingle(src[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Widen(Vector512<uint> h)
    {
        var sign = (h & Vector512.Create(0x8000u)) << 16;
        var magnitude = h & Vector512.Create(0x7FFFu);
        var finite = (Vector512.ShiftLeft(magnitude, 13).AsSingle() * Vector512.Create(5.192296858534828e33f)).AsUInt32();
        var special = Vector512.Create(0x7F800000u) | ((magnitude & Vector512.Create(0x3FFu)) << 13)
            | (~Vector512.Equals(magnitude, Vector512.Create(0x7C00u)) & Vector512.Create(0x400000u));
        return Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u)), special, finite) | sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Widen(Vector256<uint> h)
    {
        var sign = (h & Vector256.Create(0x8000u)) << 16;
        var magnitude = h & Vector256.Create(0x7FFFu);
        var finite = (Vector256.ShiftLeft(magnitude, 13).AsSingle() * Vector256.Create(5.192296858534828e33f)).AsUInt32();
        var special = Vector256.Create(0x7F800000u) | ((magnitude & Vector256.Create(0x3FFu)) << 13)
            | (~Vector256.Equals(magnitude, Vector256.Create(0x7C00u)) & Vector256.Create(0x400000u));
        return Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)), special, finite) | sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Widen(Vector128<uint> h)
    {
        var sign = (h & Vector128.Create(0x8000u)) << 16;
        var magnitude = h & Vector128.Create(0x7FFFu);
        var finite = (Vector128.ShiftLeft(magnitude, 13).AsSingle() * Vector128.Create(5.192296858534828e33f)).AsUInt32();
        var special = Vector128.Create(0x7F800000u) | ((magnitude & Vector128.Create(0x3FFu)) << 13)
            | (~Vector128.Equals(magnitude, Vector128.Create(0x7C00u)) & Vector128.Create(0x400000u));
        return Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(0x7C00u)), special, finite) | sign;
    }

    /// <summary>Narrows a float to fp16 with round-to-nearest-even; overflow goes to infinity, NaN stays NaN (quiet).</summary>
    public static ushort FromSingle(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        uint sign = (bits >> 16) & 0x8000;
        int exponent = (int)((bits >> 23) & 0xFF);
        uint mantissa = bits & 0x7FFFFF;

        if (exponent == 0xFF)
        {
            // F16C keeps the top payload bits of a NaN and forces it quiet.
            return mantissa == 0 ? (ushort)(sign | 0x7C00) : (ushort)(sign | 0x7E00u | (mantissa >> 13));
        }

        int halfExponent = exponent - 127 + 15;
        if (halfExponent >= 0x1F)
        {
            return (ushort)(sign | 0x7C00);
        }

        if (halfExponent <= 0)
        {
            // Result is subnormal or zero: shift the full significand (with its implicit 1) into place and round once.
            if (halfExponent < -10)
            {
                return (ushort)sign;
            }

            uint significand = mantissa | 0x800000;
            int shift = 14 - halfExponent;
            return (ushort)(sign | RoundShiftNearestEven(significand, shift));
        }

        // Normal: round the 23-bit mantissa to 10 bits; a carry can roll into the exponent (and up to infinity), which
        // is the correct IEEE result.
        uint combined = ((uint)halfExponent << 10) | (mantissa >> 13);
        uint rest = mantissa & 0x1FFF;
        if (rest > 0x1000 || (rest == 0x1000 && (combined & 1) != 0))
        {
            combined++;
        }

        return (ushort)(sign | combined);
    }

    private static uint RoundShiftNearestEven(uint value, int shift)
    {
        uint kept = value >> shift;
        uint rest = value & ((1u << shift) - 1);
        uint halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (kept & 1) != 0))
        {
            kept++;
        }

        return kept;
    }
}
