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

    /// <summary>As <see cref="AvxVnni"/> where available, plus 512-bit float kernels (F32/F16/BF16).</summary>
    Avx512,
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
        _ => false,
    };

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

        return IsSupported(IsaLevel.Avx2) ? IsaLevel.Avx2 : IsaLevel.Scalar;
    }
}
