using System.Globalization;
using System.Text.RegularExpressions;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// Final-number answers (GSM8K), extracted and compared as lm-evaluation-harness's gsm8k task does: a strict match
/// reads the number after <c>#### </c> (the dataset's own answer format), a flexible match takes the last number in the
/// text; both are normalized by dropping thousands separators, dollar signs and a trailing full stop, then compared.
/// </summary>
internal static partial class NumericAnswers
{
    /// <summary>The reference of a GSM8K item: the number after <c>####</c> (test set) or after the last <c>A:</c> (the
    /// graded example solutions); null when there is none.</summary>
    public static string? Reference(string answer) => Strict(answer) ?? AfterLastA(answer);

    /// <summary>lm-evaluation-harness's strict-match: the first <c>#### N</c>.</summary>
    public static string? Strict(string output) => StrictPattern().Match(output) is { Success: true } m ? Normalize(m.Groups[1].Value) : null;

    /// <summary>lm-evaluation-harness's flexible-extract: the last number-like run in the text.</summary>
    public static string? Flexible(string output)
    {
        var matches = FlexiblePattern().Matches(output);
        if (matches.Count == 0) return null;
        var last = matches[^1];
        string value = last.Groups[1].Success ? last.Groups[1].Value : last.Groups[2].Value;
        return Normalize(value);
    }

    /// <summary>The answer after the last <c>A:</c> (the graded GSM8K example solutions end so).</summary>
    public static string? AfterLastA(string output)
    {
        var matches = AnswerLinePattern().Matches(output);
        return matches.Count == 0 ? null : Normalize(matches[^1].Groups[1].Value);
    }

    /// <summary>True when both are answers and name the same number (or, not being numbers, the same text).</summary>
    public static bool Same(string? answer, string? reference)
    {
        if (answer is null || reference is null) return false;
        if (decimal.TryParse(answer, NumberStyles.Number, CultureInfo.InvariantCulture, out var a)
            && decimal.TryParse(reference, NumberStyles.Number, CultureInfo.InvariantCulture, out var b)) return a == b;
        return string.Equals(answer, reference, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Drops what lm-evaluation-harness's gsm8k ignores: commas, dollar signs, a trailing full stop, surrounding space.</summary>
    public static string Normalize(string value) => value.Replace(",", "", StringComparison.Ordinal).Replace("$", "", StringComparison.Ordinal).Trim().TrimEnd('.');

    [GeneratedRegex(@"#### (\-?[0-9\.\,]+)")]
    private static partial Regex StrictPattern();

    [GeneratedRegex(@"(-?[$0-9.,]{2,})|(-?[0-9]+)")]
    private static partial Regex FlexiblePattern();

    [GeneratedRegex(@"A:\s*([^\n]*)")]
    private static partial Regex AnswerLinePattern();
}
