using System.Runtime.InteropServices;

namespace Kaiyuan.Inference;

/// <summary>Counters of a <see cref="PrefixCache"/>, for metrics and benchmarks.</summary>
internal sealed record PrefixCacheStats(int UsedBlocks, int CachedBlocks, int FreeBlocks, int CapacityBlocks, long ResidentBytes,
    long HitTokens, long Evictions, long LoadedTokens = 0);

/// <summary>
/// Automatic prefix caching over a paged <see cref="KvCache"/>: blocks are reference-counted and shared read-only
/// between sequences. A full block is known by its tokens and everything before them (a hash chain, checked token by
/// token), so a new sequence reuses every leading block some earlier sequence computed. Where the shared part ends inside
/// a block, the matching rows are copied into a block of its own (copy on write) and only the rest is computed. Blocks of
/// finished sequences stay cached, partial tail blocks included, until memory is needed: then the least recently used
/// go first, the deepest of a sequence before its head.
/// </summary>
/// <remarks>
/// A hybrid model's recurrent state cannot be rebuilt from rows, so for such a model a prefix is reused only up to the end
/// of a full block whose state was kept (<see cref="KeepState"/>: the scheduler keeps it where a prompt's last full block
/// ends and, for a generation, at its latest block boundary), as llama.cpp's and vLLM's hybrid prefix caches do.
/// Not thread-safe: the scheduler loop owns it. Sequences are the cache's block tables.
/// </remarks>
internal sealed class PrefixCache
{
    private const ulong Root = 0x9E3779B97F4A7C15UL;
    private const int T = KvCache.BlockTokens;

    private readonly KvCache _cache;
    private readonly int[] _refs;
    private readonly int[] _filled;
    private readonly ulong[] _key, _parent;
    private readonly int[][] _tokens;
    private readonly bool[] _registered;
    private readonly int[] _committed;
    private readonly Dictionary<ulong, int> _full = [];
    private readonly Dictionary<ulong, List<int>> _children = [];
    // Least-recently-used list of cached blocks (registered, unreferenced): head is evicted first.
    private readonly int[] _prev, _next;
    private int _head = -1, _tail = -1, _lruCount, _used;
    // Recurrent states kept at block boundaries, by the key of the block they end with; least recently used first.
    private readonly Dictionary<ulong, LinkedListNode<KeptState>> _states = [];
    private readonly LinkedList<KeptState> _stateOrder = new();

    private sealed record KeptState(ulong Key, int[] Tokens, float[] State);
    private long _hitTokens, _evictions, _loadedTokens;

    /// <param name="cache">The paged cache whose blocks this manages (nothing else may allocate from it).</param>
    /// <param name="enabled">False: blocks are still reference-counted, but nothing is kept or shared across sequences.</param>
    public PrefixCache(KvCache cache, bool enabled = true)
    {
        _cache = cache;
        Enabled = enabled;
        int n = cache.CapacityBlocks;
        _refs = new int[n];
        _filled = new int[n];
        _key = new ulong[n];
        _parent = new ulong[n];
        _tokens = new int[n][];
        _registered = new bool[n];
        _prev = new int[n];
        _next = new int[n];
        _committed = new int[cache.Sequences];
    }

    public KvCache Cache => _cache;
    public bool Enabled { get; }

    /// <summary>
    /// Prompts kept on disk (<c>--prompt-cache</c>): <see cref="Match"/> loads the full blocks the store holds beyond what
    /// memory has, and <see cref="Persist"/> offers finished prompts to it.
    /// </summary>
    public PromptCacheStore? Store
    {
        get;
        init
        {
            if (value is not null && !value.Fits(_cache)) throw new ArgumentException("the prompt cache store's row type or widths differ from the KV cache's");
            field = value;
        }
    }

    /// <summary>Prompt tokens whose rows were loaded from the <see cref="Store"/> (included in the hit tokens).</summary>
    public long LoadedTokens => _loadedTokens;

    public PrefixCacheStats Stats => new(_used, _lruCount, _cache.FreeBlocks, _cache.CapacityBlocks, _cache.ResidentBytes, _hitTokens, _evictions, _loadedTokens);

