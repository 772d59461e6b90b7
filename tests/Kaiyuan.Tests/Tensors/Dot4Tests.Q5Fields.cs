using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>Q5_0 repacked into five-bit fields (<see cref="Q5Fields"/>): the same quants, and every kernel's bits of the file's layout.</summary>
public sealed unsafe partial class Dot4Tests
{
    /// <summary>Raw random Q5_0 blocks (every nibble and fifth-bit pattern) with finite fp16 scales.</summary>
    private static byte[] RandomQ5Blocks(int blocks, Random random)
    {
        var bytes = new byte[blocks * BlockLayouts.Q5_0.Size];
        random.NextBytes(bytes);
        for (int b = 0; b < blocks; b++)
            BitConverter.TryWriteBytes(bytes.AsSpan(b * BlockLayouts.Q5_0.Size), (Half)(random.NextDouble() * 0.04 - 0.02));
        return bytes;
    }

    /// <summary>ggml's q + 16 of element <paramref name="j"/> of a Q5_0 block: the low nibble of qs[j] (j &lt; 16) or the high one of qs[j − 16], with bit j of qh as bit 4.</summary>
    private static int FileUnsigned(ReadOnlySpan<byte> block, int j)
    {
        int qs = block[BlockLayouts.Q5_0.Qs + j % 16];
        int nibble = j < 16 ? qs & 0x0F : qs >> 4;
        return nibble | (block[BlockLayouts.Q5_0.Qh + j / 8] >> (j % 8) & 1) << 4;
    }

    [Fact]
    public void RepackedQ5_0HoldsEachQuantPlusSixteenInFiveBitFields()
    {
        // No file can name the repacked type: the parser refuses a type without ggml's geometry.
        Assert.False(GgmlTypeInfo.IsKnown(Q5Fields.Type));
        // Past two of Pack's 65,536-block chunks, so the thread-pool path runs too.
        const int blocks = 2 * 65536 + 37;
        byte[] file = RandomQ5Blocks(blocks, new Random(5));
        var packed = new byte[file.Length];
        var inPlace = (byte[])file.Clone();
        var bitByBit = new byte[file.Length];
        fixed (byte* source = file)
        fixed (byte* destination = packed)
        fixed (byte* both = inPlace)
        fixed (byte* loop = bitByBit)
        {
            Q5Fields.Pack(source, destination, blocks);
            Q5Fields.Pack(both, both, blocks);
            // The fallback for a machine without BMI2 (the bit deposit runs where there is).
            Q5Fields.PackBlocks(source, loop, blocks, depositBits: false);
        }
        Assert.Equal(packed, inPlace);
        Assert.Equal(packed, bitByBit);
        Span<byte> back = stackalloc byte[BlockLayouts.Q5_0.Size];
        for (int b = 0; b < blocks; b++)
        {
            var block = file.AsSpan(b * BlockLayouts.Q5_0.Size, BlockLayouts.Q5_0.Size);
            var fields = packed.AsSpan(b * BlockLayouts.Q5_0.Size, BlockLayouts.Q5_0.Size);
            Assert.True(block[..2].SequenceEqual(fields[..2]), $"block {b}: the scale moved");
            for (int j = 0; j < BlockLayouts.QK; j++)
            {
                // Bits 5j..5j+4 of bytes 2–21, read here as one little-endian bit string.
                int bit = 5 * j, field = 0;
                for (int k = 0; k < 5; k++) field |= (fields[Q5Fields.Fields + (bit + k) / 8] >> ((bit + k) % 8) & 1) << k;
                Assert.True(field == FileUnsigned(block, j), $"block {b} element {j}: field {field}, q + 16 = {FileUnsigned(block, j)}");
                Assert.Equal(field, Q5Fields.Unsigned(fields, j));
            }
            Q5Fields.UnpackBlock(fields, back);
            Assert.True(back.SequenceEqual(block), $"block {b} does not unpack to the file's bytes");
        }
    }

