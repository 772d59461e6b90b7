using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>The two-, four- and eight-row kernels give exactly the single-row dot of each activation row.</summary>
public sealed unsafe partial class Dot4Tests
{
    /// <summary>A weight row of <paramref name="values"/> quantized, or random blocks for a type we cannot write yet.</summary>
    private static byte[] WeightRow(GgmlType type, float[] values, Random random)
    {
        // Random blocks reach every grid point, sign and multiplier of the grid types (whose writers need an importance matrix).
        if (!Quantize.IsSupported(type) || IqGridDecoder.Handles(type)) return SimdDotTests.RandomWeights(type, values.Length, random);
        var w = new byte[GgmlTypeInfo.RowBytes(type, values.Length)];
        Quantize.Row(type, values, w);
        return w;
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ1_M)]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ2_S)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ3_S)]
    public void MultiRowAndScaledDotsAreBitIdenticalToSingleRowDot(GgmlType type)
    {
        if (!QuantizedDot.HasDot4(type)) Assert.Skip("no AVX2 on this machine");
        int n = GgmlTypeInfo.Geometry(type).BlockSize == 256 ? 768 : 320;
        var random = new Random(11);
        float[] weights = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        weights[5] = 0;
        var w = WeightRow(type, weights, random);
        var actType = QuantizedDot.ActivationType(type);
        int actBytes = (int)GgmlTypeInfo.RowBytes(actType, n);
        const int rows = 8;
        var act = new byte[rows * actBytes];
        for (int j = 0; j < rows; j++)
        {
            float[] x = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 6 - 3)).ToArray();
            QuantizedDot.QuantizeActivations(actType, x, act.AsSpan(j * actBytes, actBytes));
        }
        var output = new float[rows * 3];
        var output8 = new float[rows * 3];
        var output2 = new float[rows * 3];
        var output3 = new float[rows * 3];
        int sideBytes = QuantizedDot.SideBytes(type, n);
        var side = new byte[rows * sideBytes + 1];
        fixed (byte* pw = w)
        fixed (byte* pa = act)
        fixed (float* po = output)
        fixed (float* po8 = output8)
        fixed (float* po2 = output2)
        fixed (float* po3 = output3)
        fixed (byte* ps = side)
        {
            for (int j = 0; j < rows; j++) QuantizedDot.PrepareSide(type, pa + j * actBytes, n, ps + j * sideBytes);
            float* both = stackalloc float[2];
            QuantizedDot.Dot4(type, pw, pa, ps, actBytes, sideBytes, n, po, 3);
            QuantizedDot.Dot4(type, pw, pa + 4 * actBytes, ps + 4 * sideBytes, actBytes, sideBytes, n, po + 12, 3);
            if (QuantizedDot.HasDot8(type)) QuantizedDot.Dot8(type, pw, pa, ps, actBytes, sideBytes, n, po8, 3);
            QuantizedDot.Dot3(type, pw, pa, ps, actBytes, sideBytes, n, po3, 3);
            QuantizedDot.Dot3(type, pw, pa + 3 * actBytes, ps + 3 * sideBytes, actBytes, sideBytes, n, po3 + 9, 3);
            for (int j = 0; j < rows; j += 2) QuantizedDot.Dot2(type, pw, pa + j * actBytes, ps + j * sideBytes, actBytes, sideBytes, n, po2 + j * 3, 3);
            // The small-batch tiles (2–7 rows in one), each starting at a different row.
            float* batch = stackalloc float[rows];
            for (int count = 2; QuantizedDot.HasDotRows(type) && count < rows; count++)
            {
                int first = rows - count;
                QuantizedDot.DotRows(type, count, pw, w.Length, 1, pa + first * actBytes, ps + first * sideBytes, actBytes, sideBytes, n, batch, 1);
                for (int j = 0; j < count; j++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, w, act.AsSpan((first + j) * actBytes, actBytes), n)), BitConverter.SingleToInt32Bits(batch[j]));
            }
            for (int j = 0; j < rows; j++)
            {
                if (QuantizedDot.HasDot8(type)) Assert.Equal(BitConverter.SingleToInt32Bits(output[j * 3]), BitConverter.SingleToInt32Bits(output8[j * 3]));
                float single = QuantizedDot.VecDot(type, w, act.AsSpan(j * actBytes, actBytes), n);
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(output[j * 3]));
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(output2[j * 3]));
                if (j < 6) Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(output3[j * 3]));
                float one = QuantizedDot.Dot1(type, pw, pa + j * actBytes, ps + j * sideBytes, n);
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(one));
                if (QuantizedDot.HasDot1Rows2(type))
                {
                    // The same row twice, as the two weight rows of the one-token kernel (its stride here: 0).
                    QuantizedDot.Dot1Rows2(type, pw, 0, pa + j * actBytes, ps + j * sideBytes, n, both, 1);
                    Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(both[0]));
                    Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(both[1]));
                }
            }
        }
    }

    /// <summary>
    /// Q4_1's and Q5_1's dots on AVX-512 VBMI (two blocks per load, a minimum per block, Q8_1 activations) — one weight
    /// row and two at one token, and the 2–7-row small-batch tiles — equal the 256-bit dot to the bit on raw random blocks (every quant pattern), rows of 1 to 14
    /// blocks (the two-block loop, the last pair read from the bytes that end with it, the one-block tails), scales and
    /// minimums at fp16's extremes and activations at ±127; rows that end where readable memory ends, or start where it
    /// starts, are read within.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_1)]
    public void MinimumTypesOneTokenDotsMatchThe256BitDotOnEveryBitPattern(GgmlType type)
    {
        if (!Avx2Dot.HasVbmi) Assert.Skip($"This machine has no AVX-512 VBMI; {type} runs the 256-bit kernel here.");
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        var random = new Random(11);
        float[] scales = [0f, 60000f, -6.1e-5f, 5.96e-8f, -1f, 0.01f, -65504f];
        for (int blocks = 1; blocks <= 14; blocks++)
        {
            int n = blocks * BlockLayouts.QK, rowBytes = (int)GgmlTypeInfo.RowBytes(type, n), actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_1, n);
            for (int trial = 0; trial < 20; trial++)
            {
                var w = new byte[2 * rowBytes];
                random.NextBytes(w);
                for (int b = 0; b < 2 * blocks; b++)
                    for (int field = 0; field < 2; field++)
                    {
                        float v = (b + trial + field) % 3 == 0 ? scales[(b + trial + 3 * field) % scales.Length] : (float)(random.NextDouble() * 0.02 - 0.01);
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(b * blockBytes + 2 * field), Half16.FromSingle(v));
                    }
                // Seven activation rows: the one-token kernels take the first, the small-batch tiles 2–7.
                float[] x = Enumerable.Range(0, 7 * n).Select(_ => trial % 4 == 0 ? (random.Next(2) == 0 ? 3f : -3f) : (float)(random.NextDouble() * 6 - 3)).ToArray();
                var act = new byte[7 * actBytes];
                for (int t = 0; t < 7; t++) QuantizedDot.QuantizeActivations(GgmlType.Q8_1, x.AsSpan(t * n, n), act.AsSpan(t * actBytes, actBytes));
                var expected = new int[2, 7];
                for (int r = 0; r < 2; r++)
                    for (int t = 0; t < 7; t++)
                        expected[r, t] = BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, w.AsSpan(r * rowBytes, rowBytes), act.AsSpan(t * actBytes, actBytes), n, IsaLevel.Avx2));
                foreach (bool atStart in new[] { false, true })
                {
                    using var guarded = GuardedBytes.Create(w, atStart);
                    var both = new float[2];
                    var batch = new float[14];
                    fixed (byte* pw = w)
                    fixed (byte* pa = act)
                    fixed (float* pb = both)
                    fixed (float* pt = batch)
                    {
                        byte* rows = guarded is null ? pw : guarded.Data;
                        QuantizedDot.Dot1Rows2(type, rows, rowBytes, pa, null, n, pb, 1);
                        for (int r = 0; r < 2; r++)
                        {
                            Assert.True(expected[r, 0] == BitConverter.SingleToInt32Bits(both[r]), $"{blocks} blocks, trial {trial}, row {r} of two: {both[r]} vs {BitConverter.Int32BitsToSingle(expected[r, 0])}");
                            Assert.Equal(expected[r, 0], BitConverter.SingleToInt32Bits(QuantizedDot.Dot1(type, rows + r * rowBytes, pa, null, n)));
                        }
                        // The small-batch tiles: weight row r, token t lands at r + 2t.
                        for (int count = 2; count <= 7; count++)
                        {
                            QuantizedDot.DotRows(type, count, rows, rowBytes, 2, pa, null, actBytes, 0, n, pt, 2);
                            for (int r = 0; r < 2; r++)
                                for (int t = 0; t < count; t++)
                                    Assert.True(expected[r, t] == BitConverter.SingleToInt32Bits(batch[r + 2 * t]), $"{blocks} blocks, trial {trial}, {count}-token tile, row {r}, token {t}");
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Q4_0's, Q5_0's and IQ4_NL's dots on AVX-512 VBMI (two blocks per step, unsigned quants less a per-row bias; Q5_0's
    /// even and odd blocks summed apart) — one row, two activation rows, two and four weight rows, the small-batch tiles
    /// and the plain row dot — equal their float order (<see cref="VbmiReference(GgmlType, ReadOnlySpan{byte}, ReadOnlySpan{byte}, int, out double)"/>)
    /// to the bit, and the 256-bit dot to within rounding, on raw random blocks (every nibble and fifth-bit pattern, in each element
    /// position), rows of 1 to 14 blocks (the two-block loop and its one- to
    /// three-block tails, and the last pair read from the 64 bytes that end with it), block scales at fp16's extremes and
    /// activations at ±127; a row that ends where readable memory ends is never read past, nor one that starts where it
    /// starts read before.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.IQ4_NL)]
    public void VbmiPairDotsKeepTheirFloatOrderOnEveryBitPattern(GgmlType type)
    {
        if (!Avx2Dot.HasVbmiPair(type)) Assert.Skip($"This machine has no AVX-512 VBMI (or, for IQ4_NL, no AVX-VNNI); {type} runs the 256-bit kernel here.");
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        var random = new Random(5);
        float[] scales = [0f, 60000f, -6.1e-5f, 5.96e-8f, -1f, 0.01f];
        for (int blocks = 1; blocks <= 14; blocks++)
        {
            int n = blocks * BlockLayouts.QK;
            for (int trial = 0; trial < 20; trial++)
            {
                // Four weight rows, for the one-token kernels that take two and four at once.
                int rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
                var w2 = new byte[4 * rowBytes];
                random.NextBytes(w2);
                for (int b = 0; b < 4 * blocks; b++)
                {
                    float d = (b + trial) % 3 == 0 ? scales[(b + trial) % scales.Length] : (float)(random.NextDouble() * 0.02 - 0.01);
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(w2.AsSpan(b * blockBytes), Half16.FromSingle(d));
                }
                var w = w2[..rowBytes];
                // Seven activation rows: the single-row dot takes the first two, the two-row dot (two streams' decode) both at
                // once, the small-batch tiles 2–7.
                float[] x = Enumerable.Range(0, 7 * n).Select(_ => trial % 4 == 0 ? (random.Next(2) == 0 ? 3f : -3f) : (float)(random.NextDouble() * 6 - 3)).ToArray();
                int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n), sideBytes = QuantizedDot.SideBytes(type, n);
                var act = new byte[7 * actBytes];
                var side = new byte[7 * sideBytes];
                var pair = new float[2];
                for (int j = 0; j < 7; j++) QuantizedDot.QuantizeActivations(GgmlType.Q8_0, x.AsSpan(j * n, n), act.AsSpan(j * actBytes, actBytes));
                var rows2 = new float[2];
                fixed (byte* pw = w)
                fixed (byte* pw2 = w2)
                fixed (byte* pa = act)
                fixed (byte* ps = side)
                fixed (float* pp = pair)
                fixed (float* pr = rows2)
                {
                    for (int j = 0; j < 7; j++) QuantizedDot.PrepareSide(type, pa + j * actBytes, n, ps + j * sideBytes);
                    QuantizedDot.Dot2(type, pw, pa, ps, actBytes, sideBytes, n, pp, 1);
                    QuantizedDot.Dot1Rows2(type, pw2, rowBytes, pa, ps, n, pr, 1);
                    for (int r = 0; r < 2; r++)
                        Assert.Equal(BitConverter.SingleToInt32Bits(VbmiReference(type, w2.AsSpan(r * rowBytes, rowBytes), act.AsSpan(0, actBytes), n)),
                            BitConverter.SingleToInt32Bits(rows2[r]));
                    // Rows 0 and 1, and 2 and 3 (two rows on): four chains at once (Q5_0); the rows placed so that the last
                    // ends where readable memory ends, then so that the first starts where it starts (a row's last pair is
                    // read from the 64 bytes that end with it, which must not reach before the row).
                    foreach (bool atStart in new[] { false, true })
                    {
                        var rows4 = new float[4];
                        var guardedRows4 = new float[4];
                        using var guarded4 = GuardedBytes.Create(w2, atStart);
                        byte* guardedRows = guarded4 is null ? pw2 : guarded4.Data;
                        fixed (float* p4 = rows4)
                        fixed (float* g4 = guardedRows4)
                        {
                            if (QuantizedDot.HasDot1Rows4(type))
                            {
                                QuantizedDot.Dot1Rows4(type, pw2, rowBytes, 2L * rowBytes, pa, ps, n, p4, 2);
                                QuantizedDot.Dot1Rows4(type, guardedRows, rowBytes, 2L * rowBytes, pa, ps, n, g4, 2);
                            }
                            else
                            {
                                // The two-row kernel on rows 1 and 3 and on rows 0 and 2.
                                QuantizedDot.Dot1Rows2(type, guardedRows + rowBytes, 2L * rowBytes, pa, ps, n, g4 + 1, 2);
                                QuantizedDot.Dot1Rows2(type, guardedRows, 2L * rowBytes, pa, ps, n, g4, 2);
                                QuantizedDot.Dot1Rows2(type, pw2, 2L * rowBytes, pa, ps, n, p4, 2);
                                QuantizedDot.Dot1Rows2(type, pw2 + rowBytes, 2L * rowBytes, pa, ps, n, p4 + 1, 2);
                            }
                        }
                        for (int r = 0; r < 4; r++)
                        {
                            int expected = BitConverter.SingleToInt32Bits(VbmiReference(type, w2.AsSpan(r * rowBytes, rowBytes), act.AsSpan(0, actBytes), n));
                            Assert.True(expected == BitConverter.SingleToInt32Bits(rows4[r]), $"{blocks} blocks, trial {trial}, row {r} of four");
                            Assert.Equal(expected, BitConverter.SingleToInt32Bits(guardedRows4[r]));
                        }
                        // The small-batch tiles: rows 2 and 3 (or 0 and 1 at the start of readable memory) against 2–7
                        // activation rows; weight row r, token t lands at r + 2t.
                        int firstRow = atStart ? 0 : 2;
                        var batch = new float[14];
                        fixed (float* pb = batch)
                            for (int count = 2; count <= 7; count++)
                            {
                                QuantizedDot.DotRows(type, count, guardedRows + firstRow * rowBytes, rowBytes, 2, pa, ps, actBytes, sideBytes, n, pb, 2);
                                for (int r = 0; r < 2; r++)
                                    for (int t = 0; t < count; t++)
                                    {
                                        int expected = BitConverter.SingleToInt32Bits(VbmiReference(type, w2.AsSpan((firstRow + r) * rowBytes, rowBytes), act.AsSpan(t * actBytes, actBytes), n));
                                        Assert.True(expected == BitConverter.SingleToInt32Bits(batch[r + 2 * t]), $"{blocks} blocks, trial {trial}, {count}-token tile, row {r}, token {t}");
                                    }
                            }
                    }
                    using var guarded = GuardedBytes.Create(w);
                    using var guardedStart = GuardedBytes.Create(w, atStart: true);
                    for (int j = 0; j < 2; j++)
                    {
                        float expected = VbmiReference(type, w, act.AsSpan(j * actBytes, actBytes), n, out double magnitude);
                        float wide = QuantizedDot.Dot1(type, pw, pa + j * actBytes, ps + j * sideBytes, n);
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(wide),
                            $"{blocks} blocks, trial {trial}, row {j}: 512-bit {wide} vs its order in scalar code {expected}");
                        Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(pair[j]));
                        // The plain row dot (no side data) keeps the same bits; the 256-bit kernel's order differs by rounding only.
                        Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, w, act.AsSpan(j * actBytes, actBytes), n)));
                        float narrow = QuantizedDot.VecDot(type, w, act.AsSpan(j * actBytes, actBytes), n, IsaLevel.Avx2);
                        Assert.True(Math.Abs(wide - narrow) <= 1e-6 * magnitude,
                            $"{blocks} blocks, trial {trial}, row {j}: 512-bit {wide} vs 256-bit {narrow}");
                        // The same row ending where readable memory ends, and starting where it starts: a load that strays past the row faults.
                        if (guarded is not null)
                            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(QuantizedDot.Dot1(type, guarded.Data, pa + j * actBytes, ps + j * sideBytes, n)));
                        if (guardedStart is not null)
                            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(QuantizedDot.Dot1(type, guardedStart.Data, pa + j * actBytes, ps + j * sideBytes, n)));
                    }
                }
            }
        }
    }

    /// <summary>
    /// What a VBMI pair kernel must give to the bit: for Q5_0 its even-and-odd order (<see cref="EvenOddDot"/>),
    /// for Q4_0 and IQ4_NL the 256-bit kernel's block order; and the sum of the terms' magnitudes.
    /// </summary>
    private static float VbmiReference(GgmlType type, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n, out double magnitude)
    {
        float evenOdd = EvenOddDot(type, weights, activations, n, out magnitude);
        return Avx2Dot.SumsEvenOddApart(type) ? evenOdd : QuantizedDot.VecDot(type, weights, activations, n, IsaLevel.Avx2);
    }

    private static float VbmiReference(GgmlType type, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n) => VbmiReference(type, weights, activations, n, out _);

    /// <summary>
    /// Q5_0's VBMI float order in scalar code (also computed for Q4_0 and IQ4_NL, for the magnitude): each block's exact int32 sums
    /// of q·y over four elements (lane k: elements 4k..4k+3), times the float product d·d_y, added with one rounding to
    /// the lanes of the accumulator of the block's parity; the two accumulators added lane by lane; then the lanes summed
    /// as the kernels' horizontal sum does, ((l₀ + l₄) + (l₂ + l₆)) + ((l₁ + l₅) + (l₃ + l₇)).
    /// </summary>
    private static float EvenOddDot(GgmlType type, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n, out double magnitude)
    {
        magnitude = 0;
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        var lanes = new float[2, 8];
        for (int b = 0; b < n / BlockLayouts.QK; b++)
        {
            var x = weights.Slice(b * blockBytes, blockBytes);
            var y = activations.Slice(b * BlockLayouts.Q8_0.Size, BlockLayouts.Q8_0.Size);
            float scale = Half16.ToSingle(BitConverter.ToUInt16(x)) * Half16.ToSingle(BitConverter.ToUInt16(y));
            for (int k = 0; k < 8; k++)
            {
                int sum = 0;
                for (int i = 4 * k; i < 4 * k + 4; i++) sum += BlockQuant(type, x, i) * (sbyte)y[BlockLayouts.Q8_0.Qs + i];
                lanes[b & 1, k] = MathF.FusedMultiplyAdd(scale, sum, lanes[b & 1, k]);
                magnitude += Math.Abs((double)scale * sum);
            }
        }
        var l = new float[8];
        for (int k = 0; k < 8; k++) l[k] = lanes[0, k] + lanes[1, k];
        return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    }

    /// <summary>Quant <paramref name="i"/> of a Q4_0, Q5_0 or IQ4_NL block, as the format defines it (low nibbles are elements 0–15, high nibbles 16–31).</summary>
    private static int BlockQuant(GgmlType type, ReadOnlySpan<byte> block, int i)
    {
        int qs = type == GgmlType.Q5_0 ? BlockLayouts.Q5_0.Qs : type == GgmlType.Q4_0 ? BlockLayouts.Q4_0.Qs : BlockLayouts.IQ4_NL.Qs;
        int nibble = i < 16 ? block[qs + i] & 0xF : block[qs + i - 16] >> 4;
        return type switch
        {
            GgmlType.Q4_0 => nibble - 8,
            GgmlType.Q5_0 => (nibble | (int)(BitConverter.ToUInt32(block[BlockLayouts.Q5_0.Qh..]) >> i & 1) << 4) - 16,
            _ => Iq4Levels.Values[nibble],
        };
    }

    /// <summary>
    /// The 512-bit K-quant dots (AVX-512 BW: Q4_K and Q5_K two pairs of sub-blocks per step, Q2_K, Q3_K and Q6_K two chunks)
    /// equal the 256-bit dot to the bit on raw random blocks — every scale, min, nibble and high-bit pattern — with block
    /// scales at fp16's extremes and activations at ±127: one row at a time, two weight rows at once, (Q4_K, Q6_K) the
    /// 2-, 3- and 4-token tiles, and the small-batch tiles of 2–7 tokens.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void WideKQuantDotsMatchThe256BitDotOnEveryBitPattern(GgmlType type)
    {
        if (!Avx2Dot.HasWideKQuants) Assert.Skip("This machine has no AVX-512 BW; the K-quants run their 256-bit kernels here.");
        var random = new Random(44);
        float[] scales = [0f, 60000f, -6.1e-5f, 5.96e-8f, -1f, 0.01f];
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        int[] scaleOffsets = type switch
        {
            GgmlType.Q2_K => [BlockLayouts.Q2_K.D, BlockLayouts.Q2_K.DMin],
            GgmlType.Q3_K => [BlockLayouts.Q3_K.D],
            GgmlType.Q6_K => [BlockLayouts.Q6_K.D],
            _ => [BlockLayouts.Q4_K.D, BlockLayouts.Q4_K.DMin],
        };
        for (int blocks = 1; blocks <= 4; blocks++)
        {
            int n = blocks * BlockLayouts.QK_K, rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
            for (int trial = 0; trial < 50; trial++)
            {
                var w = new byte[2 * rowBytes];
                random.NextBytes(w);
                for (int b = 0; b < 2 * blocks; b++)
                    for (int k = 0; k < scaleOffsets.Length; k++)
                        if ((b + trial + k) % 3 == 0)
                            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(b * blockBytes + scaleOffsets[k]), Half16.FromSingle(scales[(b + (k + 1) * trial) % scales.Length]));
                // Seven activation rows: the first for the one-token dots, four for the fixed tiles, all for the small batches.
                int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_K, n), sideBytes = QuantizedDot.SideBytes(type, n);
                var act = new byte[7 * actBytes];
                for (int t = 0; t < 7; t++)
                {
                    float[] x = Enumerable.Range(0, n).Select(_ => (trial + t) % 4 == 0 ? (random.Next(2) == 0 ? 3f : -3f) : (float)(random.NextDouble() * 6 - 3)).ToArray();
                    QuantizedDot.QuantizeActivations(GgmlType.Q8_K, x, act.AsSpan(t * actBytes, actBytes));
                }
                var side = new byte[7 * sideBytes + 1];
                var both = new float[2];
                var tiles = new float[3 * 4];
                var batch = new float[14];
                fixed (byte* pw = w)
                fixed (byte* pa = act)
                fixed (byte* ps = side)
                fixed (float* pb = both)
                fixed (float* pt = tiles)
                fixed (float* pb0 = batch)
                {
                    for (int t = 0; t < 7; t++) QuantizedDot.PrepareSide(type, pa + t * actBytes, n, ps + t * sideBytes);
                    QuantizedDot.Dot1Rows2(type, pw, rowBytes, pa, ps, n, pb, 1);
                    for (int r = 0; r < 2; r++)
                    {
                        float narrow = QuantizedDot.VecDot(type, w.AsSpan(r * rowBytes, rowBytes), act.AsSpan(0, actBytes), n, IsaLevel.Avx2);
                        float one = QuantizedDot.Dot1(type, pw + r * rowBytes, pa, ps, n);
                        Assert.True(BitConverter.SingleToInt32Bits(narrow) == BitConverter.SingleToInt32Bits(one), $"{blocks} blocks, trial {trial}, row {r}: 512-bit {one} vs 256-bit {narrow}");
                        Assert.Equal(BitConverter.SingleToInt32Bits(narrow), BitConverter.SingleToInt32Bits(both[r]));
                    }
                    // The fixed 4-, 3- and 2-token tiles (Q4_K, Q6_K; Q2_K, Q3_K and Q5_K take the small-batch tiles alone).
                    if (QuantizedDot.HasDot4(type))
                    {
                        byte* row = pw + trial % 2 * rowBytes;
                        QuantizedDot.Dot4(type, row, pa, ps, actBytes, sideBytes, n, pt, 1);
                        QuantizedDot.Dot3(type, row, pa, ps, actBytes, sideBytes, n, pt + 4, 1);
                        QuantizedDot.Dot2(type, row, pa + 2 * actBytes, ps + 2 * sideBytes, actBytes, sideBytes, n, pt + 8 + 2, 1);
                        for (int t = 0; t < 4; t++)
                        {
                            float narrow = QuantizedDot.VecDot(type, w.AsSpan(trial % 2 * rowBytes, rowBytes), act.AsSpan(t * actBytes, actBytes), n, IsaLevel.Avx2);
                            Assert.True(BitConverter.SingleToInt32Bits(narrow) == BitConverter.SingleToInt32Bits(tiles[t]), $"{blocks} blocks, trial {trial}, 4-token tile row {t}: {tiles[t]} vs 256-bit {narrow}");
                            if (t < 3) Assert.Equal(BitConverter.SingleToInt32Bits(narrow), BitConverter.SingleToInt32Bits(tiles[4 + t]));
                            if (t >= 2) Assert.Equal(BitConverter.SingleToInt32Bits(narrow), BitConverter.SingleToInt32Bits(tiles[8 + t]));
                        }
                    }
                    Assert.True(QuantizedDot.HasDotRows(type));
                    for (int count = 2; count <= 7; count++)
                    {
                        // Both weight rows against a batch that starts at row 7 − count, so each count meets other rows (and
                        // their side data); weight row r, token t lands at r + 2t.
                        int first = 7 - count;
                        Array.Fill(batch, 1234.5f); // not a NaN: an unwritten result must not pass for the default NaN
                        QuantizedDot.DotRows(type, count, pw, rowBytes, 2, pa + first * actBytes, ps + first * sideBytes, actBytes, sideBytes, n, pb0, 2);
                        for (int r = 0; r < 2; r++)
                            for (int t = 0; t < count; t++)
                            {
                                float narrow = QuantizedDot.VecDot(type, w.AsSpan(r * rowBytes, rowBytes), act.AsSpan((first + t) * actBytes, actBytes), n, IsaLevel.Avx2);
                                Assert.True(BitConverter.SingleToInt32Bits(narrow) == BitConverter.SingleToInt32Bits(batch[r + 2 * t]),
                                    $"{blocks} blocks, trial {trial}, {count}-token batch, weight row {r}, token {t}: {batch[r + 2 * t]} vs 256-bit {narrow}");
                            }
                    }
                }
            }
        }
    }

    /// <summary>Every small batch (1–7 rows: the decode steps of a few streams; on AVX-512 up to the type's TileMaxTokens, in tiles of at most MatMul.MaxTileRows: seven, five for Q6_K) gives the single-row dots exactly.</summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ1_M)]
    [InlineData(GgmlType.IQ2_S)]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ3_S)]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_1)]
    public void SmallBatchesMatchSingleRowDotsExactly(GgmlType type)
    {
        if (!QuantizedDot.HasDot4(type) && !QuantizedDot.HasDotRows(type)) Assert.Skip($"no small-batch kernel for {type} on this machine");
        const int rows = 37, n = 512;
        var random = new Random(3);
        float[] weights = Enumerable.Range(0, rows * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
        var w = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++) WeightRow(type, weights.AsSpan(r * n, n).ToArray(), random).CopyTo(w.AsSpan(r * rowBytes, rowBytes));
        var actType = QuantizedDot.ActivationType(type);
        var act = new byte[GgmlTypeInfo.RowBytes(actType, n)];
        using var pool = new WorkerPool(2);
        fixed (byte* pw = w)
        {
            var matrix = new QuantMatrix(pw, type, rows, n);
            // Every batch below the type's panels: on AVX-512 up to 31 rows (Q2_K, Q3_K) in tiles of at most seven.
            for (int tokens = 1; tokens <= Math.Max(MatMul.PanelMinTokens - 1, QuantizedDot.TileMaxTokens(type)); tokens++)
            {
                float[] x = Enumerable.Range(0, tokens * n).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
                var y = new float[tokens * rows];
                MatMul.Multiply(matrix, x, tokens, y, new byte[MatMul.ScratchBytes(matrix, tokens)], pool);
                for (int t = 0; t < tokens; t++)
                {
                    QuantizedDot.QuantizeActivations(actType, x.AsSpan(t * n, n), act);
                    for (int r = 0; r < rows; r++)
                        Assert.Equal(BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, matrix.Row(r), act, n)), BitConverter.SingleToInt32Bits(y[t * rows + r]));
                }
            }
        }
    }

    /// <summary>
    /// One token over many rows, as decode runs it: the rows go in pairs (row p with row p + ⌈rows/2⌉, two streams per
    /// thread), an odd count's middle row alone, chunks of pairs spread over the threads and taken back by a thread that
    /// runs out. Every row's result is its own dot, to the bit, whatever the count.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_XS)]
    public void OneTokenOverManyRowsMatchesEachRowsDot(GgmlType type)
    {
        const int n = 512;
        var random = new Random(9);
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
        var actType = QuantizedDot.ActivationType(type);
        var act = new byte[GgmlTypeInfo.RowBytes(actType, n)];
        using var pool = new WorkerPool(2);
        foreach (int rows in new[] { 1, 2, 3, 4, 5, 33, 257, 1000, 1001 })
        {
            var w = new byte[rows * rowBytes];
            for (int r = 0; r < rows; r++) WeightRow(type, RandomFloats(random, n, 1), random).CopyTo(w.AsSpan(r * rowBytes, rowBytes));
            float[] x = RandomFloats(random, n, 2);
            var y = new float[rows];
            fixed (byte* pw = w)
            {
                var matrix = new QuantMatrix(pw, type, rows, n);
                MatMul.Multiply(matrix, x, 1, y, new byte[MatMul.ScratchBytes(matrix, 1)], pool);
                QuantizedDot.QuantizeActivations(actType, x, act);
                for (int r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, matrix.Row(r), act, n)) == BitConverter.SingleToInt32Bits(y[r]),
                        $"{type}, {rows} rows: row {r} is {y[r]}, its dot {QuantizedDot.VecDot(type, matrix.Row(r), act, n)}");
            }
        }
    }

    /// <summary>
    /// A grouped pass (a MoE layer's active experts at decode) gives every part exactly what its own multiply gives:
    /// parts of different types and widths, 1–7 activation rows, parts that share their input (gate and up) and parts
    /// that only look alike.
    /// </summary>
    [Fact]
    public void AGroupOfMultipliesMatchesEachMultiplyExactly()
    {
        var random = new Random(11);
        using var pool = new WorkerPool(2);
        (GgmlType Type, int Rows, int Columns)[] shapes =
            [(GgmlType.Q4_K, 40, 512), (GgmlType.Q4_K, 40, 512), (GgmlType.Q6_K, 24, 256), (GgmlType.Q8_0, 56, 96), (GgmlType.F32, 9, 64), (GgmlType.Q5_0, 33, 512)];
        var weights = shapes.Select(s => Enumerable.Range(0, s.Rows).SelectMany(_ => WeightRow(s.Type, RandomFloats(random, s.Columns, 1), random)).ToArray()).ToArray();
        var handles = weights.Select(w => System.Runtime.InteropServices.GCHandle.Alloc(w, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
        try
        {
            var matrices = shapes.Select((s, i) => new QuantMatrix((byte*)handles[i].AddrOfPinnedObject(), s.Type, s.Rows, s.Columns)).ToArray();
            for (int tokens = 1; tokens < MatMul.PanelMinTokens; tokens++)
            {
                var inputs = shapes.Select(s => RandomFloats(random, tokens * s.Columns, 2)).ToArray();
                inputs[1] = inputs[0]; // gate and up read one input
                var expected = matrices.Select((m, i) =>
                {
                    var y = new float[tokens * m.Rows];
                    MatMul.Multiply(m, inputs[i], tokens, y, new byte[MatMul.ScratchBytes(m, tokens)], pool);
                    return y;
                }).ToArray();
                var outputs = matrices.Select(m => new float[tokens * m.Rows]).ToArray();
                var pins = inputs.Concat(outputs).Select(a => System.Runtime.InteropServices.GCHandle.Alloc(a, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
                try
                {
                    using var scope = pool.Enter();
                    var group = pool.Job<MatMul.Group>();
                    group.Clear();
                    for (int i = 0; i < matrices.Length; i++)
                        group.Add(matrices[i], (float*)pins[i].AddrOfPinnedObject(), tokens, (float*)pins[inputs.Length + i].AddrOfPinnedObject());
                    group.Run(new byte[group.ScratchBytes()], pool);
                }
                finally
                {
                    foreach (var pin in pins) pin.Free();
                }
                for (int i = 0; i < matrices.Length; i++)
                    Assert.True(expected[i].Select(BitConverter.SingleToInt32Bits).SequenceEqual(outputs[i].Select(BitConverter.SingleToInt32Bits)),
                        $"{shapes[i].Type} part {i}, {tokens} rows");
            }
        }
        finally
        {
            foreach (var handle in handles) handle.Free();
        }
    }

    private static float[] RandomFloats(Random random, int count, float range) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * range).ToArray();

    /// <summary>Bytes copied to the very end of a readable page that is followed by an inaccessible one (Linux only).</summary>
    private sealed partial class GuardedBytes : IDisposable
    {
        private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20;
        private readonly byte* _map;
        private readonly nuint _length;

        private GuardedBytes(byte* map, nuint length, byte* data)
        {
            _map = map;
            _length = length;
            Data = data;
        }

        public byte* Data { get; }

        /// <summary><paramref name="bytes"/> copied to end where readable memory ends, or (<paramref name="atStart"/>) to start where it starts; null off Linux.</summary>
        public static GuardedBytes? Create(byte[] bytes, bool atStart = false)
        {
            if (!OperatingSystem.IsLinux()) return null;
            nuint page = (nuint)Environment.SystemPageSize;
            nuint readable = ((nuint)bytes.Length + page - 1) / page * page;
            byte* map = (byte*)Mmap(null, readable + page, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
            Assert.True(map != (byte*)-1, "mmap failed");
            Assert.Equal(0, Mprotect(atStart ? map : map + readable, page, ProtNone));
            byte* data = atStart ? map + page : map + readable - (nuint)bytes.Length;
            bytes.CopyTo(new Span<byte>(data, bytes.Length));
            return new GuardedBytes(map, readable + page, data);
        }

        public void Dispose() => Munmap(_map, _length);

        [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mmap")]
        private static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

        [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mprotect")]
        private static partial int Mprotect(void* address, nuint length, int protection);

        [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "munmap")]
        private static partial int Munmap(void* address, nuint length);
    }
}
