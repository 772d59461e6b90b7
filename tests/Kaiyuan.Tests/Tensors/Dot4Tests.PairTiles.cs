using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public sealed unsafe partial class Dot4Tests
{
    /// <summary>
    /// The AVX-512 pair tiles (two activation rows per vector; Q4_0 and Q5_0 with unsigned quants less a pair bias, Q5_0
    /// two blocks per load with VBMI) give each activation row the one-row dot to the bit, on raw random blocks — every
    /// quant pattern, Q8_0's −128 included — with block scales at fp16's extremes and activations at ±127: 2–7 activation
    /// rows (odd counts leave a half-empty pair), three weight rows (the two-row step and a lone last row), rows of 1 to
    /// 14 blocks (the two-block loop, the last pair read from the bytes that end with it, and the one-block tails), the
    /// last row ending where readable memory ends, then the first row starting where it starts.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.IQ4_NL)]
    public void PairTilesMatchTheSingleRowDotOnEveryBitPattern(GgmlType type)
    {
        if (!QuantizedDot.HasPairTiles(type)) Assert.Skip("This machine has no AVX-512 BW; small batches take the 256-bit tiles here.");
        var random = new Random(17);
        float[] scales = [0f, 60000f, -6.1e-5f, 5.96e-8f, -1f, 0.01f];
        const int weightRows = 3;
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        for (int blocks = 1; blocks <= 14; blocks++)
        {
            int n = blocks * BlockLayouts.QK, rowBytes = (int)GgmlTypeInfo.RowBytes(type, n);
            int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n);
            for (int trial = 0; trial < 6; trial++)
            {
                var w = new byte[weightRows * rowBytes];
                random.NextBytes(w);
                for (int b = 0; b < weightRows * blocks; b++)
                {
                    float d = (b + trial) % 3 == 0 ? scales[(b + trial) % scales.Length] : (float)(random.NextDouble() * 0.02 - 0.01);
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(b * blockBytes), Half16.FromSingle(d));
                }
                float[] x = Enumerable.Range(0, 7 * n).Select(_ => trial % 2 == 0 ? (random.Next(2) == 0 ? 3f : -3f) : (float)(random.NextDouble() * 6 - 3)).ToArray();
                var act = new byte[7 * actBytes];
                for (int t = 0; t < 7; t++) QuantizedDot.QuantizeActivations(GgmlType.Q8_0, x.AsSpan(t * n, n), act.AsSpan(t * actBytes, actBytes));
                foreach (bool atStart in new[] { false, true })
                {
                    using var guarded = GuardedBytes.Create(w, atStart);
                    var pairs = new byte[QuantizedDot.PairBytes(type, n, 7)];
                    var output = new float[weightRows * 7];
                    fixed (byte* pw = w)
                    fixed (byte* pa = act)
                    fixed (byte* pp = pairs)
                    fixed (float* po = output)
                        for (int tokens = 2; tokens <= 7; tokens++)
                        {
                            QuantizedDot.PackPairs(type, pa, actBytes, tokens, n, pp);
                            QuantizedDot.PairRows(type, tokens, guarded is null ? pw : guarded.Data, rowBytes, weightRows, pp, n, po, weightRows);
                            for (int r = 0; r < weightRows; r++)
                                for (int t = 0; t < tokens; t++)
                                {
                                    int expected = BitConverter.SingleToInt32Bits(QuantizedDot.VecDot(type, w.AsSpan(r * rowBytes, rowBytes), act.AsSpan(t * actBytes, actBytes), n));
                                    Assert.True(expected == BitConverter.SingleToInt32Bits(output[r + t * weightRows]),
                                        $"{blocks} blocks, trial {trial}, {tokens} tokens, weight row {r}, token {t}: {output[r + t * weightRows]} vs {BitConverter.Int32BitsToSingle(expected)}");
                                }
                        }
                }
            }
        }
    }
}
