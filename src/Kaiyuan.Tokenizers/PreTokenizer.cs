using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Kaiyuan.Tokenizers;

/// <summary>
/// Splits text into the words BPE runs on, as llama.cpp's <c>unicode_regex_split</c> does for a <c>tokenizer.ggml.pre</c>:
/// an ordered list of regexes, each splitting every piece left by the previous one into matches and the gaps between.
/// Regexes with <c>\p{..}</c> classes run on "collapsed" text (one char per codepoint, non-ASCII ones replaced by a
/// stand-in for their category) exactly as llama.cpp does, so .NET's own Unicode tables and UTF-16 surrogates never
/// decide a split; the others run on the codepoints themselves.
/// </summary>
internal sealed class PreTokenizer
{
    private readonly Rule[] _rules;

    public string Name { get; }

    private PreTokenizer(string name, Rule[] rules)
    {
        Name = name;
        _rules = rules;
    }

    private sealed class Rule
    {
        public Regex? Regex;
        public bool Collapsed;
        public bool KimiK2;
        public Func<int, bool>? AstralInClass; // for codepoint-level regexes with ranges above U+FFFF
        public int Llama3Digits; // > 0: the llama3/qwen2 pattern, matched by Llama3Splitter
    }

    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    private const string Contractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    private const string Llama3 = Contractions + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2 = Contractions + @"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt4o =
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + Contractions + "?" +
        @"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + Contractions + "?" +
        @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string DeepSeek3 =
        @"[!""#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // DeepSeek-LLM's cased-letter class (Unicode LC) and CJK/punctuation classes, as codepoint ranges.
    private static readonly (int Lo, int Hi)[] DeepSeekLetters =
    [
        (0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF), (0x1C4, 0x293),
        (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377), (0x37B, 0x37D), (0x37F, 0x37F), (0x386, 0x386), (0x388, 0x38A),
        (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5),
        (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77),
        (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
        (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC),
        (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC),
        (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115),
        (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134),
        (0x2139, 0x2139), (0x213C, 0x213F), (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B),
        (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F),
        (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A),
        (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2),
        (0x118A0, 0x118DF), (0x1E900, 0x1E943),
    ];
    private static readonly (int Lo, int Hi)[] DeepSeekPunct =
        [(0x21, 0x2F), (0x3A, 0x7E), (0xFF01, 0xFF0F), (0xFF1A, 0xFF5E), (0x2018, 0x201F), (0x3000, 0x3002)];
    private static readonly (int Lo, int Hi)[] DeepSeekCjk = [(0x4E00, 0x9FA5), (0x0800, 0x4E00), (0xAC00, 0xD7FF)];
    private static readonly (int Lo, int Hi)[] DeepSeek3Cjk = [(0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF)];

    private const char AstralIn = '\uFDDE', AstralOut = '\uFDDF';

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, PreTokenizer> Cache = new(StringComparer.Ordinal);

    /// <summary>The pre-tokenizer for a <c>tokenizer.ggml.pre</c> value; throws <see cref="NotSupportedException"/> naming an unknown one.</summary>
    public static PreTokenizer For(string pre) => Cache.TryGetValue(pre, out var cached) ? cached : Cache.GetOrAdd(pre, Create(pre, handWritten: true));

    /// <summary>The same splits done only with regexes (no hand-written matchers), for cross-checking.</summary>
    internal static PreTokenizer RegexOnly(string pre) => Create(pre, handWritten: false);

    // Compiled regexes take tens of milliseconds to build, so each pre-tokenizer is built once per process.
    private static PreTokenizer Create(string pre, bool handWritten) => pre switch
    {
        "" or "default" => new(pre, [C(@"[\p{P}\$\+<=>\^~\|]+"), C(Gpt2), C(@"\p{N}+"), W("[0-9][0-9][0-9]")]),
        "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2" or "dbrx" or "smaug-bpe"
            or "glm4" or "chatglm-bpe" => new(pre, [handWritten ? new Rule { Llama3Digits = 3 } : C(Llama3)]),
        "qwen2" or "deepseek-r1-qwen" or "megrez" or "stablelm2" or "hunyuan" or "grok-2" => new(pre, [handWritten ? new Rule { Llama3Digits = 1 } : C(Qwen2)]),
        "deepseek-llm" => new(pre,
        [
            W("[\r\n]"),
            W(@"\s?[" + Ranges(DeepSeekLetters) + "]+", InRanges(DeepSeekLetters)),
            W(@"\s?[" + Ranges(DeepSeekPunct) + "]+"),
            W(@"\s+\z"),
            W("[" + Ranges(DeepSeekCjk) + "]+"),
            C(@"\p{N}+"),
        ]),
        "deepseek-coder" => new(pre, [W("[\r\n]"), C(@"\s?\p{L}+"), C(@"\s?\p{P}+"), W("[" + Ranges(DeepSeekCjk) + "]+"), C(@"\p{N}")]),
        "deepseek-v3" or "hunyuan-dense" => new(pre, [C(@"\p{N}{1,3}"), W("[" + Ranges(DeepSeek3Cjk) + "]+"), C(DeepSeek3)]),
        "falcon" => new(pre, [C(@"[\p{P}\$\+<=>\^~\|`]+"), C(Gpt2), W("[0-9][0-9][0-9]")]),
        "starcoder" or "refact" or "command-r" or "smollm" or "codeshell" or "exaone" or "minerva-7b" => new(pre, [C(@"\p{N}"), C(Gpt2)]),
        "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es" or "jina-v2-de" or "a.x-4.0" or "mellum" or "modern-bert"
            or "jina-v1-en" or "jina-v2-code" or "roberta-bpe" or "mpt" or "olmo" or "jais" or "trillion" or "granite-docling" or "exaone4"
            or "gpt-neox" => new(pre, [C(Gpt2)]),
        "gpt-4o" or "llama4" or "minimax-m2" => new(pre, [C(Gpt4o)]),
        "kimi-k2" => new(pre, [new Rule { KimiK2 = true }]),
        _ => throw new NotSupportedException($"unknown pre-tokenizer type '{pre}' (tokenizer.ggml.pre)"),
    };

    private static Rule C(string pattern) => new() { Regex = Compile(CollapsePattern(pattern)), Collapsed = true };

    private static Rule W(string pattern, Func<int, bool>? astralInClass = null)
    {
        if (astralInClass is not null) pattern = pattern.Replace("]+", AstralIn + "]+", StringComparison.Ordinal);
        return new() { Regex = Compile(pattern), AstralInClass = astralInClass };
    }

    private static Regex Compile(string pattern) => new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static string Ranges((int Lo, int Hi)[] ranges)
    {
        var sb = new StringBuilder();
        foreach (var (lo, hi) in ranges)
        {
            if (lo > 0xFFFF) continue; // astral members are handled through AstralIn
            sb.Append(CultureInfo.InvariantCulture, $"\\u{lo:X4}");
            if (hi != lo) sb.Append(CultureInfo.InvariantCulture, $"-\\u{hi:X4}");
        }
        return sb.ToString();
    }

    private static Func<int, bool> InRanges((int Lo, int Hi)[] ranges) => cp =>
    {
        foreach (var (lo, hi) in ranges) if (cp >= lo && cp <= hi) return true;
        return false;
    };

    /// <summary>Rewrites <c>\p{X}</c> to the collapsed stand-in plus its ASCII members, bracketed when outside a class (llama.cpp's rule).</summary>
    private static string CollapsePattern(string pattern)
    {
        var sb = new StringBuilder();
        bool inside = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length && pattern[i + 1] != 'p')
            {
                sb.Append(c).Append(pattern[++i]);
                continue;
            }
            if (c == '[' && !inside) inside = true;
            else if (c == ']' && inside) inside = false;
            else if (c == '\\' && i + 3 < pattern.Length && pattern[i + 2] == '{')
            {
                int close = pattern.IndexOf('}', i + 3);
                string? cls = close > 0 ? UnicodeClasses.CollapsedClass(pattern[(i + 3)..close]) : null;
                if (cls is not null)
                {
                    sb.Append(inside ? cls : "[" + cls + "]");
                    i = close;
                    continue;
                }
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Splits <paramref name="text"/>[start, start+length) into words, appended to <paramref name="words"/> as
    /// (char start, char length) pairs over <paramref name="text"/>.
    /// </summary>
    public void Split(string text, int start, int length, List<(int Start, int Length)> words)
    {
        if (length == 0) return;
        if (_rules.Length == 1 && _rules[0].Llama3Digits > 0)
        {
            Llama3Splitter.Split(text, start, length, _rules[0].Llama3Digits, words);
            return;
        }
        var source = text.AsSpan(start, length);
        // Codepoints and where each starts in the text; most text has no surrogates, so index == char offset.
        int n = 0;
        var cps = new int[length];
        int[]? charAt = null;
        for (int i = 0; i < source.Length; i++)
        {
            char ch = source[i];
            if (char.IsHighSurrogate(ch) && i + 1 < source.Length && char.IsLowSurrogate(source[i + 1]))
            {
                charAt ??= BuildIdentity(length, n);
                charAt[n] = i;
                cps[n++] = char.ConvertToUtf32(ch, source[++i]);
                continue;
            }
            if (charAt is not null) charAt[n] = i;
            cps[n++] = char.IsSurrogate(ch) ? 0xFFFD : ch;
        }
        if (charAt is not null) charAt[n] = length;

        var current = new List<(int Start, int Length)> { (0, n) };
        var next = new List<(int Start, int Length)>();
        char[]? collapsed = null, plain = null;
        foreach (var rule in _rules)
        {
            next.Clear();
            if (rule.KimiK2)
            {
                foreach (var (s, l) in current) KimiK2Split(cps, s, l, next);
            }
            else
            {
                char[] mapped = rule.Collapsed
                    ? collapsed ??= Map(cps, n, null, collapsed: true)
                    : rule.AstralInClass is not null ? Map(cps, n, rule.AstralInClass, collapsed: false) : plain ??= Map(cps, n, null, collapsed: false);
                foreach (var (s, l) in current)
                {
                    int at = s;
                    foreach (var m in rule.Regex!.EnumerateMatches(mapped.AsSpan(s, l)))
                    {
                        if (m.Length == 0) continue;
                        int ms = s + m.Index;
                        if (ms > at) next.Add((at, ms - at));
                        next.Add((ms, m.Length));
                        at = ms + m.Length;
                    }
                    if (at < s + l) next.Add((at, s + l - at));
                }
            }
            (current, next) = (next, current);
        }

        foreach (var (s, l) in current)
        {
            if (charAt is null) words.Add((start + s, l));
            else words.Add((start + charAt[s], charAt[s + l] - charAt[s]));
        }
    }

    private static int[] BuildIdentity(int length, int upTo)
    {
        var a = new int[length + 1];
        for (int i = 0; i < upTo; i++) a[i] = i;
        return a;
    }

    private static char[] Map(int[] cps, int n, Func<int, bool>? astralInClass, bool collapsed)
    {
        var mapped = new char[n];
        for (int i = 0; i < n; i++)
        {
            int cp = cps[i];
            if (collapsed) mapped[i] = UnicodeClasses.Collapse(cp);
            else if (cp > 0x7F && UnicodeClasses.IsWhitespace(cp)) mapped[i] = '\v';
            else if (cp > 0xFFFF) mapped[i] = astralInClass is not null && astralInClass(cp) ? AstralIn : AstralOut;
            else mapped[i] = (char)cp;
        }
        return mapped;
    }

    /// <summary>
    /// Kimi K2's split (llama.cpp's hand-written <c>unicode_regex_split_custom_kimi_k2</c>): Han runs, letter words
    /// without Han with an optional leading non-letter and contraction, 1-3 digit groups, punctuation runs, then
    /// the usual whitespace rules.
    /// </summary>
    private static void KimiK2Split(int[] cps, int start, int length, List<(int Start, int Length)> output)
    {
        int end = start + length;
        int prevEnd = start;
        const int OutOfRange = -1;
        int Cp(int p) => p >= start && p < end ? cps[p] : OutOfRange;
        bool Letter(int p) => Cp(p) is var c && c >= 0 && UnicodeClasses.IsLetter(c);
        bool Number(int p) => Cp(p) is var c && c >= 0 && UnicodeClasses.IsNumber(c);
        bool Space(int p) => Cp(p) is var c && c >= 0 && UnicodeClasses.IsWhitespace(c);
        bool Han(int p) => Cp(p) is var c && c >= 0 && UnicodeClasses.IsHan(c);
        bool Defined(int p) => Cp(p) is var c && c >= 0 && UnicodeClasses.IsDefined(c);
        void Add(int e)
        {
            if (e > prevEnd) output.Add((prevEnd, e - prevEnd));
            prevEnd = e;
        }

        for (int pos = start; pos < end;)
        {
            int cp = Cp(pos);
            if (Han(pos))
            {
                while (Han(pos)) pos++;
                Add(pos);
                continue;
            }

            bool leadCandidate = !(cp == '\r' || cp == '\n' || Letter(pos) || Number(pos));
            if ((Letter(pos) && !Han(pos)) || (leadCandidate && Letter(pos + 1) && !Han(pos + 1)))
            {
                bool hasLead = false;
                if (leadCandidate)
                {
                    hasLead = true;
                    pos++;
                }
                bool hasLetters = false;
                while (Letter(pos) && !Han(pos))
                {
                    hasLetters = true;
                    pos++;
                }
                if (hasLetters || (!hasLead && Letter(pos) && !Han(pos)))
                {
                    if (!hasLetters) pos++;
                    while (Letter(pos) && !Han(pos)) pos++;
                    if (Cp(pos) == '\'' && pos + 1 < end)
                    {
                        int c1 = char.ToLowerInvariant((char)Math.Min(Cp(pos + 1), 0xFFFF));
                        if (c1 is 's' or 't' or 'm' or 'd') pos += 2;
                        else if (pos + 2 < end)
                        {
                            int c2 = char.ToLowerInvariant((char)Math.Min(Cp(pos + 2), 0xFFFF));
                            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) pos += 3;
                        }
                    }
                    Add(pos);
                    continue;
                }
                if (hasLead) pos--;
            }

            if (Number(pos))
            {
                int ini = pos;
                while (Number(pos))
                {
                    if (++pos - ini >= 3)
                    {
                        Add(pos);
                        ini = pos;
                    }
                }
                Add(pos);
                continue;
            }

            int p2 = cp == ' ' ? pos + 1 : pos;
            if (!(Space(p2) || Letter(p2) || Number(p2)) && Defined(p2))
            {
                if (cp == ' ') pos++;
                while (!(Space(pos) || Letter(pos) || Number(pos)) && Defined(pos)) pos++;
                while (Cp(pos) is '\r' or '\n') pos++;
                Add(pos);
                continue;
            }

            int spaces = 0, lastNewlineEnd = 0;
            while (Space(pos + spaces))
            {
                if (Cp(pos + spaces) is '\r' or '\n') lastNewlineEnd = pos + spaces + 1;
                spaces++;
            }
            if (lastNewlineEnd > 0)
            {
                pos = lastNewlineEnd;
                Add(pos);
                continue;
            }
            if (spaces > 1 && Cp(pos + spaces) != OutOfRange)
            {
                pos += spaces - 1;
                Add(pos);
                continue;
            }
            if (spaces > 0)
            {
                pos += spaces;
                Add(pos);
                continue;
            }
            Add(++pos);
        }
    }
}
