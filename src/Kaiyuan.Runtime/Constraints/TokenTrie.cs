using System.Runtime.CompilerServices;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Constraints;

/// <summary>
/// A vocabulary's token bytes as a trie in depth-first order, in flat arrays: a mask is one pass over the nodes
/// that skips a whole subtree the moment the automaton refuses its first byte, so tokens that share a refused prefix
/// cost nothing. Unknown tokens are never allowed; control tokens only where a grammar names them (<see cref="GrammarNode.SpecialToken"/>); end-of-generation tokens are
/// allowed exactly when the grammar may end. Built once per vocabulary.
/// </summary>
internal sealed class TokenTrie
{
    private static readonly ConditionalWeakTable<Vocabulary, TokenTrie> Cache = new();

    /// <summary>Plain tokens longer than this (in characters) are walked like any other token.</summary>
    public const int MaxPlainChars = 16;

    private readonly byte[] _bytes;
    private readonly int[] _offsets;

    public int VocabSize { get; }
    public IReadOnlyList<int> EndOfGeneration { get; }
    /// <summary>ulongs in a mask over this vocabulary.</summary>
    public int MaskLength => (VocabSize + 63) >> 6;
    /// <summary>Every token with text.</summary>
    internal Nodes All { get; }
    /// <summary>Every token with text but the plain ones of at most <see cref="MaxPlainChars"/> characters.</summary>
    internal Nodes Rest { get; }
    /// <summary>
    /// PlainUpTo[k]: the tokens made only of whole characters that a JSON string holds unescaped (no quote, backslash
    /// or control character) with at most k of them. Inside a string body most of the vocabulary is such tokens, and
    /// a state that takes any such character the same way takes all of them at once: the mask walk then only visits
    /// the rest of the trie.
    /// </summary>
    internal ulong[][] PlainUpTo { get; }
    /// <summary>The tokens of <see cref="PlainUpTo"/>[<see cref="MaxPlainChars"/>] by their first byte.</summary>
    internal int[][] PlainByFirstByte { get; }

    public static TokenTrie For(Vocabulary vocabulary) => Cache.GetValue(vocabulary, v =>
        new TokenTrie(v.Count, id => Spelling(v, id), v.EndOfGenerationIds));

    /// <summary>A token's text; a control token's text behind <see cref="GrammarNode.SpecialTokenPrefix"/>; unknown: none.</summary>
    private static byte[] Spelling(Vocabulary v, int id)
    {
        var text = v.Piece(id, renderSpecial: false);
        // 0xFF never occurs in UTF-8 text: a byte token holding it could only spell a control token's marker.
        if (text.Contains(GrammarNode.SpecialTokenPrefix)) return [];
        if (!text.IsEmpty) return text.ToArray();
        if ((v.Attributes(id) & TokenAttributes.Control) == 0) return [];
        var special = v.Piece(id, renderSpecial: true);
        return special.IsEmpty ? [] : [GrammarNode.SpecialTokenPrefix, .. special];
    }

    /// <param name="vocabSize">Tokens in the vocabulary; ids run from 0 to <paramref name="vocabSize"/> - 1.</param>
    /// <param name="tokenBytes">The text bytes of each token; empty means "never text" (control tokens).</param>
    /// <param name="endOfGeneration">The end-of-generation token ids (ids outside the vocabulary are dropped); their bytes are not in the trie.</param>
    public TokenTrie(int vocabSize, Func<int, byte[]> tokenBytes, IEnumerable<int> endOfGeneration)
    {
        VocabSize = vocabSize;
        EndOfGeneration = endOfGeneration.Where(id => (uint)id < (uint)vocabSize).Distinct().Order().ToArray();
        _offsets = new int[vocabSize + 1];
        var blob = new List<byte>(vocabSize * 8);
        var eog = EndOfGeneration.ToHashSet();
        for (int id = 0; id < vocabSize; id++)
        {
            _offsets[id] = blob.Count;
            if (!eog.Contains(id)) blob.AddRange(tokenBytes(id));
        }
        _offsets[vocabSize] = blob.Count;
        _bytes = [.. blob];

        // A node keeps its depth in 16 bits: a (malformed) token longer than that is never allowed rather than mis-walked.
        var withText = Enumerable.Range(0, vocabSize).Where(id => _offsets[id + 1] > _offsets[id] && _offsets[id + 1] - _offsets[id] <= ushort.MaxValue).ToArray();
        All = new Nodes(this, withText);
        PlainUpTo = new ulong[MaxPlainChars + 1][];
        for (int k = 0; k <= MaxPlainChars; k++) PlainUpTo[k] = new ulong[MaskLength];
        var rest = new List<int>();
        var byFirstByte = Enumerable.Range(0, 256).Select(_ => new List<int>()).ToArray();
        foreach (int id in withText)
        {
            int chars = PlainChars(Bytes(id));
            if (chars < 1 || chars > MaxPlainChars) { rest.Add(id); continue; }
            for (int k = chars; k <= MaxPlainChars; k++) PlainUpTo[k][id >> 6] |= 1UL << id;
            byFirstByte[Bytes(id)[0]].Add(id);
        }
        PlainByFirstByte = [.. byFirstByte.Select(l => l.ToArray())];
        Rest = new Nodes(this, [.. rest]);
    }

