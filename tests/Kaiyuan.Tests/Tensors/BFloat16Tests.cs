using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class BFloat16Tests
{
    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)]   // 1.0
    [InlineData(0x3F808000u, (ushort)0x3F80)]   // tie, even (0x3F80) wins
    [InlineData(0x3F818000u, (ushort)0x3F82)]   // tie, even (0x3F82) wins
    [InlineData(0x3F808001u, (ushort)0x3F81)]   // just above the tie
    [InlineData(0x3F807FFFu, (ushort)0x3F80)]   // just below the tie
    [InlineData(0xC0490FDBu, (ushort)0xC049)]   // -pi
    [InlineData(0x7F800000u, (ushort)0x7F80)]   // +inf
    [InlineData(0xFF800000u, (ushort)0xFF80)]   // -inf
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)]   // float max rounds up to infinity
    [InlineData(0x00000001u, (ushort)0x0000)]   // smallest float subnormal rounds to zero
    [InlineData(0x00018000u, (ushort)0x0002)]   // subnormal tie, even wins
    [InlineData(0x80000000u, (ushort)0x8000)]   // -0
    [InlineData(0x7F800001u, (ushort)0x7FC0)]   // signalling NaN kept as a quiet NaN
    [InlineData(0xFFC12345u, (ushort)0xFFC1)]   // quiet NaN keeps sign and top payload bits
    public void NarrowsLikeGgml(uint floatBits, ushort expected)
    {
        Assert.Equal(expected, BFloat16.FromSingle(BitConverter.UInt32BitsToSingle(floatBits)));
    }

    [Fact]
    public void WideningIsExact()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            float value = BFloat16.ToSingle((ushort)bits);
            Assert.Equal((uint)bits << 16, BitConverter.SingleToUInt32Bits(value));
            if (!float.IsNaN(value))
            {
                Assert.Equal((ushort)bits, BFloat16.FromSingle(value));
            }
        }
    }
}
