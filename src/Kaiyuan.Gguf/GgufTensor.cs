
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

    public string Name { get; }
    public GgmlType Type { get; }
    public long[] Dimensions { get; }
    /// <summary>Offset from the start of the data section.</summary>
    public ulong Offset { get; }
    public long ByteSize { get; }
    public long ElementCount { get; }
    public long RowLength { get; }
    public long RowCount { get; }
    public long RowBytes { get; }

    /// <summary>Start of the tensor's bytes; valid while the owning <see cref="GgufFile"/> is open.</summary>
    public byte* Data { get; internal set; }

    /// <summary>The whole tensor (only for tensors under 2 GiB; use <see cref="Row"/> otherwise).</summary>
    public ReadOnlySpan<byte> Bytes => ByteSize <= int.MaxValue
        ? new ReadOnlySpan<byte>(Data, (int)ByteSize)
        : throw new InvalidOperationException($"tensor '{Name}' is {ByteSize} bytes; read it by rows");

    public ReadOnlySpan<byte> Row(long row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, RowCount);
        return new ReadOnlySpan<byte>(Data + row * RowBytes, checked((int)RowBytes));
    }

    public string ShapeText => "[" + string.Join(", ", Dimensions) + "]";

    public override string ToString() => $"{Name} {Type} {ShapeText}";
}