    /// <summary>The characters of a token made only of whole, unescaped-in-JSON characters; -1 otherwise.</summary>
    private static int PlainChars(ReadOnlySpan<byte> bytes)
    {
        int chars = 0;
        while (!bytes.IsEmpty)
        {
            if (System.Text.Rune.DecodeFromUtf8(bytes, out var rune, out int used) != System.Buffers.OperationStatus.Done) return -1;
            if (rune.Value < 0x20 || rune.Value == '"' || rune.Value == '\\') return -1;
            bytes = bytes[used..];
            chars++;
        }
        return chars;
    }

    /// <summary>A set of tokens as a trie in depth-first order, one packed record per node.</summary>
    internal sealed class Nodes
    {
        /// <summary>One node's fields side by side, for the mask walk's single pass (12 bytes a node).</summary>
        internal struct Node
        {
            /// <summary>The index just past this node's subtree: where the walk goes when it refuses this node.</summary>
            public int SubtreeEnd;
            /// <summary>The first token whose bytes end here, or -1; more with the same bytes follow <see cref="SameBytes"/>.</summary>
            public int Token;
            public ushort Depth;
            public byte Byte;
        }

        /// <summary>Node 0 is the root (no byte).</summary>
        public readonly Node[] Items;
        public readonly int[] SameBytes;
        public readonly int MaxDepth;

        public Nodes(TokenTrie trie, int[] ids)
        {
            ids = (int[])ids.Clone();
            Array.Sort(ids, (a, b) => trie.Bytes(a).SequenceCompareTo(trie.Bytes(b)));
            var nodes = new List<Node> { new() { Token = -1 } };
            SameBytes = new int[trie.VocabSize];
            Array.Fill(SameBytes, -1);
            var path = new List<int> { 0 }; // path[d] = the node at depth d
            ReadOnlySpan<byte> previous = [];
            int lastId = -1;
            foreach (int id in ids)
            {
                var bytes = trie.Bytes(id);
                if (lastId >= 0 && bytes.SequenceEqual(previous))
                {
                    SameBytes[lastId] = id;
                    lastId = id;
                    continue;
                }
                int common = bytes.CommonPrefixLength(previous);
                while (path.Count - 1 > common) Close(); // the nodes past the common prefix
                for (int d = common; d < bytes.Length; d++)
                {
                    nodes.Add(new Node { Token = -1, Depth = (ushort)(d + 1), Byte = bytes[d] });
                    path.Add(nodes.Count - 1);
                }
                var last = nodes[path[^1]];
                last.Token = id;
                nodes[path[^1]] = last;
                previous = bytes;
                lastId = id;
                MaxDepth = Math.Max(MaxDepth, bytes.Length);
            }
            while (path.Count > 0) Close();
            Items = [.. nodes];

            void Close()
            {
                var node = nodes[path[^1]];
                node.SubtreeEnd = nodes.Count;
                nodes[path[^1]] = node;
                path.RemoveAt(path.Count - 1);
            }
        }
    }

    /// <summary>The text bytes of a token (empty for control and end-of-generation tokens).</summary>
    public ReadOnlySpan<byte> Bytes(int id) => _bytes.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]);

    public bool IsEndOfGeneration(int id) => EndOfGeneration.Contains(id);
}
