using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class Half16Tests
{
    [Theory]
    [InlineData((ushort)0x0000, 0.0f)]
    [InlineData((ushort)0x3C00, 1.0f)]
    [InlineData((ushort)0xC000, -2.0f)]
    [InlineData((ushort)0x3555, 0.333251953125f)]
    [InlineData((ushort)0x7BFF, 65504.0f)]
    [InlineData((ushort)0x0400, 6.103515625e-05f)]          // smallest normal, 2^-14
    [InlineData((ushort)0x0001, 5.9604644775390625e-08f)]   // smallest subnormal, 2^-24
    [InlineData((ushort)0x03FF, 6.097555160522461e-05f)]    // largest subnormal
    [InlineData((ushort)0x8001, -5.9604644775390625e-08f)]
    public void KnownBitPatternsConvertBothWays(ushort bits, float value)
    {
        Assert.Equal(value, Half16.ToSingle(bits));
        Assert.Equal(bits, Half16.FromSingle(value));
    }

    [Fact]
    public void NegativeZeroInfinityAndNaN()
    {
        Assert.Equal(0x80000000u, BitConverter.SingleToUInt32Bits(Half16.ToSingle(0x8000)));
        Assert.Equal((ushort)0x8000, Half16.FromSingle(-0.0f));
        Assert.Equal(float.PositiveInfinity, Half16.ToSingle(0x7C00));
        Assert.Equal(float.NegativeInfinity, Half16.ToSingle(0xFC00));
        Assert.Equal((ushort)0x7C00, Half16.FromSingle(float.PositiveInfinity));
        Assert.Equal((ushort)0xFC00, Half16.FromSingle(float.NegativeInfinity));
        Assert.True(float.IsNaN(Half16.ToSingle(0x7E00)));
        Assert.True(float.IsNaN(Half16.ToSingle(0x7C01)));                   // signalling NaN comes back quiet
        Assert.Equal(0x7FC02000u, BitConverter.SingleToUInt32Bits(Half16.ToSingle(0x7C01)));
        Assert.Equal((ushort)0x7E00, Half16.FromSingle(float.NaN) & 0x7FFF);
        Assert.Equal((ushort)0x7E00, Half16.FromSingle(BitConverter.UInt32BitsToSingle(0x7F800001))); // payload lost, quiet
    }

    [Theory]
    [InlineData(1.0f + 1.0f / 2048, (ushort)0x3C00)]          // tie between 0x3C00 and 0x3C01: even wins
    [InlineData(1.0f + 3.0f / 2048, (ushort)0x3C02)]          // tie between 0x3C01 and 0x3C02: even wins
    [InlineData(1.0f + 1.0f / 2048 + 1.0f / 65536, (ushort)0x3C01)] // just above the tie
    [InlineData(65519.99f, (ushort)0x7BFF)]
    [InlineData(65520.0f, (ushort)0x7C00)]                    // tie at the top rounds to infinity (even)
    [InlineData(1e10f, (ushort)0x7C00)]
    [InlineData(2.9802322387695312e-08f, (ushort)0x0000)]     // 2^-25: tie between 0 and the smallest subnormal
    [InlineData(2.9802326e-08f, (ushort)0x0001)]              // just above 2^-25
    [InlineData(8.940696716308594e-08f, (ushort)0x0002)]      // 1.5 * 2^-24: tie, even is 2
    [InlineData(6.1035156e-05f - 2.9802322387695312e-08f, (ushort)0x0400)] // largest-subnormal + half ulp rounds up to normal
    [InlineData(1e-30f, (ushort)0x0000)]
    public void RoundsToNearestEven(float value, ushort expected)
    {
        Assert.Equal(expected, Half16.FromSingle(value));
    }

    [Fact]
    public void AllFiniteHalvesRoundTripAndMatchSystemHalf()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            ushort h = (ushort)bits;
            float value = Half16.ToSingle(h);
            if (float.IsNaN(value))
            {
                continue;
            }

            Assert.Equal((float)BitConverter.UInt16BitsToHalf(h), value);
            Assert.Equal(h, Half16.FromSingle(value));
        }
    }

    [Fact]
    public void RandomFloatsNarrowLikeSystemHalf()
    {
        // System.Half is an independent IEEE round-to-nearest-even implementation.
        var random = new Random(42);
        for (int i = 0; i < 200_000; i++)
        {
            float value = BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32));
            if (float.IsNaN(value))
            {
                continue;
            }

            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)value), Half16.FromSingle(value));
        }
    }
}
