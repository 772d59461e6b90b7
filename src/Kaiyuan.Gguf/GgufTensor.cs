
namespace Kaiyuan.Gguf;

/// <summary>
/// A tensor of a GGUF file: its description and a zero-copy view of its bytes in the mapped file.
/// Dimensions are ggml's: <c>Dimensions[0]</c> is the row length (contiguous), the rest count rows.
/// </summary>
public sealed unsafe partial class GgufTensor
{
    internal GgufTensor(string name, GgmlType type, long[] dimensions, ulong offset, long byteSize)
    {
        Name = name;
        Type = type;
        Dimensions = dimensions;
        Offset = offset;
        ByteSize = byteSize;
        ElementCount = dimensions.Aggregate(1L, (a, d) => a * d);
        RowLength = dimensions[0];
        RowCount = ElementCount / RowLength;
        RowBytes = GgmlTypeInfo.RowBytes(type, RowLength);
    }

    /// <summary>The tensor's name, e.g. <c>blk.0.attn_q.weight</c>.</summary>
    public string Name { get; }
    /// <summary>The element type (and so the block layout) of the data.</summary>
    public GgmlType Type { get; }
    /// <summary>Sizes of the dimensions, innermost first: <c>Dimensions[0]</c> is the row length.</summary>
    public long[] Dimensions { get; }
    /// <summary>Offset from the start of the data section.</summary>
    public ulong Offset { get; }
    /// <summary>Bytes of the whole tensor.</summary>
    public long ByteSize { get; }
    /// <summary>Elements in the tensor, the product of the dimensions.</summary>
    public long ElementCount { get; }
    /// <summary>Elements in one row, <c>Dimensions[0]</c>.</summary>
    public long RowLength { get; }
    /// <summary>Rows in the tensor, the product of the dimensions after the first.</summary>
    public long RowCount { get; }
    /// <summary>Bytes of one row in the tensor's type.</summary>
    public long RowBytes { get; }

    /// <summary>Start of the tensor's bytes; valid while the owning <see cref="GgufFile"/> is open.</summary>
    public byte* Data { get; internal set; }

    /// <summary>True when <see cref="Data"/> lies in a mapped file (not an image in memory).</summary>
    internal bool Mapped { get; set; }

    /// <summary>
    /// Drops the mapped pages that lie wholly within the tensor from this process, for a tensor whose bytes were copied
    /// elsewhere: they stop counting in its resident memory, the page cache keeps them, and a later read faults them
    /// back in. Linux only (madvise MADV_DONTNEED on the read-only mapping); nothing for an image in memory.
    /// </summary>
    internal void ReleasePages()
    {
        if (!Mapped || !OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize, start = (long)Data, first = (start + page - 1) / page * page, end = (start + ByteSize) / page * page;
        if (end > first) _ = Madvise((void*)first, (nuint)(end - first), MadviseDontNeed);
    }

    private const int MadviseDontNeed = 4;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    /// <summary>The whole tensor (only for tensors under 2 GiB; use <see cref="Row"/> otherwise).</summary>
    public ReadOnlySpan<byte> Bytes => ByteSize <= int.MaxValue
        ? new ReadOnlySpan<byte>(Data, (int)ByteSize)
        : throw new InvalidOperationException($"tensor '{Name}' is {ByteSize} bytes; read it by rows");

    /// <summary>The bytes of row <paramref name="row"/> (zero-based); throws when it is out of range. Valid while the file is open.</summary>
    public ReadOnlySpan<byte> Row(long row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, RowCount);
        return new ReadOnlySpan<byte>(Data + row * RowBytes, checked((int)RowBytes));
    }

    /// <summary>The dimensions as text, e.g. <c>[4096, 32000]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Dimensions) + "]";

    /// <summary>Name, type and shape, for display.</summary>
    public override string ToString() => $"{Name} {Type} {ShapeText}";
}
