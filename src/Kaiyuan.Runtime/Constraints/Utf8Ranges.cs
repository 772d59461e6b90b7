namespace Kaiyuan.Constraints;

/// <summary>
/// Splits a code point range into sequences of byte ranges whose products are exactly its UTF-8 encodings
/// (U+0080..U+07FF becomes [C2-DF][80-BF], and so on), so a character class becomes a few byte paths.
/// </summary>
internal static class Utf8Ranges
{
    /// <summary>Calls <paramref name="emit"/> with 1-4 (lo, hi) byte ranges per sequence.</summary>
    public static void Split(int lo, int hi, Action<(byte Lo, byte Hi)[]> emit)
    {
        // First cut at the encoded-length boundaries and around the surrogates.
        foreach (var (a, b) in new[] { (0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF) })
        {
            int l = Math.Max(lo, a), h = Math.Min(hi, b);
            if (l <= h) SplitSameLength(l, h, emit);
        }
    }

    private static void SplitSameLength(int lo, int hi, Action<(byte, byte)[]> emit)
    {
        int n = Length(lo);
        for (int i = 1; i < n; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((lo & ~m) != (hi & ~m))
            {
                if ((lo & m) != 0)
                {
                    SplitSameLength(lo, lo | m, emit);
                    SplitSameLength((lo | m) + 1, hi, emit);
                    return;
                }
                if ((hi & m) != m)
                {
                    SplitSameLength(lo, (hi & ~m) - 1, emit);
                    SplitSameLength(hi & ~m, hi, emit);
                    return;
                }
            }
        }
        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        Encode(lo, a);
        Encode(hi, b);
        var seq = new (byte, byte)[n];
        for (int i = 0; i < n; i++) seq[i] = (a[i], b[i]);
        emit(seq);
    }

    private static int Length(int c) => c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;

    private static void Encode(int c, Span<byte> into) => new System.Text.Rune(c).EncodeToUtf8(into);
}
