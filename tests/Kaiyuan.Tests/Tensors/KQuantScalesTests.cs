using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class KQuantScalesTests
{
    [Fact]
    public void BulkUnpackingMatchesThePerIndexReference()
    {
        var random = new Random(5);
        var packed = new byte[12];
        for (int trial = 0; trial < 1000; trial++)
        {
            random.NextBytes(packed);
            KQuantScales.UnpackK4(packed, out ulong scales, out ulong mins);
            for (int j = 0; j < 8; j++)
            {
                var (scale, min) = KQuantScales.ScaleMinK4(j, packed);
                Assert.Equal(scale, (int)((scales >> (8 * j)) & 0xFF));
                Assert.Equal(min, (int)((mins >> (8 * j)) & 0xFF));
            }

            var (low, high) = KQuantScales.UnpackQ3K(packed);
            for (int i = 0; i < 16; i++)
            {
                ulong word = i < 8 ? low : high;
                Assert.Equal(KQuantScales.ScaleQ3K(i, packed) + 32, (int)((word >> (8 * (i % 8))) & 0xFF));
            }
        }
    }
}
