using System.Globalization;
using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tokenizers;

/// <summary>
/// BERT WordPiece (<c>tokenizer.ggml.model = bert</c>) as llama.cpp's <c>llm_tokenizer_wpm</c>: lower-casing and accent
/// stripping, words split at whitespace and around punctuation and CJK ideographs, then greedy longest-match pieces
/// (word-initial pieces carry <c>▁</c> in the GGUF); a word with an unmatched position becomes UNK.
/// </summary>
internal sealed class WordPieceTokenizer : Tokenizer
{
    private readonly bool _lowercase;
    private readonly bool _stripAccents;

    public WordPieceTokenizer(GgufMetadata metadata) : base(CreateVocabulary(metadata))
    {
        _lowercase = metadata.GetBool("tokenizer.ggml.normalizer.lowercase", true);
        _stripAccents = metadata.GetBool("tokenizer.ggml.normalizer.strip_accents", _lowercase);
    }

    public override string Model => "bert";

    private static Vocabulary CreateVocabulary(GgufMetadata metadata)
    {
        var vocab = new Vocabulary(metadata, VocabularyKind.WordPiece)
        {
            AddSpacePrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix", false),
            AddBos = true,
            AddEos = false,
            AddSep = true,
            CleanSpaces = true,
        };
        vocab.Finish(metadata, bosDisabledByPre: false);
        return vocab;
    }

    private protected override void Encode(string text, List<TextFragment> fragments, bool addSpecial, List<int> output)
    {
        if (addSpecial && BosId >= 0) output.Add(BosId);
        foreach (var f in fragments)
        {
            if (f.IsToken) output.Add(f.Token);
            else foreach (var word in Words(text.AsSpan(f.Start, f.Length))) EncodeWord(word, output);
        }
        if (addSpecial && Vocabulary.SepId >= 0) output.Add(Vocabulary.SepId);
    }

    private void EncodeWord(string word, List<int> output)
    {
        string w = "▁" + word;
        int before = output.Count;
        int maxLen = Vocabulary.MaxTokenLength;
        for (int i = 0; i < w.Length; i++)
        {
            bool matched = false;
            for (int j = Math.Min(w.Length, i + maxLen + 1); j > i; j--)
            {
                int id = Vocabulary.Find(w.AsSpan(i, j - i));
                if (id < 0) continue;
                output.Add(id);
                matched = true;
                i = j - 1;
                break;
            }
            if (!matched)
            {
                // One unmatched position discards the whole word.
                output.RemoveRange(before, output.Count - before);
                break;
            }
        }
        // A word with no pieces is the unknown token; a vocabulary without one (a malformed file) drops the word rather
        // than emit an id outside the vocabulary.
        if (output.Count == before && Vocabulary.UnkId >= 0) output.Add(Vocabulary.UnkId);
    }

    /// <summary>llama.cpp's WPM pre-processing: normalise codepoints and cut words.</summary>
    private List<string> Words(ReadOnlySpan<char> text)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        void Finish()
        {
            if (current.Length > 0) words.Add(current.ToString());
            current.Clear();
        }
        foreach (var r in text.EnumerateRunes())
        {
            int cp = r.Value;
            if (_stripAccents) cp = UnicodeDecomposition.FirstCodepoint(cp);
            if (UnicodeClasses.IsWhitespace(cp))
            {
                Finish();
                continue;
            }
            var category = CharUnicodeInfo.GetUnicodeCategory(cp);
            if (cp == 0 || cp == 0xFFFD || category is UnicodeCategory.Control or UnicodeCategory.Format
                    or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse) continue;
            if (_stripAccents && category is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark) continue;
            var rune = new Rune(cp);
            string s = (_lowercase ? Rune.ToLowerInvariant(rune) : rune).ToString();
            char collapsed = UnicodeClasses.Collapse(cp);
            bool punct = cp < 128 ? char.IsAsciiLetterOrDigit((char)cp) == false && cp > 32 && cp != 127 : collapsed == UnicodeClasses.Punctuation;
            if (punct || IsChinese(cp))
            {
                Finish();
                words.Add(s);
            }
            else current.Append(s);
        }
        Finish();
        return words;
    }

    private static bool IsChinese(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B920 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