    /// <summary>
    /// Fills an empty sequence's table with the cached blocks that <paramref name="tokens"/> begins with and returns how
    /// many leading tokens need no computing: full blocks in memory, then full blocks that the <see cref="Store"/> holds
    /// beyond them (read from disk), then the matching rows of a partial block. At least the last token is always left
    /// to compute (its logits are needed).
    /// </summary>
    public int Match(int sequence, IReadOnlyList<int> tokens)
    {
        var table = _cache.EnsureTable(sequence, KvCache.BlocksFor(tokens.Count));
        if (table.ContainsAnyExcept(-1)) throw new InvalidOperationException($"sequence {sequence} still holds blocks");
        _committed[sequence] = 0;
        if ((!Enabled && Store is null) || tokens.Count < 2) return 0;

        ulong parent = Root;
        int blocks = 0;
        while (Enabled && (blocks + 1) * T <= tokens.Count)
        {
            ulong key = Hash(parent, tokens, blocks * T);
            if (!_full.TryGetValue(key, out int b) || _parent[b] != parent || !SameTokens(b, tokens, blocks * T, T)) break;
            Ref(b);
            table[blocks++] = b;
            parent = key;
        }
        int limit = tokens.Count - 1, matched = blocks * T;
        if (_cache.Recurrent is { } recurrent) return MatchState(sequence, tokens, blocks, limit, recurrent);
        if (Store is not null && matched + T <= limit && LoadStored(sequence, tokens, blocks, limit / T) is var loaded && loaded > 0)
        {
            blocks += loaded;
            matched = blocks * T;
            parent = _key[table[blocks - 1]];
        }
        int source = -1, rows = 0;
        if (matched > limit)
        {
            // Every token is cached: the last block is recomputed from its final row on, in a copy of its own.
            source = table[--blocks];
            table[blocks] = -1;
            matched = blocks * T;
            rows = limit - matched;
            parent = blocks == 0 ? Root : _key[table[blocks - 1]];
        }
        else if (matched < limit && _children.TryGetValue(parent, out var children))
        {
            foreach (int c in children)
            {
                int common = CommonPrefix(c, tokens, matched, limit - matched);
                if (common > rows) (source, rows) = (c, common);
            }
            if (source >= 0) Ref(source);
        }
        if (source >= 0)
        {
            if (rows > 0 && TryAllocate(out int copy))
            {
                _cache.CopyRows(source, copy, rows);
                table[blocks] = copy;
                matched += rows;
            }
            Unref(source);
        }
        _committed[sequence] = blocks;
        _hitTokens += matched;
        return matched;
    }

    /// <summary>
    /// Most recurrent states kept: two per sequence (a prompt's end and a generation's latest block boundary). Each is the
    /// model's whole per-sequence state (<see cref="RecurrentState.FloatsPerSequence"/> floats).
    /// </summary>
    public int MaxKeptStates => 2 * _cache.Sequences;

    /// <summary>
    /// A hybrid model's match: of the leading full blocks found, the deepest whose state was kept (and leaves the last
    /// token to compute) is where the sequence resumes; its state is restored and the blocks past it are let go.
    /// </summary>
    private int MatchState(int sequence, IReadOnlyList<int> tokens, int blocks, int limit, RecurrentState recurrent)
    {
        var table = _cache.Table(sequence);
        int keep = blocks;
        KeptState? kept = null;
        for (; keep > 0; keep--)
            if (keep * T <= limit && _states.TryGetValue(_key[table[keep - 1]], out var node) && SamePrefix(node.Value.Tokens, tokens))
            {
                kept = node.Value;
                _stateOrder.Remove(node);
                _stateOrder.AddLast(node);
                break;
            }
        for (int i = blocks - 1; i >= keep; i--)
        {
            Unref(table[i]);
            table[i] = -1;
        }
        if (kept is not null) recurrent.Restore(sequence, kept.State, keep * T);
        _committed[sequence] = keep;
        _hitTokens += keep * T;
        return keep * T;
    }

    private static bool SamePrefix(int[] prefix, IReadOnlyList<int> tokens)
    {
        if (prefix.Length > tokens.Count) return false;
        for (int i = 0; i < prefix.Length; i++)
            if (prefix[i] != tokens[i]) return false;
        return true;
    }

