using System.Runtime.CompilerServices;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Constraints;

/// <summary>
/// A vocabulary's token bytes as a trie in depth-first order, in flat arrays: a mask is one pass over the nodes
/// that skips a whole subtree the moment the automaton refuses its first byte, so tokens that share a refused prefix
/// cost nothing. Control and unknown tokens have no text and are never allowed as text; end-of-generation tokens are
/// allowed exactly when the grammar may end. Built once per vocabulary.
/// </summary>
public sealed class TokenTrie
{
    private static readonly ConditionalWeakTable<Vocabulary, TokenTrie> Cache = new();

    internal readonly byte[] NodeByte;
    internal readonly int[] NodeDepth;
    internal readonly int[] SubtreeEnd;
    /// <summary>The first token whose bytes end at a node, or -1; further tokens with the same bytes follow <see cref="SameBytes"/>.</summary>
    internal readonly int[] NodeToken;
    internal readonly int[] SameBytes;
    private readonly byte[] _bytes;
    private readonly int[] _offsets;

    public int VocabSize { get; }
    public int NodeCount => NodeByte.Length;
    public int MaxDepth { get; }
    public IReadOnlyList<int> EndOfGeneration { get; }
    /// <summary>ulongs in a mask over this vocabulary.</summary>
    public int MaskLength => (VocabSize + 63) >> 6;

    public static TokenTrie For(Vocabulary vocabulary) => Cache.GetValue(vocabulary, v =>
        new TokenTrie(v.Count, id => v.Piece(id, renderSpecial: false).ToArray(), v.EndOfGenerationIds));

    /// <param name="tokenBytes">The text bytes of each token; empty means "never text" (control tokens).</param>
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

        var ids = Enumerable.Range(0, vocabSize).Where(id => _offsets[id + 1] > _offsets[id]).ToArray();
        Array.Sort(ids, (a, b) => Bytes(a).SequenceCompareTo(Bytes(b)));

        var nodeByte = new List<byte> { 0 };
        var nodeDepth = new List<int> { 0 };
        var nodeToken = new List<int> { -1 };
        var subtreeEnd = new List<int> { 0 };
        SameBytes = new int[vocabSize];
        Array.Fill(SameBytes, -1);
        var path = new List<int> { 0 }; // path[d] = node at depth d
        ReadOnlySpan<byte> previous = [];
        int lastId = -1;
        foreach (int id in ids)
        {
            var bytes = Bytes(id);
            if (bytes.SequenceEqual(previous))
            {
                SameBytes[lastId] = id;
                lastId = id;
                continue;
            }
            int common = bytes.CommonPrefixLength(previous);
            while (path.Count - 1 > common) // close the nodes past the common prefix
            {
                subtreeEnd[path[^1]] = nodeByte.Count;
                path.RemoveAt(path.Count - 1);
            }
            for (int d = common; d < bytes.Length; d++)
            {
                nodeByte.Add(bytes[d]);
                nodeDepth.Add(d + 1);
                nodeToken.Add(-1);
                subtreeEnd.Add(0);
                path.Add(nodeByte.Count - 1);
            }
            nodeToken[path[^1]] = id;
            previous = bytes;
            lastId = id;
            MaxDepth = Math.Max(MaxDepth, bytes.Length);
        }
        foreach (int node in path) subtreeEnd[node] = nodeByte.Count;
        NodeByte = [.. nodeByte];
        NodeDepth = [.. nodeDepth];
        NodeToken = [.. nodeToken];
        SubtreeEnd = [.. subtreeEnd];
    }

    /// <summary>The text bytes of a token (empty for control and end-of-generation tokens).</summary>
    public ReadOnlySpan<byte> Bytes(int id) => _bytes.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]);

    public bool IsEndOfGeneration(int id) => EndOfGeneration.Contains(id);
}
