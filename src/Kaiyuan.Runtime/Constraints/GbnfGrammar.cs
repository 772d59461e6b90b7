using System.Text;

namespace Kaiyuan.Constraints;

/// <summary>
/// Parses llama.cpp's GBNF grammar format into a <see cref="Grammar"/>: a rule per GBNF rule, references as rule
/// calls (so recursion works), the rule named <c>root</c> as the root. Errors carry line and column.
/// </summary>
internal static class GbnfGrammar
{
    /// <summary>The deepest parenthesis nesting accepted (the parser recurses once per group).</summary>
    public const int MaxDepth = 200;

    /// <summary>Parses GBNF text; the rule named "root" is the root. Errors: <see cref="GrammarException"/> with line and column.</summary>
    public static Grammar Parse(string text) => new Parser(text).Parse();

    private sealed class Parser(string text)
    {
        private readonly string _text = text;
        private readonly Grammar _grammar = new();
        private readonly Dictionary<string, int> _rules = new(StringComparer.Ordinal);
        private readonly Dictionary<int, int> _firstUse = [];   // rule → offset of its first reference
        private readonly Dictionary<int, int> _definedAt = [];  // rule → offset of its definition
        private int _pos;
        private int _depth;

        private bool AtEnd => _pos >= _text.Length;
        private char Cur => _pos < _text.Length ? _text[_pos] : '\0';

        private GrammarException Error(string what, int offset) => new($"GBNF {Where(offset)}: {what}");

        private string Where(int offset)
        {
            int line = 1, col = 1;
            for (int i = 0; i < offset && i < _text.Length; i++)
            {
                if (_text[i] == '\n') { line++; col = 1; }
                else col++;
            }
            return $"line {line}, column {col}";
        }

        public Grammar Parse()
        {
            SkipSpace(newlines: true);
            if (AtEnd) throw Error("empty grammar (no rules)", _pos);
            while (!AtEnd)
            {
                ParseRule();
                SkipSpace(newlines: false);
                if (AtEnd) break;
                if (Cur is not ('\n' or '\r')) throw Unexpected();
                SkipSpace(newlines: true);
            }
            foreach (var (name, rule) in _rules)
                if (!_grammar.IsDefined(rule)) throw Error($"undefined rule '{name}'", _firstUse[rule]);
            _grammar.Root = _rules.TryGetValue("root", out int root) ? root : throw Error("no rule named 'root'", 0);
            return _grammar;
        }

        private void ParseRule()
        {
            int start = _pos;
            string name = ParseName() ?? throw Error("expected a rule name", _pos);
            SkipSpace(newlines: false);
            if (string.CompareOrdinal(_text, _pos, "::=", 0, 3) != 0) throw Error($"expected '::=' after rule name '{name}'", _pos);
            _pos += 3;
            int rule = RuleFor(name);
            if (_definedAt.TryGetValue(rule, out int first))
                throw Error($"rule '{name}' is defined twice (first at {Where(first)})", start);
            _definedAt[rule] = start;
            _grammar.Define(rule, ParseAlternatives(nested: false));
        }

        private int RuleFor(string name)
        {
            if (!_rules.TryGetValue(name, out int rule)) _rules[name] = rule = _grammar.AddRule(name);
            return rule;
        }

        private GrammarNode ParseAlternatives(bool nested)
        {
            var items = new List<GrammarNode> { ParseSequence(nested) };
            while (Cur == '|')
            {
                _pos++;
                items.Add(ParseSequence(nested));
            }
            return GrammarNode.Alt([.. items]);
        }

