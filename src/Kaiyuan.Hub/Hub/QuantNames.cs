namespace Kaiyuan.Hub;

/// <summary>Quantization names as they appear in GGUF file names on the Hub (<c>model-Q4_K_M.gguf</c>, <c>model.q8_0.gguf</c>).</summary>
internal static class QuantNames
{
    /// <summary>Known names, longest first so that <c>Q4_K_M</c> is found before <c>Q4_K</c>.</summary>
    public static readonly string[] Known =
    [
        "IQ2_XXS", "IQ3_XXS", "Q4_K_XL", "Q5_K_XL", "Q6_K_XL", "Q8_K_XL", "Q2_K_XL", "Q3_K_XL",
        "Q2_K_S", "Q2_K_L", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
        "IQ1_S", "IQ1_M", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS", "IQ4_NL", "TQ1_0", "TQ2_0",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4", "BF16", "F16", "F32",
    ];

    /// <summary>Whether <paramref name="fileName"/> names quantization <paramref name="quant"/> as a whole token (case-insensitive).</summary>
    public static bool Matches(string fileName, string quant)
    {
        var name = Path.GetFileName(fileName);
        for (int at = name.IndexOf(quant, StringComparison.OrdinalIgnoreCase); at >= 0;
             at = name.IndexOf(quant, at + 1, StringComparison.OrdinalIgnoreCase))
        {
            int end = at + quant.Length;
            bool before = at == 0 || !IsTokenChar(name[at - 1]);
            bool after = end == name.Length || !IsTokenChar(name[end]);
            if (before && after) return true;
        }
        return false;
    }

    /// <summary>The quantization a file name carries, upper-case, or null.</summary>
    public static string? FromFileName(string fileName) => Known.FirstOrDefault(q => Matches(fileName, q));

    /// <summary>Whether the name is one part of a split GGUF (<c>-00001-of-00003.gguf</c>).</summary>
    public static bool IsSplitPart(string fileName) =>
        System.Text.RegularExpressions.Regex.IsMatch(Path.GetFileName(fileName), @"-\d{5}-of-\d{5}\.gguf$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);

    private static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';
}
