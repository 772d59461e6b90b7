using Kaiyuan.Gguf;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Q5_0 weights as Kaiyuan keeps them in memory for its AVX-512 VBMI kernels (never in a file): the same 22-byte blocks
/// with the fp16 scale first, but each block's 32 quants stored as u = q + 16 in five-bit fields, element j at bits
/// 5j..5j+4 of bytes 2–21. ggml's layout keeps the low nibbles and the fifth bits apart, and unpacking a pair of blocks
/// from it took two permutes, two multishifts and a merge. From these fields it takes one permute, one multishift and
/// a mask. `bench matmul` Q5_0 4864 × 896 at one token (Zen 5): in cache 50–55 → 60–63 GMAC/s on one thread, 68–71 →
/// 77–80 GB/s on two; from memory 61–62 → 65–67 GB/s, which lifted a Qwen2.5-0.5B Q4_K_M decode by 4%.
/// A repacked buffer holds <see cref="Padding"/> bytes past its last block, so a block's fields load as one 32-byte
/// vector.
/// </summary>
internal static class Q5Fields
{
    /// <summary>The weight type that names a repacked matrix in the kernels' dispatch, outside ggml's numbering.</summary>
    public const GgmlType Type = (GgmlType)0x10006;

    /// <summary>Bytes a repacked buffer holds past its last block.</summary>
    public const int Padding = 64;

    /// <summary>Where a block's fields start.</summary>
    public const int Fields = 2;

    /// <summary>True when this machine's kernels take Q5_0 weights repacked: AVX-512 with VBMI.</summary>
    public static bool Used => Avx2Dot.HasVbmi && IsaLevels.Best == IsaLevel.Avx512;

    /// <summary>The file type a weight type's blocks have the geometry of (<see cref="Type"/>: Q5_0's).</summary>
    public static GgmlType FileType(GgmlType weightType) => weightType == Type ? GgmlType.Q5_0 : weightType;

    /// <summary>
    /// Repacks <paramref name="blocks"/> Q5_0 blocks from <paramref name="source"/> to <paramref name="destination"/>
    /// (the same place, or apart), on the thread pool past a few megabytes.
    /// </summary>
    public static unsafe void Pack(byte* source, byte* destination, long blocks)
    {
        const long Chunk = 1 << 16;
        if (blocks <= 2 * Chunk)
        {
            PackBlocks(source, destination, blocks);
            return;
        }
        nint from = (nint)source, to = (nint)destination;
        Parallel.For(0, (blocks + Chunk - 1) / Chunk, c =>
        {
            long first = c * Chunk, offset = first * BlockLayouts.Q5_0.Size;
            PackBlocks((byte*)from + offset, (byte*)to + offset, Math.Min(Chunk, blocks - first));
        });
    }

    /// <summary>Bits 5i..5i+3 and bit 5i + 4 of eight five-bit fields: where a group's nibbles and fifth bits are deposited.</summary>
    private const ulong NibbleBits = 0x7BDEF7BDEF, FifthBits = 0x8421084210;

    internal static unsafe void PackBlocks(byte* source, byte* destination, long blocks, bool depositBits = true)
    {
        // BMI2's bit deposit and extract make a block's fields in a few dozen operations (a 7B file's Q5_0 tensors at
        // several GB/s per core), where the bit-by-bit loop took about ten times as long.
        depositBits &= Bmi2.X64.IsSupported;
        ulong* block = stackalloc ulong[3];
        for (long b = 0; b < blocks; b++, source += BlockLayouts.Q5_0.Size, destination += BlockLayouts.Q5_0.Size)
        {
            // Read whole before writing: a block may be repacked in place.
            new ReadOnlySpan<byte>(source, BlockLayouts.Q5_0.Size).CopyTo(new Span<byte>(block, BlockLayouts.Q5_0.Size));
            byte* bytes = (byte*)block;
            uint qh = *(uint*)(bytes + BlockLayouts.Q5_0.Qh);
            byte* qs = bytes + BlockLayouts.Q5_0.Qs;
            *(ushort*)destination = *(ushort*)(bytes + BlockLayouts.Q5_0.D);
            for (int group = 0; group < 4; group++)
            {
                // Eight fields, 40 bits, five bytes: elements 8g..8g+7, whose nibbles are the low (g < 2) or high ones of qs[8(g % 2)..].
                ulong bits = 0;
                if (depositBits)
                {
                    ulong nibbles = Bmi2.X64.ParallelBitExtract(*(ulong*)(qs + 8 * (group % 2)), group < 2 ? 0x0F0F0F0F0F0F0F0FUL : 0xF0F0F0F0F0F0F0F0UL);
                    bits = Bmi2.X64.ParallelBitDeposit(nibbles, NibbleBits) | Bmi2.X64.ParallelBitDeposit((qh >> (8 * group)) & 0xFF, FifthBits);
                }
                else
                {
                    for (int i = 0; i < 8; i++)
                    {
                        int j = 8 * group + i;
                        int nibble = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
                        bits |= (ulong)(nibble | (int)((qh >> j) & 1) << 4) << (5 * i);
                    }
                }
                byte* at = destination + Fields + 5 * group;
                *(uint*)at = (uint)bits;
                at[4] = (byte)(bits >> 32);
            }
        }
    }

    /// <summary>Element <paramref name="j"/>'s u = q + 16 from a repacked block.</summary>
    public static int Unsigned(ReadOnlySpan<byte> packed, int j)
    {
        int bit = 5 * j, at = Fields + bit / 8;
        int word = packed[at] | (at + 1 < BlockLayouts.Q5_0.Size ? packed[at + 1] << 8 : 0);
        return (word >> (bit % 8)) & 0x1F;
    }

    /// <summary>One repacked block back in ggml's Q5_0 layout (for the scalar kernels and dequantization).</summary>
    public static void UnpackBlock(ReadOnlySpan<byte> packed, Span<byte> block)
    {
        block[BlockLayouts.Q5_0.D] = packed[0];
        block[BlockLayouts.Q5_0.D + 1] = packed[1];
        uint qh = 0;
        Span<byte> qs = block.Slice(BlockLayouts.Q5_0.Qs, 16);
        qs.Clear();
        for (int j = 0; j < BlockLayouts.QK; j++)
        {
            int u = Unsigned(packed, j);
            qh |= (uint)(u >> 4) << j;
            qs[j % 16] |= (byte)((u & 0x0F) << (j < 16 ? 0 : 4));
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block[BlockLayouts.Q5_0.Qh..], qh);
    }
}
