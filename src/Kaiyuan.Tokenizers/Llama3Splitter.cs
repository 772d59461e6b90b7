namespace Kaiyuan.Tokenizers;

/// <summary>
/// A hand-written matcher for the llama3 / qwen2 split pattern (the two differ only in how many digits group):
/// <c>(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>.
/// It walks UTF-16 text with the same collapsed classes as the regex and gives the same words about four times faster.
/// </summary>
internal static class Llama3Splitter
{
    public static void Split(string text, int start, int length, int maxDigits, List<(int Start, int Length)> words)
    {
        int end = start + length;
        int pos = start;
        while (pos < end)
        {
            int len = Next(text, pos, end, out char c);
            int stop = Match(text, pos, len, c, end, maxDigits);
            words.Add((pos, stop - pos));
            pos = stop;
        }
    }

    /// <summary>The collapsed class of the codepoint at <paramref name="i"/> and its length in chars.</summary>
    private static int Next(string text, int i, int end, out char c)
    {
        char ch = text[i];
        if (char.IsHighSurrogate(ch) && i + 1 < end && char.IsLowSurrogate(text[i + 1]))
        {
            c = UnicodeClasses.Collapse(char.ConvertToUtf32(ch, text[i + 1]));
            return 2;
        }
        c = char.IsSurrogate(ch) ? UnicodeClasses.Other : UnicodeClasses.Collapse(ch);
        return 1;
    }

    private static bool IsLetter(char c) => c == UnicodeClasses.Letter || char.IsAsciiLetter(c);
    private static bool IsNumber(char c) => c == UnicodeClasses.Number || char.IsAsciiDigit(c);
    private static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
    private static bool IsOther(char c) => !IsSpace(c) && !IsLetter(c) && !IsNumber(c);

    /// <summary>Where the match starting at <paramref name="pos"/> ends (every position starts one).</summary>
    private static int Match(string text, int pos, int len, char c, int end, int maxDigits)
    {
        // 1. contractions
        if (c == '\'' && pos + 1 < end)
        {
            char a = (char)(text[pos + 1] | 0x20);
            if (a is 's' or 't' or 'm' or 'd') return pos + 2;
            if (pos + 2 < end)
            {
                char b = (char)(text[pos + 2] | 0x20);
                if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
            }
        }

        // 2. [^\r\n\p{L}\p{N}]?\p{L}+
        int p = pos;
        if (IsLetter(c)) p = pos + len;
        else if (c is not ('\r' or '\n') && !IsNumber(c) && pos + len < end && Next(text, pos + len, end, out char n2) is int l2 && IsLetter(n2))
            p = pos + len + l2;
        if (p > pos)
        {
            while (p < end)
            {
                int l = Next(text, p, end, out char x);
                if (!IsLetter(x)) break;
                p += l;
            }
            return p;
        }

        // 3. \p{N}{1,maxDigits}
        if (IsNumber(c))
        {
            p = pos + len;
            for (int count = 1; count < maxDigits && p < end; count++)
            {
                int l = Next(text, p, end, out char x);
                if (!IsNumber(x)) break;
                p += l;
            }
            return p;
        }

        // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
        p = pos;
        if (c == ' ' && pos + 1 < end && Next(text, pos + 1, end, out char after) > 0 && IsOther(after)) p = pos + 1;
        else if (IsOther(c)) p = pos;
        else p = -1;
        if (p >= 0)
        {
            while (p < end)
            {
                int l = Next(text, p, end, out char x);
                if (!IsOther(x)) break;
                p += l;
            }
            while (p < end && text[p] is '\r' or '\n') p++;
            return p;
        }

        // 5-7. whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
        int runEnd = pos, lastNewline = -1;
        while (runEnd < end)
        {
            int l = Next(text, runEnd, end, out char x);
            if (!IsSpace(x)) break;
            if (x is '\r' or '\n') lastNewline = runEnd;
            runEnd += l;
        }
        if (lastNewline >= 0) return lastNewline + 1;
        if (runEnd == end) return runEnd;
        // Followed by a non-space: leave the last whitespace char to prefix the next word (all whitespace is one char).
        return runEnd - pos >= 2 ? runEnd - 1 : runEnd;
    }
}
