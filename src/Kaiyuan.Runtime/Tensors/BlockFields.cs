using System.Buffers.Binary;

namespace Kaiyuan.Tensors;

/// <summary>Little-endian field reads used by the block kernels (GGUF data is little-endian on every platform).</summary>
internal static class BlockFields
{
    public static float Half(ReadOnlySpan<byte> block, int offset) =>
        Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(offset, 2)));

    public static float Single(ReadOnlySpan<byte> block, int offset) =>
        BinaryPrimitives.ReadSingleLittleEndian(block.Slice(offset, 4));

    public static uint UInt32(ReadOnlySpan<byte> block, int offset) =>
        BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(offset, 4));

    public static short Int16(ReadOnlySpan<byte> block, int offset) =>
        BinaryPrimitives.ReadInt16LittleEndian(block.Slice(offset, 2));
}
