using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>The four-row prompt kernels give exactly the single-row dot of each activation row.</summary>
public sealed unsafe class Dot4Tests
{
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    public void FourRowAndScaledDotsAreBitIdenticalToSingleRowDot(GgmlType type)
    {
        if (!QuantizedDot.HasDot4(type)) Assert.Skip("no AVX2 on this machine");
        const int n = 320;
        var random = new Random(11);
        float[] weights = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        weights[5] = 0;
        var w = new byte[GgmlTypeInfo.RowBytes(type, n)];
        Quantize.Row(type, weights, w);
        int actBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_0, n);
        var act = new byte[4 * actBytes];
        for (int j = 0; j < 4; j++)
        {
            float[] x = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 6 - 3)).ToArray();
            QuantizedDot.QuantizeActivations(GgmlType.Q8_0, x, act.AsSpan(j * actBytes, actBytes));
        }
        var output = new float[4 * 3];
        var scales = new float[4 * n / 32];
        fixed (byte* pw = w)
        fixed (byte* pa = act)
        fixed (float* po = output)
        fixed (float* ps = scales)
        {
            for (int j = 0; j < 4; j++) QuantizedDot.ActivationScales(pa + j * actBytes, n, ps + j * n / 32);
            QuantizedDot.Dot4(type, pw, pa, ps, actBytes, n, po, 3);
            for (int j = 0; j < 4; j++)
            {
                float single = QuantizedDot.VecDot(type, w, act.AsSpan(j * actBytes, actBytes), n);
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(output[j * 3]));
                float one = QuantizedDot.Dot1(type, pw, pa + j * actBytes, ps + j * n / 32, n);
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(one));
            }
        }
    }
}
