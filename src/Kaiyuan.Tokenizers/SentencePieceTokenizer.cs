using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tokenizers;

/// <summary>
/// SentencePiece BPE (<c>tokenizer.ggml.model = llama</c>) as llama.cpp's <c>llm_tokenizer_spm</c>: spaces become
/// <c>▁</c>, characters are merged pairwise by the highest token score (ties: leftmost), and pieces that are not
/// tokens fall back to <c>&lt;0xNN&gt;</c> byte tokens.
/// </summary>
internal sealed class SentencePieceTokenizer : Tokenizer
{
    private readonly int[] _byteTokens = new int[256];

    public SentencePieceTokenizer(GgufMetadata metadata) : this(CreateVocabulary(metadata)) { }

    private SentencePieceTokenizer(Vocabulary vocab) : base(vocab)
    {
        for (int b = 0; b < 256; b++)
        {
            int id = vocab.Find($"<0x{b:X2}>");
            if (id < 0 && b < 0x80) id = vocab.Find(((char)b).ToString());
            _byteTokens[b] = id >= 0 ? id : vocab.UnkId;
        }
    }

    public override string Model => "llama";

    private static Vocabulary CreateVocabulary(GgufMetadata metadata)
    {
        var vocab = new Vocabulary(metadata, VocabularyKind.SentencePiece)
        {
            AddSpacePrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix", true),
            AddBos = true,
            AddEos = false,
            CleanSpaces = false,
        };
        vocab.Finish(metadata, bosDisabledByPre: false);
        return vocab;
    }

    private protected override void Encode(string text, List<TextFragment> fragments, bool addSpecial, List<int> output)
    {
        bool previousWasSpecial = true; // the first text gets the space prefix too
        if (addSpecial && AddBos) output.Add(BosId);
        var session = new Session(this);
        foreach (var f in fragments)
        {
            if (f.IsToken)
            {
                output.Add(f.Token);
                previousWasSpecial = true;
                continue;
            }
            bool prefix = Vocabulary.AddSpacePrefix && previousWasSpecial;
            var escaped = new char[f.Length + (prefix ? 1 : 0)];
            int k = 0;
            if (prefix) escaped[k++] = '▁';
            foreach (char c in text.AsSpan(f.Start, f.Length)) escaped[k++] = c == ' ' ? '▁' : c;
            session.Tokenize(escaped, output);
            previousWasSpecial = false;
        }
        if (addSpecial && AddEos) output.Add(EosId);
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    private sealed class Session(SentencePieceTokenizer owner)
    {
        private readonly Vocabulary _vocab = owner.Vocabulary;
        private Symbol[] _symbols = new Symbol[64];
        private char[] _text = [];
        // Highest score first, then the leftmost pair, like llama.cpp's bigram comparator.
        private readonly PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)> _queue = new(BigramOrder.Instance);

        public void Tokenize(char[] text, List<int> output)
        {
            _text = text;
            int count = 0;
            for (int i = 0; i < text.Length;)
            {
                int len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
                if (count == _symbols.Length) Array.Resize(ref _symbols, count * 2);
                _symbols[count] = new Symbol { Start = i, Length = len, Prev = count - 1, Next = i + len == text.Length ? -1 : count + 1 };
                count++;
                i += len;
            }
            if (count == 0) return;

            _queue.Clear();
            for (int i = 1; i < count; i++) TryAddBigram(i - 1, i);
            while (_queue.TryDequeue(out var bigram, out _))
            {
                ref var left = ref _symbols[bigram.Left];
                ref var right = ref _symbols[bigram.Right];
                // Skip pairs made stale by an earlier merge.
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Size) continue;
                left.Length += right.Length;
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0) _symbols[right.Next].Prev = bigram.Left;
                TryAddBigram(left.Prev, bigram.Left);
                TryAddBigram(bigram.Left, left.Next);
            }

            Span<byte> utf8 = stackalloc byte[8];
            for (int i = 0; i != -1; i = _symbols[i].Next)
            {
                var s = _symbols[i];
                var piece = _text.AsSpan(s.Start, s.Length);
                int id = _vocab.Find(piece);
                if (id >= 0)
                {
                    output.Add(id);
                    continue;
                }
                int n = Encoding.UTF8.GetBytes(piece, utf8);
                for (int j = 0; j < n; j++)
                    if (owner._byteTokens[utf8[j]] >= 0) output.Add(owner._byteTokens[utf8[j]]);
            }
        }

        private void TryAddBigram(int left, int right)
        {
            if (left < 0 || right < 0) return;
            int size = _symbols[left].Length + _symbols[right].Length;
            int id = _vocab.Find(_text.AsSpan(_symbols[left].Start, size));
            if (id < 0) return;
            _queue.Enqueue((left, right, size), (_vocab.Score(id), left));
        }
    }

    private sealed class BigramOrder : IComparer<(float Score, int Left)>
    {
        public static readonly BigramOrder Instance = new();

        public int Compare((float Score, int Left) a, (float Score, int Left) b)
        {
            int c = b.Score.CompareTo(a.Score);
            return c != 0 ? c : a.Left.CompareTo(b.Left);
        }
    }
}
