using System.Buffers;
using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tokenizers;

/// <summary>
/// Byte-level BPE (<c>tokenizer.ggml.model = gpt2</c>) as llama.cpp's <c>llm_tokenizer_bpe</c>: the pre-tokenizer of
/// <c>tokenizer.ggml.pre</c> splits text into words, each word's UTF-8 bytes start as one symbol per byte, and the
/// adjacent pair with the lowest merge rank (ties: leftmost) merges until none is left.
/// </summary>
// Own, not Microsoft.ML.Tokenizers 2.0.1: fed this vocab its BpeTokenizer matched 48/58 Qwen3 cases (whitespace runs, added tokens) and loaded in 1.6 s.
internal sealed class BpeTokenizer : Tokenizer
{
    private const int CacheLimit = 1 << 16;
    private const int LinearMergeLimit = 96;

    private readonly PreTokenizer _pre;
    private readonly PairTable _merges; // (left id, right id) → (rank, merged id)
    private readonly int[] _byteTokens = new int[256];
    private readonly bool _ignoreMerges;
    // Per-thread word caches: plain dictionaries hash spans faster than a shared concurrent one, and need no locks.
    private readonly ThreadLocal<Dictionary<string, int[]>> _caches = new(() => new Dictionary<string, int[]>(StringComparer.Ordinal));

    public override string Model => "gpt2";

    /// <summary>The <c>tokenizer.ggml.pre</c> value in use ("" when the GGUF has none, which llama.cpp treats as "default").</summary>
    public string Pre { get; }

    public int MergeCount => _merges.Count;

    private static readonly HashSet<string> KeepSpaces =
    [
        "deepseek-llm", "deepseek-coder", "deepseek-v3", "command-r", "qwen2", "deepseek-r1-qwen", "poro-chat", "viking", "tekken",
        "smollm", "chameleon", "gpt-4o", "llama4", "superbpe", "trillion", "granite-docling", "bailingmoe", "seed-coder", "hunyuan",
        "hunyuan-dense", "kimi-k2", "grok-2", "minimax-m2",
    ];

    private static readonly HashSet<string> Llama3Family = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"];

    public BpeTokenizer(GgufMetadata metadata) : this(metadata, metadata.GetStringOrNull("tokenizer.ggml.pre") ?? "") { }

    private BpeTokenizer(GgufMetadata metadata, string pre) : base(CreateVocabulary(metadata, pre))
    {
        Pre = pre;
        _pre = PreTokenizer.For(pre);
        _ignoreMerges = Llama3Family.Contains(pre);
        for (int b = 0; b < 256; b++) _byteTokens[b] = Vocabulary.Find(ByteLevel.CharOf((byte)b).ToString());
        _merges = LoadMerges(metadata, Vocabulary, pre);
    }

    private static Vocabulary CreateVocabulary(GgufMetadata metadata, string pre)
    {
        PreTokenizer.For(pre); // fail on an unknown pre before reading the vocabulary
        var vocab = new Vocabulary(metadata, VocabularyKind.BytePairEncoding)
        {
            AddSpacePrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix", false),
            CleanSpaces = !KeepSpaces.Contains(pre),
            AddBos = Llama3Family.Contains(pre) || pre is "tekken" or "chameleon",
            AddEos = false,
        };
        vocab.Finish(metadata, bosDisabledByPre: pre is "glm4" or "chatglm-bpe");
        return vocab;
    }

    private static PairTable LoadMerges(GgufMetadata metadata, Vocabulary vocab, string pre)
    {
        if (!metadata.Contains("tokenizer.ggml.merges"))
        {
            if (pre == "kimi-k2") return new PairTable(0);
            throw new GgufMetadataException("cannot find tokenizer merges (tokenizer.ggml.merges) in the model file");
        }
        var merges = metadata.GetStringArray("tokenizer.ggml.merges");
        // Resolving 150k merges to ids is three lookups each: done in parallel chunks, inserted in rank order after.
        var resolved = new long[merges.Length];
        var merged = new int[merges.Length];
        Parallel.For(0, (merges.Length + 8191) / 8192, chunk =>
        {
            Span<char> joined = stackalloc char[256];
            int end = Math.Min(merges.Length, (chunk + 1) * 8192);
            for (int rank = chunk * 8192; rank < end; rank++)
            {
                resolved[rank] = -1;
                string m = merges[rank];
                int space = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
                if (space < 0) continue;
                var left = m.AsSpan(0, space);
                var right = m.AsSpan(space + 1);
                int l = vocab.Find(left), r = vocab.Find(right);
                if (l < 0 || r < 0) continue;
                int id;
                if (left.Length + right.Length <= joined.Length)
                {
                    left.CopyTo(joined);
                    right.CopyTo(joined[left.Length..]);
                    id = vocab.Find(joined[..(left.Length + right.Length)]);
                }
                else id = vocab.Find(string.Concat(left, right));
                // A merge whose result is not a token could never be emitted as one; llama.cpp would drop it at output too.
                if (id < 0) continue;
                resolved[rank] = ((long)l << 32) | (uint)r;
                merged[rank] = id;
            }
        });
        var table = new PairTable(merges.Length);
        for (int rank = 0; rank < merges.Length; rank++)
            if (resolved[rank] >= 0) table.TryAdd((int)(resolved[rank] >> 32), (int)resolved[rank], rank, merged[rank]);
        return table;
    }

