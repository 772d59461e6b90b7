
namespace Kaiyuan.Gguf;

/// <summary>
/// A tensor of a GGUF file: its description and a zero-copy view of its bytes in the mapped file.
/// Dimensions are ggml's: <c>Dimensions[0]</c> is the row length (contiguous), the rest count rows.
/// </summary>
public sealed unsafe class GgufTensor
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
