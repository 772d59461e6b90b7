using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// What the SIMD kernels of the grid i-quants share (x86 in <c>QuantizedDot.Avx2Grid.cs</c>, Arm64 in
/// <c>QuantizedDot.NeonGrid.cs</c>): raw pointers to the pinned codebooks, so decoding needs no fixed statement; compile-time
/// names of the types, so each kernel is specialised and its decoding switch folds away; and the per-block fields read
/// the same way on every machine.
/// </summary>
internal static unsafe class IqGridKernels
{
    public static readonly ulong* Grid2Xxs = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2Xxs));
    public static readonly ulong* Grid2Xs = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2Xs));
    public static readonly ulong* Grid2S = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2S));
    public static readonly uint* Grid3Xxs = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq3Xxs));
    public static readonly uint* Grid3S = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq3S));
    public static readonly ulong* Grid1 = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq1S));
    public static readonly ulong* EvenSignVectors = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.EvenSignVectors));

    /// <summary>Names a grid type at compile time.</summary>
    public interface IGridType
    {
        static abstract GgmlType Type { get; }
    }

    public readonly struct Iq2XxsGrid : IGridType { public static GgmlType Type => GgmlType.IQ2_XXS; }

    public readonly struct Iq2XsGrid : IGridType { public static GgmlType Type => GgmlType.IQ2_XS; }

    public readonly struct Iq2SGrid : IGridType { public static GgmlType Type => GgmlType.IQ2_S; }

    public readonly struct Iq3XxsGrid : IGridType { public static GgmlType Type => GgmlType.IQ3_XXS; }

    public readonly struct Iq3SGrid : IGridType { public static GgmlType Type => GgmlType.IQ3_S; }

    public readonly struct Iq1SGrid : IGridType { public static GgmlType Type => GgmlType.IQ1_S; }

    public readonly struct Iq1MGrid : IGridType { public static GgmlType Type => GgmlType.IQ1_M; }

    /// <summary>A row kernel specialised per grid type (<see cref="Dot{TKernel}"/> picks the specialisation).</summary>
    public interface IRowKernel
    {
        static abstract float Dot<T>(byte* x, byte* y, int blocks) where T : struct, IGridType;
    }

    /// <summary>Runs <typeparamref name="TKernel"/>'s kernel specialised for <paramref name="type"/>.</summary>
    public static float Dot<TKernel>(GgmlType type, byte* x, byte* y, int blocks) where TKernel : IRowKernel => type switch
    {
        GgmlType.IQ2_XXS => TKernel.Dot<Iq2XxsGrid>(x, y, blocks),
        GgmlType.IQ2_XS => TKernel.Dot<Iq2XsGrid>(x, y, blocks),
        GgmlType.IQ2_S => TKernel.Dot<Iq2SGrid>(x, y, blocks),
        GgmlType.IQ3_XXS => TKernel.Dot<Iq3XxsGrid>(x, y, blocks),
        GgmlType.IQ3_S => TKernel.Dot<Iq3SGrid>(x, y, blocks),
        GgmlType.IQ1_S => TKernel.Dot<Iq1SGrid>(x, y, blocks),
        _ => TKernel.Dot<Iq1MGrid>(x, y, blocks),
    };

    /// <summary>The block's d (IQ1_M keeps its fp16 bits in the top nibbles of its scale words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GridScale(GgmlType type, byte* x) =>
        type == GgmlType.IQ1_M ? IqGridDecoder.Scale(type, new ReadOnlySpan<byte>(x, BlockLayouts.IQ1_M.Size)) : Half16.ToSingle(*(ushort*)x);

    /// <summary>
    /// The unit the kernels' integers count in, times d: <see cref="IqGridDecoder.Unit"/>, except that the 1-bit types'
    /// values are taken as 8·grid ± 1 and so count in eighths.
    /// </summary>
    public static float GridUnit(GgmlType type) => type is GgmlType.IQ1_S or GgmlType.IQ1_M ? 0.125f : IqGridDecoder.Unit(type);

    /// <summary>Bytes per block of a grid type (a constant once specialised).</summary>
    public static int GridBlockBytes(GgmlType type) => type switch
    {
        GgmlType.IQ2_XXS => BlockLayouts.IQ2_XXS.Size,
        GgmlType.IQ2_XS => BlockLayouts.IQ2_XS.Size,
        GgmlType.IQ2_S => BlockLayouts.IQ2_S.Size,
        GgmlType.IQ3_XXS => BlockLayouts.IQ3_XXS.Size,
        GgmlType.IQ3_S => BlockLayouts.IQ3_S.Size,
        GgmlType.IQ1_S => BlockLayouts.IQ1_S.Size,
        _ => BlockLayouts.IQ1_M.Size,
    };

    /// <summary>The odd multipliers 2s+1 of a sub-block's two halves from their packed 4-bit scales.</summary>
    public static (int Low, int High) Multipliers(byte scales) => (2 * (scales & 0xF) + 1, 2 * (scales >> 4) + 1);
}