    [Theory]
    [InlineData(896)]
    [InlineData(928)]
    [InlineData(32)]
    [InlineData(96)]
    public void RepackedQ5_0MultipliesToTheFileLayoutsBits(int n)
    {
        if (!Q5Fields.Used) Assert.Skip("This machine has no AVX-512 VBMI; Q5_0 weights keep the file's layout here.");
        // 37 rows: not a multiple of the one-token kernels' four; every batch size from one token to past the panels' threshold.
        const int rows = 37, experts = 3;
        var random = new Random(n);
        byte[] file = RandomQ5Blocks(experts * rows * n / BlockLayouts.QK, random);
        using var pool = new WorkerPool(2);
        fixed (byte* pw = file)
        {
            var stacked = new QuantMatrix(pw, GgmlType.Q5_0, experts * rows, n, "experts");
            var repacked = QuantMatrix.Repacked(stacked);
            Assert.Equal(Q5Fields.Type, repacked.Type);
            Assert.Equal(stacked.RowBytes, repacked.RowBytes);
            foreach (int tokens in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 16 })
            {
                float[] x = RandomFloats(random, tokens * n, 2);
                var expected = new float[tokens * rows * experts];
                var actual = new float[tokens * rows * experts];
                MatMul.Multiply(stacked, x, tokens, expected, new byte[MatMul.ScratchBytes(stacked, tokens)], pool);
                MatMul.Multiply(repacked, x, tokens, actual, new byte[MatMul.ScratchBytes(repacked, tokens)], pool);
                AssertSameBits(expected, actual, $"{n} columns, {tokens} tokens");
                // An expert of the repacked stack is the repacked expert.
                var expert = new float[tokens * rows];
                var expertFile = new float[tokens * rows];
                MatMul.Multiply(repacked.Expert(1, experts), x, tokens, expert, new byte[MatMul.ScratchBytes(repacked, tokens)], pool);
                MatMul.Multiply(stacked.Expert(1, experts), x, tokens, expertFile, new byte[MatMul.ScratchBytes(stacked, tokens)], pool);
                AssertSameBits(expertFile, expert, $"expert 1, {n} columns, {tokens} tokens");
            }
        }
    }

    [Fact]
    public void RepackedQ5_0RowDotsMatchTheFileLayoutAtEveryTier()
    {
        if (!Q5Fields.Used) Assert.Skip("This machine has no AVX-512 VBMI; Q5_0 weights keep the file's layout here.");
        var random = new Random(17);
        foreach (int n in new[] { 32, 64, 96, 928, 4864 })
        {
            byte[] file = RandomQ5Blocks(n / BlockLayouts.QK, random);
            var packed = new byte[file.Length + Q5Fields.Padding];
            fixed (byte* source = file)
            fixed (byte* destination = packed)
                Q5Fields.Pack(source, destination, n / BlockLayouts.QK);
            var act = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n)];
            QuantizedDot.QuantizeActivations(GgmlType.Q8_0, RandomFloats(random, n, 3), act);
            foreach (var level in new[] { IsaLevel.Scalar, IsaLevel.Avx2, IsaLevel.AvxVnni, IsaLevel.Avx512 }.Where(IsaLevels.IsSupported))
            {
                float expected = QuantizedDot.VecDot(GgmlType.Q5_0, file, act, n, level), actual = QuantizedDot.VecDot(Q5Fields.Type, packed, act, n, level);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual), $"{level}, {n} columns: {actual} against {expected}");
            }
            var values = new float[n];
            var fileValues = new float[n];
            Dequantize.Row(Q5Fields.Type, packed, values);
            Dequantize.Row(GgmlType.Q5_0, file, fileValues);
            Assert.Equal(fileValues, values);
        }
    }

    /// <summary>
    /// A repacked matrix whose padding ends where readable memory ends: the kernels' loads past a row's last block (a
    /// lone block's fields load 32 bytes) stay within <see cref="Q5Fields.Padding"/>.
    /// </summary>
    [Fact]
    public void RepackedQ5_0KernelsReadNoFurtherThanThePadding()
    {
        if (!Q5Fields.Used) Assert.Skip("This machine has no AVX-512 VBMI; Q5_0 weights keep the file's layout here.");
        if (!OperatingSystem.IsLinux()) Assert.Skip("guarded pages are made with Linux's mmap");
        const int rows = 9, n = 928;
        var random = new Random(23);
        byte[] file = RandomQ5Blocks(rows * n / BlockLayouts.QK, random);
        var packed = new byte[file.Length + Q5Fields.Padding];
        fixed (byte* source = file)
        fixed (byte* destination = packed)
            Q5Fields.Pack(source, destination, rows * n / BlockLayouts.QK);
        using var guarded = GuardedBytes.Create(packed)!;
        using var pool = new WorkerPool(2);
        fixed (byte* pw = file)
        {
            var fileMatrix = new QuantMatrix(pw, GgmlType.Q5_0, rows, n);
            var matrix = new QuantMatrix(guarded.Data, Q5Fields.Type, rows, n);
            foreach (int tokens in new[] { 1, 2, 5, 8, 9 })
            {
                float[] x = RandomFloats(random, tokens * n, 2);
                var expected = new float[tokens * rows];
                var actual = new float[tokens * rows];
                MatMul.Multiply(fileMatrix, x, tokens, expected, new byte[MatMul.ScratchBytes(fileMatrix, tokens)], pool);
                MatMul.Multiply(matrix, x, tokens, actual, new byte[MatMul.ScratchBytes(matrix, tokens)], pool);
                AssertSameBits(expected, actual, $"{tokens} tokens at the end of readable memory");
            }
        }
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}: output {i} is {actual[i]}, expected {expected[i]}");
    }
}