    /// <summary>
    /// Keeps a hybrid model's recurrent state of a sequence whose first <paramref name="length"/> tokens are computed and
    /// committed, <paramref name="length"/> ending a full block, so later sequences sharing those tokens resume there.
    /// <paramref name="replacing"/> (a key this returned before) is dropped first. Returns the state's key, 0 if none was kept.
    /// </summary>
    public ulong KeepState(int sequence, IReadOnlyList<int> tokens, int length, ulong replacing = 0)
    {
        if (!Enabled || _cache.Recurrent is not { } recurrent || length == 0 || length % T != 0 || length / T > _committed[sequence]) return 0;
        ulong key = _key[_cache.Table(sequence)[length / T - 1]];
        if (replacing != 0 && replacing != key && _states.Remove(replacing, out var old)) _stateOrder.Remove(old);
        if (_states.TryGetValue(key, out var node) && SamePrefix(node.Value.Tokens, tokens) && node.Value.Tokens.Length == length)
        {
            _stateOrder.Remove(node);
            _stateOrder.AddLast(node);
            return key;
        }
        if (node is not null)
        {
            _states.Remove(key);
            _stateOrder.Remove(node);
        }
        // At the limit the least recently used state makes room (its memory is reused).
        float[] buffer;
        if (_states.Count >= MaxKeptStates && _stateOrder.First is { } lru)
        {
            _stateOrder.RemoveFirst();
            _states.Remove(lru.Value.Key);
            buffer = lru.Value.State;
        }
        else buffer = new float[recurrent.FloatsPerSequence];
        recurrent.Save(sequence, buffer);
        var prefix = new int[length];
        for (int i = 0; i < length; i++) prefix[i] = tokens[i];
        _states[key] = _stateOrder.AddLast(new KeptState(key, prefix, buffer));
        return key;
    }

    /// <summary>
    /// Gives a sequence blocks for positions 0…<paramref name="length"/>−1, evicting cached blocks when the pool is out of
    /// free ones; false when even that is not enough (the blocks taken so far stay with the sequence).
    /// </summary>
    public bool Reserve(int sequence, int length)
    {
        if (length > _cache.ContextLength) throw new ContextOverflowException($"{length} tokens exceed the context size of {_cache.ContextLength}");
        int need = KvCache.BlocksFor(length);
        var table = _cache.EnsureTable(sequence, need);
        for (int i = 0; i < need; i++)
        {
            if (table[i] >= 0) continue;
            if (!TryAllocate(out int b)) return false;
            table[i] = b;
        }
        return true;
    }

    /// <summary>Makes the sequence's blocks that are now full (its first <paramref name="length"/> tokens are computed) shareable.</summary>
    public void Commit(int sequence, IReadOnlyList<int> tokens, int length)
    {
        var table = _cache.Table(sequence);
        int full = length / T;
        for (int i = _committed[sequence]; i < full; i++) Publish(table, i, tokens);
        _committed[sequence] = Math.Max(_committed[sequence], full);
    }

    /// <summary>Gives full block <paramref name="index"/> of a table its key and, unless an equal block is cached already, makes it shareable.</summary>
    private void Publish(Span<int> table, int index, IReadOnlyList<int> tokens)
    {
        int b = table[index];
        ulong parent = index == 0 ? Root : _key[table[index - 1]];
        SetContent(b, parent, tokens, index * T, T);
        _key[b] = Hash(parent, tokens, index * T);
        if (Enabled && !_registered[b] && !_full.ContainsKey(_key[b]))
        {
            _full[_key[b]] = b;
            Register(b);
        }
    }

    /// <summary>
    /// Loads full blocks <paramref name="first"/>… (fewer than <paramref name="max"/>) of a sequence from the store into
    /// fresh blocks, published as if computed so later sequences find them in memory; returns how many.
    /// </summary>
    private int LoadStored(int sequence, IReadOnlyList<int> tokens, int first, int max)
    {
        if (Store!.Find(tokens, max) is not { } hit || hit.Blocks <= first) return 0;
        var table = _cache.Table(sequence);
        int taken = 0;
        while (first + taken < hit.Blocks && TryAllocate(out int b)) table[first + taken++] = b;
        int loaded = taken == 0 ? 0 : Store.Load(hit, first, table.Slice(first, taken), _cache);
        for (int i = first + loaded; i < first + taken; i++)
        {
            Unref(table[i]);
            table[i] = -1;
        }
        for (int i = first; i < first + loaded; i++) Publish(table, i, tokens);
        _loadedTokens += (long)loaded * T;
        return loaded;
    }

    /// <summary>
    /// Offers the full blocks of a sequence's prompt (its first <paramref name="length"/> tokens are computed) to the
    /// <see cref="Store"/>, which saves them if they are worth it; the file is written in the background.
    /// </summary>
    public bool Persist(int sequence, IReadOnlyList<int> prompt, int length)
    {
        // The store holds KV rows, not a hybrid model's recurrent state.
        if (Store is null || _cache.Recurrent is not null) return false;
        int blocks = Math.Min(length, prompt.Count) / T;
        return blocks >= PromptCacheStore.MinBlocks && Store.TrySave(_cache, _cache.Table(sequence)[..blocks], prompt);
    }

