namespace Kaiyuan.Constraints;

/// <summary>
/// An immutable set of Unicode scalar values as sorted, disjoint, non-adjacent inclusive ranges. Surrogates
/// (U+D800..U+DFFF) are never members: they cannot be written as UTF-8.
/// </summary>
internal sealed class CodepointSet : IEquatable<CodepointSet>
{
    public const int MaxCodepoint = 0x10FFFF;
    private readonly (int Lo, int Hi)[] _ranges;

    private CodepointSet((int, int)[] normalized) => _ranges = normalized;

    public static CodepointSet None { get; } = new([]);
    public static CodepointSet All { get; } = FromRanges([(0, MaxCodepoint)]);

    public IReadOnlyList<(int Lo, int Hi)> Ranges => _ranges;
    public bool IsEmpty => _ranges.Length == 0;

    public static CodepointSet Single(int c) => FromRanges([(c, c)]);
    public static CodepointSet Range(int lo, int hi) => FromRanges([(lo, hi)]);
    public static CodepointSet Of(string chars)
    {
        var list = new List<(int, int)>();
        foreach (var rune in chars.EnumerateRunes()) list.Add((rune.Value, rune.Value));
        return FromRanges(list);
    }

    /// <summary>Sorts, merges and clips the ranges (surrogates and values outside 0..U+10FFFF removed).</summary>
    public static CodepointSet FromRanges(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var list = new List<(int Lo, int Hi)>();
        foreach (var (lo0, hi0) in ranges)
        {
            int lo = Math.Max(lo0, 0), hi = Math.Min(hi0, MaxCodepoint);
            if (lo > hi) continue;
            // Cut out the surrogate block.
            if (lo < 0xD800 && hi >= 0xD800) { list.Add((lo, 0xD7FF)); lo = 0xE000; }
            else if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
            if (lo <= hi) list.Add((lo, hi));
        }
        list.Sort((a, b) => a.Lo.CompareTo(b.Lo));
        var merged = new List<(int, int)>(list.Count);
        foreach (var (lo, hi) in list)
        {
            if (merged.Count > 0 && lo <= merged[^1].Item2 + 1)
                merged[^1] = (merged[^1].Item1, Math.Max(merged[^1].Item2, hi));
            else merged.Add((lo, hi));
        }
        return new CodepointSet([.. merged]);
    }

    public bool Contains(int c)
    {
        int lo = 0, hi = _ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (c < _ranges[mid].Lo) hi = mid - 1;
            else if (c > _ranges[mid].Hi) lo = mid + 1;
            else return true;
        }
        return false;
    }

    public CodepointSet Union(CodepointSet other) => FromRanges(_ranges.Concat(other._ranges));

    public CodepointSet Complement()
    {
        var result = new List<(int, int)>();
        int next = 0;
        foreach (var (lo, hi) in _ranges)
        {
            if (lo > next) result.Add((next, lo - 1));
            next = hi + 1;
        }
        if (next <= MaxCodepoint) result.Add((next, MaxCodepoint));
        return FromRanges(result);
    }

    public CodepointSet Intersect(CodepointSet other) => Complement().Union(other.Complement()).Complement();

    public CodepointSet Except(CodepointSet other) => Intersect(other.Complement());

    public bool Equals(CodepointSet? other) => other is not null && _ranges.AsSpan().SequenceEqual(other._ranges);
    public override bool Equals(object? obj) => Equals(obj as CodepointSet);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var r in _ranges) h.Add(r);
        return h.ToHashCode();
    }

    public override string ToString() =>
        "[" + string.Join("", _ranges.Select(r => r.Lo == r.Hi ? Show(r.Lo) : Show(r.Lo) + "-" + Show(r.Hi))) + "]";

    private static string Show(int c) => c is >= 0x21 and < 0x7F ? ((char)c).ToString() : $"\\u{{{c:X}}}";
}