        /// <summary>
        /// Items up to '|', ')' or the end of the rule. Inside a group newlines are spaces; at top level a newline ends
        /// the rule only when what follows is a new <c>name ::=</c> or the end (llama.cpp requires that anyway, so
        /// continuing on other lines accepts everything it does and reads it the same way).
        /// </summary>
        private GrammarNode ParseSequence(bool nested)
        {
            var items = new List<GrammarNode>();
            while (true)
            {
                SkipSpace(newlines: nested);
                if (!nested && Cur is '\n' or '\r')
                {
                    int save = _pos;
                    SkipSpace(newlines: true);
                    if (AtEnd || StartsRule()) { _pos = save; break; }
                }
                int start = _pos;
                switch (Cur)
                {
                    case '"':
                        items.Add(ParseString());
                        break;
                    case '[':
                        items.Add(GrammarNode.Chars(ParseClass()));
                        break;
                    case '.':
                        _pos++;
                        items.Add(GrammarNode.Chars(CodepointSet.All));
                        break;
                    case '(':
                        {
                            _pos++;
                            if (++_depth > MaxDepth) throw Error($"groups nested deeper than {MaxDepth}", start);
                            var body = ParseAlternatives(nested: true);
                            _depth--;
                            SkipSpace(newlines: true);
                            if (AtEnd) throw Error("unterminated group (no ')' before the end)", start);
                            if (Cur != ')') throw Error($"unexpected '{Cur}' in the group opened at {Where(start)}", _pos);
                            _pos++;
                            items.Add(body);
                            break;
                        }
                    case '*' or '+' or '?' or '{':
                        {
                            if (items.Count == 0) throw Error($"quantifier '{Cur}' with nothing to repeat", start);
                            var (min, max) = ParseQuantifier();
                            items[^1] = GrammarNode.Repeat(items[^1], min, max);
                            break;
                        }
                    case '<':
                        throw Error("token references are not supported", start);
                    case '!' when _pos + 1 < _text.Length && _text[_pos + 1] == '<':
                        throw Error("token references are not supported", start);
                    default:
                        if (IsNameChar(Cur))
                        {
                            string name = ParseName()!;
                            int rule = RuleFor(name);
                            _firstUse.TryAdd(rule, start);
                            items.Add(GrammarNode.Ref(rule));
                            break;
                        }
                        return GrammarNode.Seq([.. items]);
                }
            }
            return GrammarNode.Seq([.. items]);
        }

        private (int Min, int Max) ParseQuantifier()
        {
            int start = _pos;
            char q = _text[_pos++];
            if (q == '*') return (0, -1);
            if (q == '+') return (1, -1);
            if (q == '?') return (0, 1);
            // {m} {m,} {m,n} {,n}
            SkipSpace(newlines: false);
            if (!char.IsAsciiDigit(Cur) && Cur != ',') throw Error("expected a number in '{...}'", _pos);
            int min = ReadInt(start, 0);
            int max = min;
            SkipSpace(newlines: false);
            if (Cur == ',')
            {
                _pos++;
                SkipSpace(newlines: false);
                max = ReadInt(start, -1);
                SkipSpace(newlines: false);
            }
            if (Cur != '}') throw Error("expected '}' to close the repetition", _pos);
            _pos++;
            if (max >= 0 && max < min) throw Error($"repetition {{{min},{max}}} has its bounds out of order", start);
            return (min, max);
        }

        private int ReadInt(int start, int absent)
        {
            if (!char.IsAsciiDigit(Cur)) return absent;
            long v = 0;
            while (char.IsAsciiDigit(Cur)) { v = Math.Min(v * 10 + (Cur - '0'), int.MaxValue); _pos++; }
            if (v > RegexGrammar.MaxRepeat) throw Error($"repetition bound over {RegexGrammar.MaxRepeatText}", start);
            return (int)v;
        }

        private GrammarNode ParseString()
        {
            int start = _pos++;
            var sb = new StringBuilder();
            while (true)
            {
                if (AtEnd || Cur is '\n' or '\r') throw Error("unterminated string literal", start);
                if (Cur == '"') { _pos++; break; }
                sb.Append(char.ConvertFromUtf32(ParseChar()));
            }
            return sb.Length == 0 ? GrammarNode.Empty : GrammarNode.Literal(sb.ToString());
        }

