namespace Kaiyuan.Tensors;

/// <summary>
/// TQ1_0's base-3 packing, as the GGUF format defines it: a byte b holds digits d₀…d₄ as b = ⌈(Σ dᵢ·3^(4−i))·256/243⌉,
/// so digit n is read back as ((b·3ⁿ mod 256)·3) >> 8. The first 32 bytes give elements 32n + m (n = 0..4), the next 16
/// give 160 + 16n + m, and the 4 bytes of qh give 240 + 4n + j (n = 0..3).
/// </summary>
internal static class Ternary
{
    /// <summary>3ⁿ for digit n.</summary>
    public static ReadOnlySpan<byte> Powers => [1, 3, 9, 27, 81];

    /// <summary>Digit <paramref name="n"/> (0..4) of a packed byte, minus one: −1, 0 or 1.</summary>
    public static int Digit(byte packed, int n) => ((byte)(packed * Powers[n]) * 3 >> 8) - 1;

    /// <summary>The element a digit of a TQ1_0 block stands for: <paramref name="n"/> of byte <paramref name="index"/> (0..51, qs then qh).</summary>
    public static int Element(int index, int n) => index switch
    {
        < 32 => 32 * n + index,
        < 48 => 160 + 16 * n + (index - 32),
        _ => 240 + 4 * n + (index - 48),
    };

    /// <summary>Digits per byte: five in qs, four in qh.</summary>
    public static int DigitsOf(int index) => index < BlockLayouts.TQ1_0.Qh ? 5 : 4;
}
