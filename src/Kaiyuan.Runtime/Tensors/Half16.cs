using System.Runtime.CompilerServices;

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
