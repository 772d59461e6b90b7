namespace Kaiyuan.Tokenizers;

/// <summary>A piece of input: either a special token already recognised, or a span of text still to tokenize.</summary>
internal readonly record struct TextFragment(int Token, int Start, int Length)
{
    public bool IsToken => Token >= 0;
}

/// <summary>
/// Splits special-token texts out of the input before the model tokenizer runs, as llama.cpp's
/// <c>tokenizer_st_partition</c>: tokens are tried longest first over the whole input, each taking every occurrence
/// in the remaining text. USER_DEFINED tokens always split; CONTROL and UNKNOWN ones only with parseSpecial.
/// </summary>
internal static class SpecialTokenSplitter
{
    public static List<TextFragment> Split(Vocabulary vocab, string text, bool parseSpecial)
    {
        var fragments = new List<TextFragment>();
        if (text.Length == 0) return fragments;
        fragments.Add(new TextFragment(-1, 0, text.Length));
        var next = new List<TextFragment>();
        foreach (int id in vocab.SpecialTokens)
        {
            var attr = vocab.Attributes(id);
            if (!parseSpecial && (attr & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            string special = vocab.Text(id);
            bool any = false;
            next.Clear();
            foreach (var f in fragments)
            {
                if (f.IsToken || !SplitOne(text, f, id, special, attr, next)) next.Add(f);
                else any = true;
            }
            if (any) (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    /// <summary>Appends the split of one text fragment around every occurrence of a special token; false when it does not occur.</summary>
    private static bool SplitOne(string text, TextFragment f, int id, string special, TokenAttributes attr, List<TextFragment> output)
    {
        int start = f.Start, end = f.Start + f.Length;
        int match = text.AsSpan(start, end - start).IndexOf(special, StringComparison.Ordinal);
        if (match < 0) return false;
        while (match >= 0)
        {
            match += start;
            int leftLength = match - start;
            if ((attr & TokenAttributes.LStrip) != 0)
                while (leftLength > 0 && IsCSpace(text[start + leftLength - 1])) leftLength--;
            if (leftLength > 0) output.Add(new TextFragment(-1, start, leftLength));
            output.Add(new TextFragment(id, 0, 0));
            start = match + special.Length;
            if ((attr & TokenAttributes.RStrip) != 0)
                while (start < end && IsCSpace(text[start])) start++;
            match = start < end ? text.AsSpan(start, end - start).IndexOf(special, StringComparison.Ordinal) : -1;
        }
        if (start < end) output.Add(new TextFragment(-1, start, end - start));
        return true;
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
