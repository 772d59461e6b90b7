using System.Globalization;
using System.Text;

namespace Kaiyuan.Templates;

internal enum TokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

internal readonly record struct Token(TokenKind Kind, string Text, int Line, int Column, long IntValue = 0, double FloatValue = 0)
{
    public bool IsOp(string op) => Kind == TokenKind.Operator && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.Data => "template data",
        _ => $"'{Text}'",
    };
}

/// <summary>
/// Splits template source into data and tag tokens with Jinja2's whitespace rules
/// (trim_blocks and lstrip_blocks as Hugging Face transformers enables them).
/// </summary>
internal sealed class Lexer
{
    private readonly string _src;
    private readonly bool _trimBlocks;
    private readonly bool _lstripBlocks;
    private readonly List<Token> _tokens = [];
    private int _pos;

    private Lexer(string source, bool trimBlocks, bool lstripBlocks)
    {
        // Jinja normalizes newlines and (keep_trailing_newline=False) drops one trailing newline.
        source = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (source.EndsWith('\n'))
            source = source[..^1];
        _src = source;
        _trimBlocks = trimBlocks;
        _lstripBlocks = lstripBlocks;
    }

    public static List<Token> Tokenize(string source, bool trimBlocks = true, bool lstripBlocks = true)
    {
        var lexer = new Lexer(source, trimBlocks, lstripBlocks);
        lexer.Run();
        return lexer._tokens;
    }

    private TemplateException Error(string msg, int pos)
    {
        var (l, c) = Loc(Math.Min(pos, _src.Length));
        return new TemplateException(msg, l, c);
    }

    // Line tracking is incremental so lexing stays linear.
    private int _lineCursorPos;
    private int _lineCursorLine = 1;
    private int _lineCursorCol = 1;

    private (int, int) Loc(int pos)
    {
        if (pos < _lineCursorPos) { _lineCursorPos = 0; _lineCursorLine = 1; _lineCursorCol = 1; }
        for (; _lineCursorPos < pos; _lineCursorPos++)
        {
            if (_src[_lineCursorPos] == '\n') { _lineCursorLine++; _lineCursorCol = 1; }
            else _lineCursorCol++;
        }
        return (_lineCursorLine, _lineCursorCol);
    }

    private void Add(TokenKind kind, string text, int pos, long i = 0, double d = 0)
    {
        var (l, c) = Loc(pos);
        _tokens.Add(new Token(kind, text, l, c, i, d));
    }

    private void Run()
    {
        bool lineStarting = true;
        while (_pos <= _src.Length)
        {
            int open = FindOpen(_pos);
            if (open < 0)
            {
                if (_pos < _src.Length)
                    Add(TokenKind.Data, _src[_pos..], _pos);
                break;
            }
            char kind = _src[open + 1];
            char sign = open + 2 < _src.Length ? _src[open + 2] : '\0';
            string text = _src[_pos..open];
            if (sign == '-')
            {
                text = text.TrimEnd();
            }
            else if (sign != '+' && _lstripBlocks && kind != '{')
            {
                int lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || lineStarting) && IsAllWhitespace(text, lpos))
                    text = text[..lpos];
            }
            if (text.Length > 0)
                Add(TokenKind.Data, text, _pos);
            int inner = open + 2 + (sign is '-' or '+' ? 1 : 0);

            if (kind == '#')
            {
                int end = _src.IndexOf("#}", inner, StringComparison.Ordinal);
                if (end < 0) throw Error("unclosed comment", open);
                bool strip = end > inner && _src[end - 1] == '-';
                _pos = end + 2;
                lineStarting = AfterTagEnd(strip, true);
                continue;
            }
            if (kind == '%' && TryRaw(open, inner, ref lineStarting))
                continue;

