using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics;

namespace Kaiyuan.Kernels;

/// <summary>
/// C += A · B for the small float matrices of the delta rule (tens to hundreds of rows and columns, in the first-level
/// cache), in the machine's vector width (256 bits on x86 with AVX2, 128 on Arm64): a register tile of four rows of C by two vectors of columns accumulates over the shared dimension, so each B
/// load feeds four multiply-adds and each A value is broadcast once per tile.
/// </summary>
internal static class SmallGemm
{
    /// <summary>
    /// C[m×n] += A[m×k] · B[k×n]. Row r of A starts at r·<paramref name="lda"/>, of B at r·<paramref name="ldb"/>, of C at
    /// r·<paramref name="ldc"/>; rows are contiguous.
    /// </summary>
    public static void MultiplyAdd(ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k)
    {
        if (m <= 0 || n <= 0 || k <= 0) return;
        if (a.Length < (m - 1) * lda + k || b.Length < (k - 1) * ldb + n || c.Length < (m - 1) * ldc + n)
            throw new ArgumentException("SmallGemm: a matrix is smaller than its shape");
        ref float a0 = ref MemoryMarshal.GetReference(a);
        ref float b0 = ref MemoryMarshal.GetReference(b);
        ref float c0 = ref MemoryMarshal.GetReference(c);
        int w = Vector<float>.Count, j = 0;
        for (; j + 2 * w <= n; j += 2 * w)
        {
            int i = 0;
            for (; i + 4 <= m; i += 4) Tile4x2(ref a0, lda, ref b0, ldb, ref c0, ldc, i, j, k);
            for (; i < m; i++) Tile1x2(ref a0, lda, ref b0, ldb, ref c0, ldc, i, j, k);
        }
        for (; j + w <= n; j += w)
            for (int i = 0; i < m; i++)
            {
                var acc = Vector.LoadUnsafe(ref c0, (nuint)(i * ldc + j));
                for (int p = 0; p < k; p++)
                    acc = Vector.FusedMultiplyAdd(new Vector<float>(Unsafe.Add(ref a0, i * lda + p)), Vector.LoadUnsafe(ref b0, (nuint)(p * ldb + j)), acc);
                acc.StoreUnsafe(ref c0, (nuint)(i * ldc + j));
            }
        for (; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                float acc = Unsafe.Add(ref c0, i * ldc + j);
                for (int p = 0; p < k; p++) acc = MathF.FusedMultiplyAdd(Unsafe.Add(ref a0, i * lda + p), Unsafe.Add(ref b0, p * ldb + j), acc);
                Unsafe.Add(ref c0, i * ldc + j) = acc;
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile4x2(ref float a0, int lda, ref float b0, int ldb, ref float c0, int ldc, int i, int j, int k)
    {
        int w = Vector<float>.Count;
        ref float r0 = ref Unsafe.Add(ref c0, i * ldc + j);
        ref float r1 = ref Unsafe.Add(ref r0, ldc);
        ref float r2 = ref Unsafe.Add(ref r1, ldc);
        ref float r3 = ref Unsafe.Add(ref r2, ldc);
        Vector<float> c00 = Vector.LoadUnsafe(ref r0), c01 = Vector.LoadUnsafe(ref r0, (nuint)w);
        Vector<float> c10 = Vector.LoadUnsafe(ref r1), c11 = Vector.LoadUnsafe(ref r1, (nuint)w);
        Vector<float> c20 = Vector.LoadUnsafe(ref r2), c21 = Vector.LoadUnsafe(ref r2, (nuint)w);
        Vector<float> c30 = Vector.LoadUnsafe(ref r3), c31 = Vector.LoadUnsafe(ref r3, (nuint)w);
        ref float ai = ref Unsafe.Add(ref a0, i * lda);
        for (int p = 0; p < k; p++)
        {
            ref float bp = ref Unsafe.Add(ref b0, p * ldb + j);
            var v0 = Vector.LoadUnsafe(ref bp);
            var v1 = Vector.LoadUnsafe(ref bp, (nuint)w);
            var x = new Vector<float>(Unsafe.Add(ref ai, p));
            c00 = Vector.FusedMultiplyAdd(x, v0, c00);
            c01 = Vector.FusedMultiplyAdd(x, v1, c01);
            x = new Vector<float>(Unsafe.Add(ref ai, lda + p));
            c10 = Vector.FusedMultiplyAdd(x, v0, c10);
            c11 = Vector.FusedMultiplyAdd(x, v1, c11);
            x = new Vector<float>(Unsafe.Add(ref ai, 2 * lda + p));
            c20 = Vector.FusedMultiplyAdd(x, v0, c20);
            c21 = Vector.FusedMultiplyAdd(x, v1, c21);
            x = new Vector<float>(Unsafe.Add(ref ai, 3 * lda + p));
            c30 = Vector.FusedMultiplyAdd(x, v0, c30);
            c31 = Vector.FusedMultiplyAdd(x, v1, c31);
        }
        c00.StoreUnsafe(ref r0);
        c01.StoreUnsafe(ref r0, (nuint)w);
        c10.StoreUnsafe(ref r1);
        c11.StoreUnsafe(ref r1, (nuint)w);
        c20.StoreUnsafe(ref r2);
        c21.StoreUnsafe(ref r2, (nuint)w);
        c30.StoreUnsafe(ref r3);
        c31.StoreUnsafe(ref r3, (nuint)w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile1x2(ref float a0, int lda, ref float b0, int ldb, ref float c0, int ldc, int i, int j, int k)
    {
        int w = Vector<float>.Count;
        ref float r0 = ref Unsafe.Add(ref c0, i * ldc + j);
        Vector<float> c00 = Vector.LoadUnsafe(ref r0), c01 = Vector.LoadUnsafe(ref r0, (nuint)w);
        ref float ai = ref Unsafe.Add(ref a0, i * lda);
        for (int p = 0; p < k; p++)
        {
            ref float bp = ref Unsafe.Add(ref b0, p * ldb + j);
            var x = new Vector<float>(Unsafe.Add(ref ai, p));
            c00 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref bp), c00);
            c01 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref bp, (nuint)w), c01);
        }
        c00.StoreUnsafe(ref r0);
        c01.StoreUnsafe(ref r0, (nuint)w);
    }
}
