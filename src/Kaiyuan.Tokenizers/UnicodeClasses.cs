using System.Globalization;

namespace Kaiyuan.Tokenizers;

/// <summary>The character classes llama.cpp's pre-tokenizers see (its own flags: letter, number, punctuation, mark, symbol, whitespace).</summary>
internal static class UnicodeClasses
{
    // Stand-ins for whole Unicode categories in the "collapsed" text (one char per codepoint), as llama.cpp does with
    // bytes 0xD0-0xD5; Unicode noncharacters never occur in real text.
    public const char Other = '\uFDD0';
    public const char Number = '\uFDD1';
    public const char Letter = '\uFDD2';
    public const char Punctuation = '\uFDD3';
    public const char Mark = '\uFDD4';
    public const char Symbol = '\uFDD5';

    private static readonly char[] BmpCollapsed = BuildBmp();

    private static char[] BuildBmp()
    {
        var table = new char[0x10000];
        for (int c = 0; c < table.Length; c++) table[c] = Classify(c);
        return table;
    }

    /// <summary>llama.cpp's whitespace set (Unicode White_Space).</summary>
    public static bool IsWhitespace(int cp) =>
        cp is >= 0x09 and <= 0x0D or 0x20 or 0x85 or 0xA0 or 0x1680 or >= 0x2000 and <= 0x200A or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    private static char Classify(int cp)
    {
        if (cp < 128) return (char)cp;
        if (IsWhitespace(cp)) return '\v'; // non-ASCII whitespace still matches \s
        if (cp is >= 0xD800 and <= 0xDFFF) return Other;
        return CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Number,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
                or UnicodeCategory.OtherPunctuation => Punctuation,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => Mark,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol => Symbol,
            _ => Other,
        };
    }

    /// <summary>One char standing for a codepoint: ASCII as itself, non-ASCII whitespace as \v, others by category.</summary>
    public static char Collapse(int cp) => cp < 0x10000 ? BmpCollapsed[cp] : Classify(cp);

    public static bool IsLetter(int cp) => cp < 128 ? char.IsAsciiLetter((char)cp) : Collapse(cp) == Letter;
    public static bool IsNumber(int cp) => cp < 128 ? char.IsAsciiDigit((char)cp) : Collapse(cp) == Number;

    /// <summary>Whether a codepoint has any of llama.cpp's flags (unassigned codepoints have none).</summary>
    public static bool IsDefined(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) != UnicodeCategory.OtherNotAssigned;

    /// <summary>
    /// The class a collapsed-text regex uses for <c>\p{X}</c>: the stand-in plus the ASCII members llama.cpp lists
    /// (its ASCII symbol list omits <c>~</c>, and we keep that).
    /// </summary>
    public static string? CollapsedClass(string name) => name switch
    {
        "N" => "\uFDD10-9",
        "L" or "Lu" or "Ll" or "Lt" or "Lm" or "Lo" => "\uFDD2A-Za-z",
        "P" => "\uFDD3!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
        "M" => "\uFDD4",
        "S" => "\uFDD5\\$\\+<->\\^`\\|",
        _ => null,
    };

    /// <summary>CJK ideographs as llama.cpp's <c>unicode_cpt_is_han</c>.</summary>
    public static bool IsHan(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0x2CEB0 and <= 0x2EBEF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