    /// <summary>
    /// Ends a sequence whose first <paramref name="length"/> tokens are computed: its blocks stay cached for later
    /// sequences (a partial tail block too), or go back to the pool when caching is off.
    /// </summary>
    public void Release(int sequence, IReadOnlyList<int> tokens, int length)
    {
        length = Math.Min(length, tokens.Count);
        Commit(sequence, tokens, length);
        var table = _cache.Table(sequence);
        int full = length / T, tail = length % T;
        if (Enabled && tail > 0 && full < table.Length && table[full] is var b && b >= 0 && _refs[b] == 1 && !_registered[b])
        {
            ulong parent = full == 0 ? Root : _key[table[full - 1]];
            if (!CoveredByChild(parent, tokens, full * T, tail))
            {
                SetContent(b, parent, tokens, full * T, tail);
                Register(b);
            }
        }
        // Deepest first, so the LRU list evicts a sequence's tail before its head.
        for (int i = table.Length - 1; i >= 0; i--)
        {
            if (table[i] < 0) continue;
            Unref(table[i]);
            table[i] = -1;
        }
        _committed[sequence] = 0;
    }

    private bool TryAllocate(out int block)
    {
        if (_cache.TryAllocate(out block))
        {
            _refs[block] = 1;
            _used++;
            return true;
        }
        if (_head < 0) return false;
        // Evict the least recently used cached block and hand it over as it is.
        block = _head;
        Unlink(block);
        Unregister(block);
        _evictions++;
        _refs[block] = 1;
        _used++;
        return true;
    }

    private void Ref(int block)
    {
        if (_refs[block]++ == 0)
        {
            Unlink(block);
            _used++;
        }
    }

    private void Unref(int block)
    {
        if (--_refs[block] > 0) return;
        _used--;
        if (_registered[block]) Append(block);
        else _cache.Release(block);
    }

    private void Register(int block)
    {
        _registered[block] = true;
        ref var list = ref CollectionsMarshal.GetValueRefOrAddDefault(_children, _parent[block], out _);
        (list ??= []).Add(block);
    }

    private void Unregister(int block)
    {
        if (!_registered[block]) return;
        _registered[block] = false;
        if (_filled[block] == T && _full.TryGetValue(_key[block], out int b) && b == block) _full.Remove(_key[block]);
        if (_children.TryGetValue(_parent[block], out var list))
        {
            int i = list.IndexOf(block);
            list[i] = list[^1];
            list.RemoveAt(list.Count - 1);
            if (list.Count == 0) _children.Remove(_parent[block]);
        }
    }

    private void SetContent(int block, ulong parent, IReadOnlyList<int> tokens, int start, int count)
    {
        var content = _tokens[block] ??= new int[T];
        for (int i = 0; i < count; i++) content[i] = tokens[start + i];
        _filled[block] = count;
        _parent[block] = parent;
    }

    private bool SameTokens(int block, IReadOnlyList<int> tokens, int start, int count)
    {
        if (_filled[block] < count) return false;
        var content = _tokens[block];
        for (int i = 0; i < count; i++)
            if (content[i] != tokens[start + i]) return false;
        return true;
    }

    private int CommonPrefix(int block, IReadOnlyList<int> tokens, int start, int max)
    {
        var content = _tokens[block];
        int n = Math.Min(Math.Min(_filled[block], max), T), i = 0;
        while (i < n && content[i] == tokens[start + i]) i++;
        return i;
    }

    private bool CoveredByChild(ulong parent, IReadOnlyList<int> tokens, int start, int count)
    {
        if (!_children.TryGetValue(parent, out var children)) return false;
        foreach (int c in children)
            if (CommonPrefix(c, tokens, start, count) == count) return true;
        return false;
    }

    private static ulong Hash(ulong parent, IReadOnlyList<int> tokens, int start)
    {
        ulong h = parent;
        for (int i = 0; i < T; i++)
        {
            h ^= (uint)tokens[start + i];
            h *= 0x100000001B3UL;
            h ^= h >> 29;
        }
        return h ^ (h >> 32);
    }

    private void Append(int block)
    {
        _prev[block] = _tail;
        _next[block] = -1;
        if (_tail >= 0) _next[_tail] = block; else _head = block;
        _tail = block;
        _lruCount++;
    }

    private void Unlink(int block)
    {
        int p = _prev[block], n = _next[block];
        if (p >= 0) _next[p] = n; else _head = n;
        if (n >= 0) _prev[n] = p; else _tail = p;
        _prev[block] = _next[block] = -1;
        _lruCount--;
    }
}