            Add(kind == '{' ? TokenKind.VariableBegin : TokenKind.BlockBegin, kind == '{' ? "{{" : "{%", open);
            _pos = inner;
            bool stripAfter = LexExpression(kind == '{' ? '}' : '%', open);
            lineStarting = AfterTagEnd(stripAfter, kind == '%');
        }
        Add(TokenKind.Eof, "", _src.Length);
    }

    private static bool IsAllWhitespace(string s, int from)
    {
        for (int i = from; i < s.Length; i++)
            if (!char.IsWhiteSpace(s[i])) return false;
        return true;
    }

    /// <summary>Applies '-' stripping or trim_blocks after a tag; returns whether the consumed text ended in a newline.</summary>
    private bool AfterTagEnd(bool strip, bool isBlockOrComment)
    {
        if (strip)
        {
            int start = _pos;
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) _pos++;
            return _pos > start && _src[_pos - 1] == '\n';
        }
        if (isBlockOrComment && _trimBlocks && _pos < _src.Length && _src[_pos] == '\n')
        {
            _pos++;
            return true;
        }
        return false;
    }

    private int FindOpen(int from)
    {
        while (true)
        {
            int i = _src.IndexOf('{', from);
            if (i < 0 || i + 1 >= _src.Length) return -1;
            char c = _src[i + 1];
            if (c is '{' or '%' or '#') return i;
            from = i + 1;
        }
    }

    private bool TryRaw(int open, int inner, ref bool lineStarting)
    {
        int p = inner;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        if (string.CompareOrdinal(_src, p, "raw", 0, 3) != 0) return false;
        p += 3;
        if (p < _src.Length && (char.IsLetterOrDigit(_src[p]) || _src[p] == '_')) return false;
        while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        bool stripBegin = false;
        if (p < _src.Length && _src[p] == '-') { stripBegin = true; p++; }
        if (string.CompareOrdinal(_src, p, "%}", 0, 2) != 0) throw Error("expected '%}' after raw", p);
        p += 2;
        if (stripBegin) while (p < _src.Length && char.IsWhiteSpace(_src[p])) p++;
        int search = p;
        while (true)
        {
            int e = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (e < 0) throw Error("missing endraw", open);
            int q = e + 2;
            char sign = q < _src.Length ? _src[q] : '\0';
            if (sign is '-' or '+') q++;
            while (q < _src.Length && char.IsWhiteSpace(_src[q])) q++;
            if (string.CompareOrdinal(_src, q, "endraw", 0, 6) == 0)
            {
                q += 6;
                while (q < _src.Length && char.IsWhiteSpace(_src[q])) q++;
                bool strip = false;
                if (q < _src.Length && _src[q] == '-') { strip = true; q++; }
                if (string.CompareOrdinal(_src, q, "%}", 0, 2) != 0) throw Error("expected '%}' after endraw", q);
                string body = _src[p..e];
                if (sign == '-') body = body.TrimEnd();
                if (body.Length > 0) Add(TokenKind.Data, body, p);
                _pos = q + 2;
                lineStarting = AfterTagEnd(strip, true);
                return true;
            }
            search = e + 2;
        }
    }

    private static bool IsNameStart(char c) => char.IsAsciiLetter(c) || c == '_';
    private static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    private static readonly string[] Ops2 = ["**", "//", "==", "!=", "<=", ">="];
    private const string Ops1 = "+-*/%~<>=()[]{},.:|";

    /// <summary>Lexes tokens inside a tag until its end; returns whether the end had '-' (strip following whitespace).</summary>
    private bool LexExpression(char endKind, int openPos)
    {
        int depth = 0;
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) _pos++;
            if (_pos >= _src.Length)
                throw Error(endKind == '%' ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'", openPos);
            char c = _src[_pos];
            if (depth == 0)
            {
                if (c == '-' && _pos + 2 < _src.Length && _src[_pos + 1] == endKind && _src[_pos + 2] == '}')
                {
                    Add(endKind == '%' ? TokenKind.BlockEnd : TokenKind.VariableEnd, "", _pos);
                    _pos += 3;
                    return true;
                }
                if (c == '+' && endKind == '%' && _pos + 2 < _src.Length && _src[_pos + 1] == '%' && _src[_pos + 2] == '}')
                {
                    Add(TokenKind.BlockEnd, "", _pos);
                    _pos += 3;
                    return false;
                }
                if (c == endKind && _pos + 1 < _src.Length && _src[_pos + 1] == '}')
                {
                    Add(endKind == '%' ? TokenKind.BlockEnd : TokenKind.VariableEnd, "", _pos);
                    _pos += 2;
                    return false;
                }
            }
            if (IsNameStart(c))
            {
                int s = _pos;
                while (_pos < _src.Length && IsNameChar(_src[_pos])) _pos++;
                Add(TokenKind.Name, _src[s.._pos], s);
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                LexNumber();
                continue;
            }
            if (c is '\'' or '"')
            {
                LexString(c);
                continue;
            }
            if (_pos + 1 < _src.Length)
            {
                string two = _src.Substring(_pos, 2);
                if (Array.IndexOf(Ops2, two) >= 0)
                {
                    Add(TokenKind.Operator, two, _pos);
                    _pos += 2;
                    continue;
                }
            }
            if (Ops1.Contains(c))
            {
                if (c is '(' or '[' or '{') depth++;
                else if (c is ')' or ']' or '}') depth = Math.Max(0, depth - 1);
                Add(TokenKind.Operator, c.ToString(), _pos);
                _pos++;
                continue;
            }
            throw Error($"unexpected character '{c}'", _pos);
        }
    }

    private void LexNumber()
    {
        int s = _pos;
        bool isFloat = false;
        while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || _src[_pos] == '_')) _pos++;
        if (_pos + 1 < _src.Length && _src[_pos] == '.' && char.IsAsciiDigit(_src[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || _src[_pos] == '_')) _pos++;
        }
        if (_pos < _src.Length && (_src[_pos] is 'e' or 'E'))
        {
            int save = _pos;
            _pos++;
            if (_pos < _src.Length && _src[_pos] is '+' or '-') _pos++;
            if (_pos < _src.Length && char.IsAsciiDigit(_src[_pos]))
            {
                isFloat = true;
                while (_pos < _src.Length && char.IsAsciiDigit(_src[_pos])) _pos++;
            }
            else _pos = save;
        }
        string text = _src[s.._pos].Replace("_", "");
        if (isFloat)
            Add(TokenKind.Float, text, s, d: double.Parse(text, CultureInfo.InvariantCulture));
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long v))
            Add(TokenKind.Integer, text, s, i: v);
        else
            throw Error("integer literal too large", s);
    }

    private void LexString(char quote)
    {
        int s = _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _src.Length) throw Error("unterminated string literal", s);
            char c = _src[_pos++];
            if (c == quote) break;
            if (c != '\\') { sb.Append(c); continue; }
            if (_pos >= _src.Length) throw Error("unterminated string literal", s);
            char e = _src[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '0': sb.Append('\0'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break;
                case 'x': sb.Append((char)ParseHex(2, s)); break;
                case 'u': sb.Append((char)ParseHex(4, s)); break;
                case 'U': sb.Append(char.ConvertFromUtf32(ParseHex(8, s))); break;
                default: sb.Append('\\').Append(e); break; // Python keeps unknown escapes verbatim
            }
        }
        Add(TokenKind.String, sb.ToString(), s);
    }

    private int ParseHex(int n, int start)
    {
        if (_pos + n > _src.Length || !int.TryParse(_src.AsSpan(_pos, n), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int v))
            throw Error("invalid escape in string literal", start);
        _pos += n;
        return v;
    }
}