        private CodepointSet ParseClass()
        {
            int start = _pos++;
            bool negate = false;
            if (Cur == '^') { negate = true; _pos++; }
            var ranges = new List<(int, int)>();
            while (true)
            {
                if (AtEnd || Cur is '\n' or '\r') throw Error("unterminated character class", start);
                if (Cur == ']') { _pos++; break; }
                int at = _pos;
                int lo = ParseChar();
                int hi = lo;
                if (Cur == '-' && _pos + 1 < _text.Length && _text[_pos + 1] != ']')
                {
                    _pos++;
                    if (Cur is '\n' or '\r') throw Error("unterminated character class", start);
                    hi = ParseChar();
                    if (hi < lo) throw Error("character class range out of order", at);
                }
                ranges.Add((lo, hi));
            }
            var set = CodepointSet.FromRanges(ranges);
            return negate ? set.Complement() : set;
        }

        /// <summary>One character of a string or class, escapes decoded; surrogate pairs read as one code point.</summary>
        private int ParseChar()
        {
            int start = _pos;
            if (Cur != '\\')
            {
                if (char.IsHighSurrogate(Cur) && _pos + 1 < _text.Length && char.IsLowSurrogate(_text[_pos + 1]))
                {
                    int cp = char.ConvertToUtf32(Cur, _text[_pos + 1]);
                    _pos += 2;
                    return cp;
                }
                if (char.IsSurrogate(Cur)) throw Error("lone surrogate in the grammar text", start);
                return _text[_pos++];
            }
            _pos++;
            if (AtEnd) throw Error("unterminated escape", start);
            char e = _text[_pos++];
            int value = e switch
            {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                '\\' or '"' or '[' or ']' => e,
                'x' => Hex(2, start),
                'u' => Hex(4, start),
                'U' => Hex(8, start),
                _ => throw Error($"unknown escape '\\{e}'", start),
            };
            if (value is > CodepointSet.MaxCodepoint or (>= 0xD800 and <= 0xDFFF))
                throw Error($"escape '{_text[start.._pos]}' is not a Unicode scalar value", start);
            return value;
        }

        private int Hex(int digits, int start)
        {
            long v = 0;
            for (int i = 0; i < digits; i++)
            {
                int h = Cur switch
                {
                    >= '0' and <= '9' => Cur - '0',
                    >= 'a' and <= 'f' => Cur - 'a' + 10,
                    >= 'A' and <= 'F' => Cur - 'A' + 10,
                    _ => throw Error($"expected {digits} hex digits in the escape", start),
                };
                v = v * 16 + h;
                _pos++;
            }
            return (int)Math.Min(v, int.MaxValue);
        }

        private string? ParseName()
        {
            int start = _pos;
            while (!AtEnd && IsNameChar(Cur)) _pos++;
            return _pos > start ? _text[start.._pos] : null;
        }

        private static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_';

        /// <summary>The cursor is at <c>name ::=</c>.</summary>
        private bool StartsRule()
        {
            int p = _pos;
            while (p < _text.Length && IsNameChar(_text[p])) p++;
            if (p == _pos) return false;
            while (p < _text.Length && _text[p] is ' ' or '\t') p++;
            return string.CompareOrdinal(_text, p, "::=", 0, 3) == 0;
        }

        /// <summary>Skips spaces, tabs and comments, and newlines too when <paramref name="newlines"/>.</summary>
        private void SkipSpace(bool newlines)
        {
            while (!AtEnd)
            {
                char c = Cur;
                if (c is ' ' or '\t') _pos++;
                else if (newlines && c is '\n' or '\r') _pos++;
                else if (c == '#') { while (!AtEnd && Cur is not ('\n' or '\r')) _pos++; }
                else break;
            }
        }

        private GrammarException Unexpected() => Error($"unexpected '{Cur}'", _pos);
    }
}