    private protected override void Encode(string text, List<TextFragment> fragments, bool addSpecial, List<int> output)
    {
        if (addSpecial && AddBos) output.Add(BosId);
        var words = new List<(int Start, int Length)>();
        var cache = _caches.Value!;
        var lookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var f in fragments)
        {
            if (f.IsToken)
            {
                output.Add(f.Token);
                continue;
            }
            words.Clear();
            _pre.Split(text, f.Start, f.Length, words);
            foreach (var (s, l) in words) EncodeWord(text.AsSpan(s, l), cache, lookup, output);
        }
        if (addSpecial && AddEos) output.Add(EosId);
    }

    private void EncodeWord(ReadOnlySpan<char> word, Dictionary<string, int[]> cache,
        Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> lookup, List<int> output)
    {
        if (lookup.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = Merge(word);
        output.AddRange(ids);
        // Bounded: start over rather than track recency, common words come back within a few lines.
        if (cache.Count >= CacheLimit) cache.Clear();
        lookup.TryAdd(word, ids);
    }

    private bool TryPair(int left, int right, out int rank, out int merged)
    {
        if (left >= 0 && right >= 0 && _merges.TryGet(left, right, out rank, out merged)) return true;
        rank = int.MaxValue;
        merged = -1;
        return false;
    }

    /// <summary>BPE over one word's bytes.</summary>
    private int[] Merge(ReadOnlySpan<char> word)
    {
        int maxBytes = Encoding.UTF8.GetMaxByteCount(word.Length);
        byte[]? rented = null;
        Span<byte> bytes = maxBytes <= 512 ? stackalloc byte[512] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            int n = Encoding.UTF8.GetBytes(word, bytes);
            bytes = bytes[..n];
            if (_ignoreMerges)
            {
                // llama3-style: a word that is itself a token is taken whole.
                Span<char> mapped = n <= 256 ? stackalloc char[n] : new char[n];
                for (int i = 0; i < n; i++) mapped[i] = ByteLevel.CharOf(bytes[i]);
                int whole = Vocabulary.Find(mapped);
                if (whole >= 0) return [whole];
            }
            if (n == 1) return _byteTokens[bytes[0]] >= 0 ? [_byteTokens[bytes[0]]] : [];
            return n <= LinearMergeLimit ? MergeLinear(bytes) : MergeWithQueue(bytes);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Short words: scan for the best pair each step (no queue, no allocation besides the result).</summary>
    private int[] MergeLinear(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        Span<int> ids = stackalloc int[n];
        Span<int> next = stackalloc int[n];
        Span<int> prev = stackalloc int[n];
        Span<int> rank = stackalloc int[n];
        Span<int> merged = stackalloc int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = _byteTokens[bytes[i]];
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        for (int i = 0; i < n - 1; i++) TryPair(ids[i], ids[i + 1], out rank[i], out merged[i]);
        rank[n - 1] = int.MaxValue;
        while (true)
        {
            int best = int.MaxValue, at = -1;
            for (int i = 0; i != -1; i = next[i])
                if (rank[i] < best)
                {
                    best = rank[i];
                    at = i;
                }
            if (at < 0) break;
            int right = next[at];
            ids[at] = merged[at];
            next[at] = next[right];
            if (next[right] >= 0) prev[next[right]] = at;
            if (next[at] >= 0) TryPair(ids[at], ids[next[at]], out rank[at], out merged[at]);
            else rank[at] = int.MaxValue;
            if (prev[at] >= 0) TryPair(ids[prev[at]], ids[at], out rank[prev[at]], out merged[prev[at]]);
        }
        return Collect(ids, next);
    }

    /// <summary>Long words (whitespace runs, base64): llama.cpp's priority queue of pairs, ordered by rank then position.</summary>
    private int[] MergeWithQueue(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        var ids = new int[n];
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = _byteTokens[bytes[i]];
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        var queue = new PriorityQueue<(int Left, int Right, int LeftId, int RightId, int Merged), long>();
        void Add(int left, int right)
        {
            if (left < 0 || right < 0 || !TryPair(ids[left], ids[right], out int r, out int m)) return;
            queue.Enqueue((left, right, ids[left], ids[right], m), ((long)r << 32) | (uint)left);
        }
        for (int i = 0; i + 1 < n; i++) Add(i, i + 1);
        while (queue.TryDequeue(out var p, out _))
        {
            // Stale when either side has merged since the pair was queued.
            if (ids[p.Left] != p.LeftId || ids[p.Right] != p.RightId || next[p.Left] != p.Right) continue;
            ids[p.Left] = p.Merged;
            ids[p.Right] = int.MinValue;
            next[p.Left] = next[p.Right];
            if (next[p.Right] >= 0) prev[next[p.Right]] = p.Left;
            Add(prev[p.Left], p.Left);
            Add(p.Left, next[p.Left]);
        }
        return Collect(ids, next);
    }

    private static int[] Collect(ReadOnlySpan<int> ids, ReadOnlySpan<int> next)
    {
        int valid = 0;
        for (int i = 0; i != -1; i = next[i]) if (ids[i] >= 0) valid++;
        var result = new int[valid];
        int k = 0;
        // Bytes without a token of their own are dropped, as llama.cpp does.
        for (int i = 0; i != -1; i = next[i]) if (ids[i] >= 0) result[k++] = ids[i];
        return result;
    }
}
