namespace Kaiyuan.Constraints;

/// <summary>
/// Compiled grammars by (kind, source, vocabulary), least recently used first out: a service that sees the same
/// schema on every request compiles it once, and the masks it computed stay warm for the next request.
/// </summary>
internal static class GrammarCache
{
    public const int Capacity = 64;
    private static readonly LinkedList<(Key Key, CompiledGrammar Grammar)> Lru = new();
    private static readonly Dictionary<Key, LinkedListNode<(Key, CompiledGrammar)>> Entries = [];
    private static readonly object Lock = new();

    private readonly record struct Key(string Kind, string Source, TokenTrie Tokens);

    /// <summary>The cached grammar, or <paramref name="build"/>'s compiled for <paramref name="tokens"/> with its first
    /// mask computed, so that a grammar too large to run fails here, before any output, not in a decode loop.
    /// Compile errors (<see cref="GrammarException"/>) are not cached.</summary>
    public static CompiledGrammar Get(string kind, string source, TokenTrie tokens, Func<Grammar> build)
    {
        var key = new Key(kind, source, tokens);
        lock (Lock)
        {
            if (Entries.TryGetValue(key, out var hit))
            {
                Lru.Remove(hit);
                Lru.AddFirst(hit);
                return hit.Value.Item2;
            }
        }
        var compiled = new CompiledGrammar(ByteAutomaton.Compile(build()), tokens);
        compiled.FillMask(compiled.Automaton.Start, new ulong[tokens.MaskLength]);
        lock (Lock)
        {
            if (Entries.TryGetValue(key, out var raced)) return raced.Value.Item2;
            Entries[key] = Lru.AddFirst((key, compiled));
            if (Lru.Count > Capacity)
            {
                Entries.Remove(Lru.Last!.Value.Key);
                Lru.RemoveLast();
            }
        }
        return compiled;
    }
}
