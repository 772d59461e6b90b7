using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Kaiyuan.Constraints;

/// <summary>
/// Compiles ECMAScript-style regular expressions (the dialect of JSON Schema <c>pattern</c>) into a grammar node over
/// Unicode code points. Only regular constructs are accepted: lookaround, backreferences, word boundaries, inline flags
/// and anchors in the middle are refused with a <see cref="GrammarException"/> rather than approximated.
/// </summary>
internal static class RegexGrammar
{
    /// <summary>The largest quantifier bound accepted.</summary>
    public const int MaxRepeat = 10_000;
    /// <summary>The deepest group nesting accepted (the parser recurses once per group).</summary>
    public const int MaxDepth = 200;
    /// <summary>The bound as messages print it, independent of the current culture.</summary>
    internal static string MaxRepeatText { get; } = MaxRepeat.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>
    /// Full-match semantics: the node matches exactly the strings the whole pattern matches (a leading ^ and trailing $
    /// are accepted and mean the same).
    /// </summary>
    public static GrammarNode Parse(string pattern) => new Parser(pattern).ParseTop(search: false);

    /// <summary>
    /// JSON Schema <c>pattern</c> semantics (ECMA-262 search, unanchored): where the pattern does not start with ^, any
    /// text may come before; where it does not end with $, any text may come after. Each top-level alternative is
    /// anchored on its own: <c>^a|b$</c> means (^a)|(b$).
    /// </summary>
    public static GrammarNode ParseSearch(string pattern) => new Parser(pattern).ParseTop(search: true);

