namespace Kaiyuan.Quantization;

/// <summary>
/// <c>general.file_type</c>: the mix a GGUF was quantized as, numbered as llama.cpp's <c>llama_ftype</c> (the numbers are
/// part of the file format; gaps are retired values).
/// </summary>
public enum FileType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 7,
    Q5_0 = 8,
    Q5_1 = 9,
    Q2_K = 10,
    Q3_K_S = 11,
    Q3_K_M = 12,
    Q3_K_L = 13,
    Q4_K_S = 14,
    Q4_K_M = 15,
    Q5_K_S = 16,
    Q5_K_M = 17,
    Q6_K = 18,
    IQ2_XXS = 19,
    IQ2_XS = 20,
    Q2_K_S = 21,
    IQ3_XS = 22,
    IQ3_XXS = 23,
    IQ1_S = 24,
    IQ4_NL = 25,
    IQ3_S = 26,
    IQ3_M = 27,
    IQ2_S = 28,
    IQ2_M = 29,
    IQ4_XS = 30,
    IQ1_M = 31,
    BF16 = 32,
    TQ1_0 = 36,
    TQ2_0 = 37,
    MXFP4_MOE = 38,
}

internal static class FileTypes
{
    /// <summary>The name of a <c>general.file_type</c> value, or "unknown (N)".</summary>
    public static string Name(long value) =>
        value is >= 0 and <= uint.MaxValue && Enum.IsDefined((FileType)(uint)value) ? ((FileType)(uint)value).ToString() : $"unknown ({value})";

    /// <summary>Parses a mix name such as <c>q4_k_m</c> (case-insensitive).</summary>
    public static bool TryParse(string text, out FileType type) =>
        Enum.TryParse(text.Trim(), ignoreCase: true, out type) && Enum.IsDefined(type) && !uint.TryParse(text, out _);
}
