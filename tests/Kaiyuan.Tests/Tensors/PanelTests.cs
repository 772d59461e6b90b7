using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>
/// The 8-row panel GEMM against the single-row dot. Both form the same exact integer block sums; only the order of
/// the float scaling differs, so results agree to float rounding (far below any quantization effect), while a wrong
/// offset, scale or saturated int16 lane moves them by whole units of the result.
/// </summary>
public sealed unsafe class PanelTests
{
    public static TheoryData<GgmlType> Types() =>
        [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
            GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S];

    [Theory]
    [MemberData(nameof(Types))]
    public void PanelKernelMatchesSingleRowDot(GgmlType type)
    {
        if (!QuantizedDot.HasPanels(type)) Assert.Skip("no AVX2 on this machine");
        var random = new Random(5);
        int n = Columns(type);
        byte[] weights = QuantizedRows(type, QuantizedDot.PanelRows, n, _ => (float)(random.NextDouble() * 2 - 1));
        var (act, actBytes) = Activations(type, 7, n, (_, _) => (float)(random.NextDouble() * 6 - 3));
        AssertPanelMatches(type, weights, act, actBytes, 7, n);
    }

    /// <summary>
    /// The largest products the formats allow in every position: quants at their top code (a block's one
    /// largest-magnitude weight takes the other end) against activations all at ±127 or −128. An int16 run that
    /// saturated would be off by thousands.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void PanelKernelHoldsExtremeProducts(GgmlType type)
    {
        if (!QuantizedDot.HasPanels(type)) Assert.Skip("no AVX2 on this machine");
        int n = Columns(type);
        foreach (float sign in new[] { 1f, -1f })
        {
            byte[] weights = QuantizedRows(type, QuantizedDot.PanelRows, n, i => i % 32 == 0 ? -sign : sign * 0.99f);
            var (act, actBytes) = Activations(type, 4, n, (t, i) => t % 2 == 0 ? 1f : -1f);
            AssertPanelMatches(type, weights, act, actBytes, 4, n);
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void MatMulOverPanelsMatchesSingleRowDots(GgmlType type)
    {
        // 19 rows: two whole panels and three rows past them; 9 tokens: two full tiles and one short one; rows wider
        // than one column range of the panel kernels.
        const int rows = 19, tokens = 9;
        Assert.True(tokens >= MatMul.PanelMinTokens);
        var random = new Random(9);
        int n = 2560;
        byte[] weights = QuantizedRows(type, rows, n, _ => (float)(random.NextDouble() * 2 - 1));
        float[] x = Enumerable.Range(0, tokens * n).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        var y = new float[tokens * rows];
        fixed (byte* pw = weights)
        {
            var matrix = new QuantMatrix(pw, type, rows, n);
            using var pool = new WorkerPool(2);
            MatMul.Multiply(matrix, x, tokens, y, new byte[MatMul.ScratchBytes(matrix, tokens)], pool);
            var actType = QuantizedDot.ActivationType(type);
            var act = new byte[GgmlTypeInfo.RowBytes(actType, n)];
            for (int t = 0; t < tokens; t++)
            {
                QuantizedDot.QuantizeActivations(actType, x.AsSpan(t * n, n), act);
                float[] expected = Enumerable.Range(0, rows).Select(r => QuantizedDot.VecDot(type, matrix.Row(r), act, n)).ToArray();
                AssertClose(expected, y.AsSpan(t * rows, rows), $"{type} token {t}");
            }
        }
    }

    /// <summary>
    /// IQ4_XS's VNNI panel on raw random blocks: every level and every 6-bit scale (−32 to 31 after the bias) in every
    /// position, against activations at ±127 — the largest unsigned-by-signed products and offset sums it must hold.
    /// </summary>
    [Fact]
    public void Iq4XsPanelMatchesOnEveryScaleAndLevel()
    {
        if (!QuantizedDot.HasPanels(GgmlType.IQ4_XS)) Assert.Skip("The IQ4_XS panel needs AVX-VNNI, which this machine lacks; IQ4_XS prompts take the tiles here.");
        var random = new Random(29);
        int n = 2048;
        byte[] weights = SimdDotTests.RandomWeights(GgmlType.IQ4_XS, QuantizedDot.PanelRows * n, random);
        var (act, actBytes) = Activations(GgmlType.IQ4_XS, 6, n, (t, i) => t switch
        {
            0 => 1f,
            1 => -1f,
            2 => i % 2 == 0 ? 1f : -1f,
            _ => (float)(random.NextDouble() * 6 - 3),
        });
        AssertPanelMatches(GgmlType.IQ4_XS, weights, act, actBytes, 6, n);
    }

    /// <summary>
    /// Two panels at once (AVX-512: sixteen rows per vector) give each row exactly what its 8-row panel gives, on raw
    /// random blocks (every quant, scale, min and fifth-bit pattern), for 1–7 activation rows and with a second column range
    /// added onto the first.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ1_M)]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ2_S)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ3_S)]
    public void PanelPairsEqualTheirTwoPanelsToTheBit(GgmlType type)
    {
        if (!QuantizedDot.HasPanelPairs(type)) Assert.Skip("The panel pair kernels need AVX-512 BW, which this machine lacks.");
        var random = new Random(17);
        int n = 1024, rowBytes = (int)GgmlTypeInfo.RowBytes(type, n), panelBytes = QuantizedDot.PanelBytes(type, n), sideBytes = QuantizedDot.PanelSideBytes(type, n);
        byte[] weights = SimdDotTests.RandomWeights(type, 2 * QuantizedDot.PanelRows * n, random);
        for (int tokens = 1; tokens <= 7; tokens++)
        {
            var (act, actBytes) = Activations(type, tokens, n, (t, _) => t == 1 ? (random.Next(2) == 0 ? 3f : -3f) : (float)(random.NextDouble() * 6 - 3));
            var panels = new byte[2 * panelBytes];
            var side = new byte[tokens * sideBytes + 1];
            var single = new float[tokens * 2 * QuantizedDot.PanelRows];
            var paired = new float[tokens * 2 * QuantizedDot.PanelRows];
            fixed (byte* pw = weights)
            fixed (byte* pp = panels)
            fixed (byte* pa = act)
            fixed (byte* pside = side)
            fixed (float* ps = single)
            fixed (float* pd = paired)
            {
                QuantizedDot.PackPanel(type, pw, rowBytes, n, pp);
                QuantizedDot.PackPanel(type, pw + QuantizedDot.PanelRows * rowBytes, rowBytes, n, pp + panelBytes);
                for (int t = 0; t < tokens; t++) QuantizedDot.PreparePanelSide(type, pa + t * actBytes, n, pside + t * sideBytes);
                const int split = 512, stride = 2 * QuantizedDot.PanelRows;
                for (int half = 0; half < 2; half++)
                {
                    QuantizedDot.PanelMultiply(type, pp + half * panelBytes, n, 0, split, pa, actBytes, pside, sideBytes, tokens, false, ps + half * QuantizedDot.PanelRows, stride);
                    QuantizedDot.PanelMultiply(type, pp + half * panelBytes, n, split, n - split, pa, actBytes, pside, sideBytes, tokens, true, ps + half * QuantizedDot.PanelRows, stride);
                }
                QuantizedDot.PanelPairMultiply(type, pp, pp + panelBytes, n, 0, split, pa, actBytes, pside, sideBytes, tokens, false, pd, stride);
                QuantizedDot.PanelPairMultiply(type, pp, pp + panelBytes, n, split, n - split, pa, actBytes, pside, sideBytes, tokens, true, pd, stride);
            }
            for (int i = 0; i < single.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(single[i]) == BitConverter.SingleToInt32Bits(paired[i]),
                    $"{type}, {tokens} activation rows, token {i / 16} row {i % 16}: pair {paired[i]} vs 8-row panel {single[i]}");
        }
    }

    /// <summary>
    /// One input against two or three matrices of one type (q, k, v; gate and up), quantized once, gives each matrix
    /// exactly what its own multiply gives, through the panels and through the tiles; matrices of another type or width
    /// are refused.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K, 9)]
    [InlineData(GgmlType.Q4_K, 3)]
    [InlineData(GgmlType.Q8_0, 12)]
    [InlineData(GgmlType.Q5_0, 5)]
    public void SharedInputMultipliesEqualEachMultiply(GgmlType type, int tokens)
    {
        if (!QuantizedDot.HasPanels(type)) Assert.Skip("no AVX2 on this machine");
        var random = new Random(23);
        int n = 512;
        int[] rows = [40, 24, 16];
        var weights = rows.Select(r => QuantizedRows(type, r, n, _ => (float)(random.NextDouble() * 2 - 1))).ToArray();
        float[] x = Enumerable.Range(0, tokens * n).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        using var pool = new WorkerPool(2);
        fixed (byte* p0 = weights[0])
        fixed (byte* p1 = weights[1])
        fixed (byte* p2 = weights[2])
        {
            QuantMatrix[] m = [new(p0, type, rows[0], n), new(p1, type, rows[1], n), new(p2, type, rows[2], n)];
            var expected = m.Select(w =>
            {
                var y = new float[tokens * w.Rows];
                MatMul.Multiply(w, x, tokens, y, new byte[MatMul.ScratchBytes(w, tokens)], pool);
                return y;
            }).ToArray();
            var shared = m.Select(w => new float[tokens * w.Rows]).ToArray();
            Assert.True(MatMul.CanShareInput(m[0], m[1], tokens) && MatMul.CanShareInput(m[0], m[2], tokens));
            MatMul.MultiplyShared(x, tokens, new byte[MatMul.ScratchBytes(m[0], tokens)], pool, m[0], shared[0], m[1], shared[1], m[2], shared[2]);
            for (int i = 0; i < 3; i++)
                Assert.Equal(expected[i].Select(BitConverter.SingleToInt32Bits), shared[i].Select(BitConverter.SingleToInt32Bits));

            var other = new QuantMatrix(p1, type == GgmlType.Q8_0 ? GgmlType.Q4_0 : GgmlType.Q8_0, 8, n);
            Assert.False(MatMul.CanShareInput(m[0], other, tokens));
            Assert.Throws<ArgumentException>(() => MatMul.MultiplyShared(x, tokens, new byte[MatMul.ScratchBytes(m[0], tokens)], pool, m[0], shared[0], other, new float[tokens * 8]));
        }
    }

    private static int Columns(GgmlType type) => GgmlTypeInfo.Geometry(type).BlockSize == 256 ? 768 : 320;

    private static byte[] QuantizedRows(GgmlType type, int rows, int n, Func<int, float> value)
    {
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
        // Kaiyuan does not write the grid i-quants yet: random blocks reach every grid point, sign and multiplier
        // (and, against activations at ±127, the extreme products).
        if (IqGridDecoder.Handles(type)) return SimdDotTests.RandomWeights(type, rows * n, new Random(rows + n));
        var data = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++)
        {
            float[] x = Enumerable.Range(0, n).Select(value).ToArray();
            Quantize.Row(type, x, data.AsSpan(r * rowBytes, rowBytes));
        }
        return data;
    }

    private static (byte[] Data, int RowBytes) Activations(GgmlType type, int tokens, int n, Func<int, int, float> value)
    {
        var actType = QuantizedDot.ActivationType(type);
        int actBytes = (int)GgmlTypeInfo.RowBytes(actType, n);
        var act = new byte[tokens * actBytes];
        for (int t = 0; t < tokens; t++)
            QuantizedDot.QuantizeActivations(actType, Enumerable.Range(0, n).Select(i => value(t, i)).ToArray(), act.AsSpan(t * actBytes, actBytes));
        return (act, actBytes);
    }

    private static void AssertPanelMatches(GgmlType type, byte[] weights, byte[] act, int actBytes, int tokens, int n)
    {
        int rowBytes = weights.Length / QuantizedDot.PanelRows;
        int sideBytes = QuantizedDot.PanelSideBytes(type, n);
        var panel = new byte[QuantizedDot.PanelBytes(type, n)];
        var side = new byte[tokens * sideBytes + 1];
        var output = new float[tokens * QuantizedDot.PanelRows];
        fixed (byte* pw = weights)
        fixed (byte* pp = panel)
        fixed (byte* pa = act)
        fixed (byte* ps = side)
        fixed (float* po = output)
        {
            QuantizedDot.PackPanel(type, pw, rowBytes, n, pp);
            for (int t = 0; t < tokens; t++) QuantizedDot.PreparePanelSide(type, pa + t * actBytes, n, ps + t * sideBytes);
            // Two column ranges, the second added onto the first (as long rows are split to stay in L1).
            int split = GgmlTypeInfo.Geometry(type).BlockSize * (n / GgmlTypeInfo.Geometry(type).BlockSize / 2);
            QuantizedDot.PanelMultiply(type, pp, n, 0, split, pa, actBytes, ps, sideBytes, tokens, false, po, QuantizedDot.PanelRows);
            QuantizedDot.PanelMultiply(type, pp, n, split, n - split, pa, actBytes, ps, sideBytes, tokens, true, po, QuantizedDot.PanelRows);
        }

        for (int t = 0; t < tokens; t++)
        {
            float[] expected = Enumerable.Range(0, QuantizedDot.PanelRows)
                .Select(r => QuantizedDot.VecDot(type, weights.AsSpan(r * rowBytes, rowBytes), act.AsSpan(t * actBytes, actBytes), n)).ToArray();
            AssertClose(expected, output.AsSpan(t * QuantizedDot.PanelRows, QuantizedDot.PanelRows), $"{type} token {t}");
        }
    }

    /// <summary>Equal up to float rounding: 1e-5 of the value plus 1e-5 of the outputs' mean magnitude.</summary>
    private static void AssertClose(float[] expected, ReadOnlySpan<float> actual, string what)
    {
        float scale = expected.Average(Math.Abs);
        Assert.True(scale > 0, $"{what}: degenerate test data");
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f * (Math.Abs(expected[i]) + scale), $"{what} row {i}: {actual[i]} vs single-row dot {expected[i]}");
    }
}