    /// <summary>Line terminators, which <c>.</c> does not match.</summary>
    internal static CodepointSet LineTerminators { get; } = CodepointSet.Of("\n\r\u2028\u2029");
    internal static CodepointSet Dot { get; } = LineTerminators.Complement();
    internal static CodepointSet Digit { get; } = CodepointSet.Range('0', '9');
    internal static CodepointSet Word { get; } = CodepointSet.FromRanges([('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]);
    /// <summary>ECMAScript WhiteSpace and LineTerminator (what <c>\s</c> matches).</summary>
    internal static CodepointSet Space { get; } = CodepointSet.FromRanges([
        ('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
        (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]);

    private sealed class Parser
    {
        private readonly string _pattern;
        private readonly int[] _cp;   // the pattern as code points
        private readonly int[] _at;   // each code point's UTF-16 offset, for messages (plus one past the end)
        private int _pos;
        private int _depth;

        public Parser(string pattern)
        {
            _pattern = pattern;
            var cps = new List<int>(pattern.Length);
            var at = new List<int>(pattern.Length + 1);
            for (int i = 0; i < pattern.Length;)
            {
                if (Rune.DecodeFromUtf16(pattern.AsSpan(i), out var rune, out int used) != OperationStatus.Done)
                    throw new GrammarException($"pattern '{Shown}': lone surrogate at position {i} is not valid text");
                cps.Add(rune.Value);
                at.Add(i);
                i += used;
            }
            at.Add(pattern.Length);
            _cp = [.. cps];
            _at = [.. at];
        }

        private string Shown => _pattern.Length <= 100 ? _pattern : _pattern[..100] + "…";
        private bool AtEnd => _pos >= _cp.Length;
        private int Peek(int ahead = 0) => _pos + ahead < _cp.Length ? _cp[_pos + ahead] : -1;

        private GrammarException Error(string what, int pos) =>
            new($"pattern '{Shown}': {what} at position {_at[Math.Min(pos, _at.Length - 1)]}");

        private GrammarException Unsupported(string what, int pos) =>
            new($"pattern '{Shown}': {what} at position {_at[Math.Min(pos, _at.Length - 1)]} is not supported");

        public GrammarNode ParseTop(bool search)
        {
            var anyText = GrammarNode.Repeat(GrammarNode.Chars(CodepointSet.All), 0, -1);
            var branches = new List<GrammarNode>();
            while (true)
            {
                bool startAnchor = false;
                if (Peek() == '^') { startAnchor = true; _pos++; }
                var body = ParseSequence(topLevel: true, out bool endAnchor);
                branches.Add(search
                    ? GrammarNode.Seq(startAnchor ? GrammarNode.Empty : anyText, body, endAnchor ? GrammarNode.Empty : anyText)
                    : body);
                if (AtEnd) break;
                if (Peek() == '|') { _pos++; continue; }
                throw Error("unmatched ')'", _pos);
            }
            return GrammarNode.Alt([.. branches]);
        }

        private GrammarNode ParseAlternatives()
        {
            var branches = new List<GrammarNode> { ParseSequence(topLevel: false, out _) };
            while (Peek() == '|')
            {
                _pos++;
                branches.Add(ParseSequence(topLevel: false, out _));
            }
            return GrammarNode.Alt([.. branches]);
        }

        /// <summary>Terms up to '|', ')' or the end; at top level a '$' may close the branch.</summary>
        private GrammarNode ParseSequence(bool topLevel, out bool endAnchor)
        {
            endAnchor = false;
            var items = new List<GrammarNode>();
            var text = new StringBuilder(); // consecutive plain characters become one literal
            while (!AtEnd && Peek() != '|' && Peek() != ')')
            {
                int start = _pos;
                int c = Peek();
                if (c == '^') throw Unsupported("start anchor '^' (other than at the start of the pattern or of a top-level alternative)", start);
                if (c == '$')
                {
                    _pos++;
                    if (topLevel && (AtEnd || Peek() == '|')) { endAnchor = true; break; }
                    throw Unsupported("end anchor '$' (other than at the end of the pattern or of a top-level alternative)", start);
                }
                var (atom, literal) = ParseAtom();
                var quantified = ParseQuantifier(atom);
                if (quantified is null && literal >= 0)
                {
                    text.Append(char.ConvertFromUtf32(literal));
                    continue;
                }
                if (text.Length > 0) { items.Add(GrammarNode.Literal(text.ToString())); text.Clear(); }
                items.Add(quantified ?? atom);
            }
            if (text.Length > 0) items.Add(GrammarNode.Literal(text.ToString()));
            return GrammarNode.Seq([.. items]);
        }

        /// <summary>One atom; <c>literal</c> is its code point when it is a single plain character, else -1.</summary>
        private (GrammarNode Node, int Literal) ParseAtom()
        {
            int start = _pos;
            int c = _cp[_pos++];
            switch (c)
            {
                case '(':
                    return (ParseGroup(start), -1);
                case '[':
                    return (GrammarNode.Chars(ParseClass(start)), -1);
                case '.':
                    return (GrammarNode.Chars(Dot), -1);
                case '*' or '+' or '?':
                    throw Error($"quantifier '{(char)c}' with nothing to repeat", start);
                case '{':
                    _pos = start;
                    if (TryBraces(out _, out _)) throw Error("quantifier '{' with nothing to repeat", start);
                    _pos = start + 1;
                    return (GrammarNode.Literal("{"), '{'); // not a quantifier: a plain brace, as ECMAScript reads it
                case '\\':
                    {
                        var (cp, set) = ParseEscape(start, inClass: false);
                        if (set is not null) return (GrammarNode.Chars(set), -1);
                        if (cp is >= 0xD800 and <= 0xDFFF) throw Error("lone surrogate escape (it cannot be written as UTF-8)", start);
                        return (GrammarNode.Literal(char.ConvertFromUtf32(cp)), cp);
                    }
                default:
                    return (GrammarNode.Literal(char.ConvertFromUtf32(c)), c);
            }
        }

        private GrammarNode ParseGroup(int start)
        {
            if (Peek() == '?')
            {
                int k = Peek(1);
                if (k == ':') _pos += 2;
                else if (k == '=') throw Unsupported("lookahead", start);
                else if (k == '!') throw Unsupported("negative lookahead", start);
                else if (k == '<' && Peek(2) == '=') throw Unsupported("lookbehind", start);
                else if (k == '<' && Peek(2) == '!') throw Unsupported("negative lookbehind", start);
                else if (k == '<')
                {
                    _pos += 2;
                    int nameStart = _pos;
                    while (!AtEnd && Peek() != '>')
                    {
                        int n = Peek();
                        bool ok = n == '_' || n == '$' || Rune.IsLetter(new Rune(n)) || (_pos > nameStart && Rune.IsDigit(new Rune(n)));
                        if (!ok) throw Error("invalid group name", _pos);
                        _pos++;
                    }
                    if (AtEnd || _pos == nameStart) throw Error("invalid group name", start);
                    _pos++;
                }
                else if (k >= 0 && (char.IsAsciiLetter((char)k) || k == '-')) throw Unsupported("inline flag group '(?" + (char)k + "'", start);
                else throw Error("invalid group syntax '(?'", start);
            }
            if (++_depth > MaxDepth) throw Error($"groups nested deeper than {MaxDepth}", start);
            var body = ParseAlternatives();
            _depth--;
            if (Peek() != ')') throw Error("unterminated group (missing ')')", start);
            _pos++;
            return body;
        }

        /// <summary>Applies a quantifier if one follows; null when none does.</summary>
        private GrammarNode? ParseQuantifier(GrammarNode atom)
        {
            int min, max;
            switch (Peek())
            {
                case '*': _pos++; min = 0; max = -1; break;
                case '+': _pos++; min = 1; max = -1; break;
                case '?': _pos++; min = 0; max = 1; break;
                case '{':
                    if (!TryBraces(out min, out max)) return null;
                    break;
                default:
                    return null;
            }
            if (Peek() == '?') _pos++; // lazy: the same language
            int next = Peek();
            if (next is '*' or '+' or '?' || (next == '{' && LooksLikeBraces()))
                throw Error($"quantifier '{char.ConvertFromUtf32(next)}' with nothing to repeat", _pos);
            return GrammarNode.Repeat(atom, min, max);
        }

        private bool LooksLikeBraces()
        {
            int save = _pos;
            try { return TryBraces(out _, out _); }
            finally { _pos = save; }
        }

        /// <summary>Reads {n}, {n,} or {n,m} at the cursor; false (cursor unchanged) when it is not one.</summary>
        private bool TryBraces(out int min, out int max)
        {
            int start = _pos;
            min = max = 0;
            int p = _pos + 1;
            if (!ReadInt(ref p, out long lo)) return false;
            long hi = lo;
            if (p < _cp.Length && _cp[p] == ',')
            {
                p++;
                if (!ReadInt(ref p, out hi)) hi = -1;
            }
            if (p >= _cp.Length || _cp[p] != '}') return false;
            _pos = p + 1;
            if (lo > MaxRepeat || hi > MaxRepeat) throw Error($"quantifier bound over {MaxRepeatText}", start);
            if (hi >= 0 && hi < lo) throw Error("quantifier bounds out of order", start);
            min = (int)lo;
            max = (int)hi;
            return true;
        }

        private bool ReadInt(ref int p, out long value)
        {
            value = 0;
            int start = p;
            while (p < _cp.Length && _cp[p] is >= '0' and <= '9')
            {
                value = Math.Min(value * 10 + (_cp[p] - '0'), int.MaxValue); // saturate: only "too big" matters
                p++;
            }
            return p > start;
        }

        private CodepointSet ParseClass(int start)
        {
            bool negate = false;
            if (Peek() == '^') { negate = true; _pos++; }
            var ranges = new List<(int, int)>();
            var set = CodepointSet.None;
            while (true)
            {
                if (AtEnd) throw Error("unterminated character class (missing ']')", start);
                if (Peek() == ']') { _pos++; break; }
                int atomStart = _pos;
                var (lo, loSet) = ParseClassAtom();
                if (Peek() == '-' && Peek(1) != ']' && Peek(1) >= 0)
                {
                    if (loSet is not null) { set = set.Union(loSet); continue; } // [\w-.]: the dash is a plain '-'
                    _pos++;
                    var (hi, hiSet) = ParseClassAtom();
                    if (hiSet is not null)
                    {
                        ranges.Add((lo, lo));
                        ranges.Add(('-', '-'));
                        set = set.Union(hiSet);
                        continue;
                    }
                    if (hi < lo) throw Error("character class range out of order", atomStart);
                    ranges.Add((lo, hi));
                }
                else if (loSet is not null) set = set.Union(loSet);
                else ranges.Add((lo, lo));
            }
            set = set.Union(CodepointSet.FromRanges(ranges));
            return negate ? set.Complement() : set;
        }

        private (int Cp, CodepointSet? Set) ParseClassAtom()
        {
            int start = _pos;
            int c = _cp[_pos++];
            if (c == '\\') return ParseEscape(start, inClass: true);
            if (c == '[' && Peek() is ':' or '=' or '.')
            {
                // [[:alpha:]] means something else in ECMAScript; refuse it rather than read it as ECMAScript would.
                int close = Peek();
                for (int p = _pos + 1; p + 1 < _cp.Length && _cp[p] != ']'; p++)
                    if (_cp[p] == close && _cp[p + 1] == ']') throw Unsupported("POSIX character class", start);
            }
            return (c, null);
        }

        /// <summary>After a backslash at <paramref name="start"/>: one code point or a set.</summary>
        private (int Cp, CodepointSet? Set) ParseEscape(int start, bool inClass)
        {
            if (AtEnd) throw Error("pattern ends with a lone backslash", start);
            int c = _cp[_pos++];
            switch (c)
            {
                case 'n': return ('\n', null);
                case 'r': return ('\r', null);
                case 't': return ('\t', null);
                case 'f': return ('\f', null);
                case 'v': return ('\v', null);
                case 'd': return (0, Digit);
                case 'D': return (0, Digit.Complement());
                case 'w': return (0, Word);
                case 'W': return (0, Word.Complement());
                case 's': return (0, Space);
                case 'S': return (0, Space.Complement());
                case 'b':
                    if (inClass) return ('\b', null);
                    throw Unsupported("word boundary \\b", start);
                case 'B': throw Unsupported("non-word boundary \\B", start);
                case '0':
                    if (Peek() is >= '0' and <= '9') throw Unsupported("octal escape", start);
                    return (0, null);
                case >= '1' and <= '9': throw Unsupported($"backreference \\{(char)c}", start);
                case 'k': throw Unsupported("backreference \\k", start);
                case 'c':
                    {
                        int l = Peek();
                        if (l >= 0 && char.IsAsciiLetter((char)l)) { _pos++; return (l % 32, null); }
                        throw Error("invalid control escape \\c", start);
                    }
                case 'x':
                    {
                        int v = ReadHex(2, start, "\\x");
                        return (v, null);
                    }
                case 'u':
                    {
                        if (Peek() == '{')
                        {
                            _pos++;
                            long v = 0;
                            int digits = 0;
                            while (!AtEnd && HexValue(Peek()) >= 0) { v = Math.Min(v * 16 + HexValue(_cp[_pos++]), 0x110000); digits++; }
                            if (digits == 0 || Peek() != '}' || v > CodepointSet.MaxCodepoint) throw Error("invalid \\u{...} escape", start);
                            _pos++;
                            return ((int)v, null);
                        }
                        int u = ReadHex(4, start, "\\u");
                        // A surrogate pair written as two escapes is one code point, as with the u flag.
                        if (u is >= 0xD800 and <= 0xDBFF && Peek() == '\\' && Peek(1) == 'u')
                        {
                            int save = _pos;
                            _pos += 2;
                            int low = TryReadHex(4);
                            if (low is >= 0xDC00 and <= 0xDFFF) return (0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00), null);
                            _pos = save;
                        }
                        return (u, null);
                    }
                case 'p' or 'P':
                    {
                        if (Peek() != '{') throw Error($"invalid property escape \\{(char)c}", start);
                        int close = Array.IndexOf(_cp, (int)'}', _pos);
                        if (close < 0) throw Error($"unterminated property escape \\{(char)c}{{", start);
                        string name = string.Concat(_cp[(_pos + 1)..close].Select(char.ConvertFromUtf32));
                        _pos = close + 1;
                        var set = UnicodeProperties.Find(name) ?? throw Unsupported($"Unicode property \\{(char)c}{{{name}}}", start);
                        return (0, c == 'P' ? set.Complement() : set);
                    }
                default:
                    if (c < 0x80 && char.IsAsciiLetterOrDigit((char)c))
                        throw Error($"unknown escape \\{(char)c}", start);
                    return (c, null); // escaped punctuation (and anything else not a letter or digit) is itself
            }
        }

        private int ReadHex(int count, int start, string what)
        {
            int v = TryReadHex(count);
            if (v < 0) throw Error($"invalid {what} escape (expected {count} hex digits)", start);
            return v;
        }

        private int TryReadHex(int count)
        {
            int v = 0;
            for (int i = 0; i < count; i++)
            {
                int h = HexValue(Peek(i));
                if (h < 0) return -1;
                v = v * 16 + h;
            }
            _pos += count;
            return v;
        }

        private static int HexValue(int c) => c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'a' and <= 'f' => c - 'a' + 10,
            >= 'A' and <= 'F' => c - 'A' + 10,
            _ => -1,
        };
    }

    /// <summary>General-category sets from <see cref="CharUnicodeInfo"/>, built once on first use.</summary>
    private static class UnicodeProperties
    {
        private static readonly Lazy<CodepointSet[]> Categories = new(Build);
        private static readonly ConcurrentDictionary<string, CodepointSet> Cache = new(StringComparer.Ordinal);

        private static readonly Dictionary<string, string> LongNames = new(StringComparer.Ordinal)
        {
            ["Letter"] = "L",
            ["Cased_Letter"] = "LC",
            ["Uppercase_Letter"] = "Lu",
            ["Lowercase_Letter"] = "Ll",
            ["Titlecase_Letter"] = "Lt",
            ["Modifier_Letter"] = "Lm",
            ["Other_Letter"] = "Lo",
            ["Mark"] = "M",
            ["Combining_Mark"] = "M",
            ["Nonspacing_Mark"] = "Mn",
            ["Spacing_Mark"] = "Mc",
            ["Enclosing_Mark"] = "Me",
            ["Number"] = "N",
            ["Decimal_Number"] = "Nd",
            ["digit"] = "Nd",
            ["Letter_Number"] = "Nl",
            ["Other_Number"] = "No",
            ["Punctuation"] = "P",
            ["punct"] = "P",
            ["Connector_Punctuation"] = "Pc",
            ["Dash_Punctuation"] = "Pd",
            ["Open_Punctuation"] = "Ps",
            ["Close_Punctuation"] = "Pe",
            ["Initial_Punctuation"] = "Pi",
            ["Final_Punctuation"] = "Pf",
            ["Other_Punctuation"] = "Po",
            ["Symbol"] = "S",
            ["Math_Symbol"] = "Sm",
            ["Currency_Symbol"] = "Sc",
            ["Modifier_Symbol"] = "Sk",
            ["Other_Symbol"] = "So",
            ["Separator"] = "Z",
            ["Space_Separator"] = "Zs",
            ["Line_Separator"] = "Zl",
            ["Paragraph_Separator"] = "Zp",
            ["Other"] = "C",
            ["Control"] = "Cc",
            ["cntrl"] = "Cc",
            ["Format"] = "Cf",
            ["Surrogate"] = "Cs",
            ["Private_Use"] = "Co",
            ["Unassigned"] = "Cn",
        };

        // Short name → the UnicodeCategory values it covers.
        private static readonly Dictionary<string, UnicodeCategory[]> Short = new(StringComparer.Ordinal)
        {
            ["L"] = [UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter, UnicodeCategory.ModifierLetter, UnicodeCategory.OtherLetter],
            ["LC"] = [UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter],
            ["Lu"] = [UnicodeCategory.UppercaseLetter],
            ["Ll"] = [UnicodeCategory.LowercaseLetter],
            ["Lt"] = [UnicodeCategory.TitlecaseLetter],
            ["Lm"] = [UnicodeCategory.ModifierLetter],
            ["Lo"] = [UnicodeCategory.OtherLetter],
            ["M"] = [UnicodeCategory.NonSpacingMark, UnicodeCategory.SpacingCombiningMark, UnicodeCategory.EnclosingMark],
            ["Mn"] = [UnicodeCategory.NonSpacingMark],
            ["Mc"] = [UnicodeCategory.SpacingCombiningMark],
            ["Me"] = [UnicodeCategory.EnclosingMark],
            ["N"] = [UnicodeCategory.DecimalDigitNumber, UnicodeCategory.LetterNumber, UnicodeCategory.OtherNumber],
            ["Nd"] = [UnicodeCategory.DecimalDigitNumber],
            ["Nl"] = [UnicodeCategory.LetterNumber],
            ["No"] = [UnicodeCategory.OtherNumber],
            ["P"] = [UnicodeCategory.ConnectorPunctuation, UnicodeCategory.DashPunctuation, UnicodeCategory.OpenPunctuation, UnicodeCategory.ClosePunctuation,
                UnicodeCategory.InitialQuotePunctuation, UnicodeCategory.FinalQuotePunctuation, UnicodeCategory.OtherPunctuation],
            ["Pc"] = [UnicodeCategory.ConnectorPunctuation],
            ["Pd"] = [UnicodeCategory.DashPunctuation],
            ["Ps"] = [UnicodeCategory.OpenPunctuation],
            ["Pe"] = [UnicodeCategory.ClosePunctuation],
            ["Pi"] = [UnicodeCategory.InitialQuotePunctuation],
            ["Pf"] = [UnicodeCategory.FinalQuotePunctuation],
            ["Po"] = [UnicodeCategory.OtherPunctuation],
            ["S"] = [UnicodeCategory.MathSymbol, UnicodeCategory.CurrencySymbol, UnicodeCategory.ModifierSymbol, UnicodeCategory.OtherSymbol],
            ["Sm"] = [UnicodeCategory.MathSymbol],
            ["Sc"] = [UnicodeCategory.CurrencySymbol],
            ["Sk"] = [UnicodeCategory.ModifierSymbol],
            ["So"] = [UnicodeCategory.OtherSymbol],
            ["Z"] = [UnicodeCategory.SpaceSeparator, UnicodeCategory.LineSeparator, UnicodeCategory.ParagraphSeparator],
            ["Zs"] = [UnicodeCategory.SpaceSeparator],
            ["Zl"] = [UnicodeCategory.LineSeparator],
            ["Zp"] = [UnicodeCategory.ParagraphSeparator],
            ["C"] = [UnicodeCategory.Control, UnicodeCategory.Format, UnicodeCategory.Surrogate, UnicodeCategory.PrivateUse, UnicodeCategory.OtherNotAssigned],
            ["Cc"] = [UnicodeCategory.Control],
            ["Cf"] = [UnicodeCategory.Format],
            ["Cs"] = [UnicodeCategory.Surrogate],
            ["Co"] = [UnicodeCategory.PrivateUse],
            ["Cn"] = [UnicodeCategory.OtherNotAssigned],
        };

        /// <summary>The set for a property name such as <c>L</c>, <c>Letter</c> or <c>gc=Lu</c>; null when unknown.</summary>
        public static CodepointSet? Find(string name)
        {
            if (Cache.TryGetValue(name, out var cached)) return cached;
            CodepointSet? set = null;
            string value = name;
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                string key = name[..eq];
                if (key is not ("General_Category" or "gc")) return null;
                value = name[(eq + 1)..];
            }
            else if (name == "Any") set = CodepointSet.All;
            else if (name == "ASCII") set = CodepointSet.Range(0, 0x7F);
            else if (name == "Assigned") set = Categories.Value[(int)UnicodeCategory.OtherNotAssigned].Complement();
            if (set is null)
            {
                if (LongNames.TryGetValue(value, out string? shortName)) value = shortName;
                if (!Short.TryGetValue(value, out var cats)) return null;
                set = CodepointSet.None;
                foreach (var cat in cats) set = set.Union(Categories.Value[(int)cat]);
            }
            return Cache.GetOrAdd(name, set);
        }

        private static CodepointSet[] Build()
        {
            var lists = new List<(int, int)>[(int)UnicodeCategory.OtherNotAssigned + 1];
            for (int i = 0; i < lists.Length; i++) lists[i] = [];
            int runStart = 0;
            var runCat = CharUnicodeInfo.GetUnicodeCategory(0);
            for (int c = 1; c <= CodepointSet.MaxCodepoint + 1; c++)
            {
                var cat = c <= CodepointSet.MaxCodepoint ? CharUnicodeInfo.GetUnicodeCategory(c) : (UnicodeCategory)(-1);
                if (cat == runCat) continue;
                lists[(int)runCat].Add((runStart, c - 1));
                runStart = c;
                runCat = cat;
            }
            return [.. lists.Select(CodepointSet.FromRanges)];
        }
    }
}
