using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>Instruction-set tiers of the dot kernels; internal so tests can run every tier the machine has.</summary>
internal enum IsaLevel
{
    /// <summary>Portable reference kernels.</summary>
    Scalar,

    /// <summary>AVX2 + FMA, 256-bit, with llama.cpp's lane layout.</summary>
    Avx2,

    /// <summary>As <see cref="Avx2"/>, with AVX-VNNI vpdpbusd for the int8 block sums (same integers).</summary>
    AvxVnni,

    /// <summary>As <see cref="AvxVnni"/> where available, plus 512-bit float kernels (F32/F16/BF16) and, with VBMI, the IQ2_XXS row dot.</summary>
    Avx512,

    /// <summary>Arm64 AdvSimd with the dot-product extension (sdot), 128-bit (<see cref="NeonDot"/>).</summary>
    Neon,
}

internal static class IsaLevels
{
    /// <summary>The best tier this machine runs.</summary>
    public static readonly IsaLevel Best = Detect();

    public static bool IsSupported(IsaLevel level) => level switch
    {
        IsaLevel.Scalar => true,
        IsaLevel.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        IsaLevel.AvxVnni => Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported,
        IsaLevel.Avx512 => Avx2.IsSupported && Fma.IsSupported && Avx512F.IsSupported && Avx512BW.IsSupported,
        IsaLevel.Neon => AdvSimd.Arm64.IsSupported && Dp.IsSupported,
        _ => false,
    };

    /// <summary>True for the x86 tiers, whose kernels (tiles, panels, the activation quantizer) are AVX2 code.</summary>
    public static bool IsX86(IsaLevel level) => level is IsaLevel.Avx2 or IsaLevel.AvxVnni or IsaLevel.Avx512;

    private static IsaLevel Detect()
    {
        if (IsSupported(IsaLevel.Avx512))
        {
            return IsaLevel.Avx512;
        }

        if (IsSupported(IsaLevel.AvxVnni))
        {
            return IsaLevel.AvxVnni;
        }

        if (IsSupported(IsaLevel.Avx2))
        {
            return IsaLevel.Avx2;
        }

        return IsSupported(IsaLevel.Neon) ? IsaLevel.Neon : IsaLevel.Scalar;
    }
}
