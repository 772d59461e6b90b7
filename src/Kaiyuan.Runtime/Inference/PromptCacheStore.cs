using System.Buffers.Binary;
using System.IO.Hashing;
using System.Security.Cryptography;
using Kaiyuan.Gguf;
using Kaiyuan.Models;
using Kaiyuan.Tensors;

namespace Kaiyuan.Inference;

/// <summary>Full blocks that an entry of a <see cref="PromptCacheStore"/> shares with a prompt.</summary>
internal sealed class PromptCacheHit
{
    internal PromptCacheHit(object entry, int blocks)
    {
        Entry = entry;
        Blocks = blocks;
    }

    internal object Entry { get; }
    /// <summary>Leading full blocks of the prompt the entry holds.</summary>
    public int Blocks { get; }
    public int Tokens => Blocks * KvCache.BlockTokens;
}

/// <summary>
/// Prompt prefixes kept on disk (<c>--prompt-cache DIR</c>), so a restarted server or the next <c>kaiyuan run</c> reads
/// the KV rows of a long prompt it has seen before instead of computing them. An entry is one file holding the rows of
/// some leading full blocks of one prompt, for one model file and one KV cache layout; a lookup finds the entry sharing
/// the most full blocks with a new prompt, and a load reads only the blocks it needs.
/// </summary>
/// <remarks>
/// <para>File format (little-endian), version 1:</para>
/// <code>
/// header   "KYPCACHE", u32 version, 32-byte model fingerprint (<see cref="Fingerprint"/>), u32 cache type (ggml),
///          u32 tokens per block (32), u32 layers L, u32 tokens N (a multiple of 32), u32 row width × L, i32 token × N
///          u64 XxHash3 of the header
/// blocks   N/32 times: the block's 32 rows of layer 0, of layer 1, …, of layer L−1 (as the cache stores them),
///          then u64 XxHash3 of those bytes seeded with the header's hash + the block's index
/// </code>
/// <para>
/// The file's length follows from the header, so a truncated file is refused before anything is allocated from its
/// sizes; each block is checked on its own, bound to its header and place, so loading the first k blocks reads and
/// verifies only a prefix of the file. Files are named after the model and layout (a prefix) and the tokens, written to
/// a temporary name and renamed, so a crash never leaves a partial entry under a valid name. Entries of other models or
/// layouts in the same directory are left alone; a damaged, foreign or newer entry under this model's prefix is
/// ignored with a one-line warning. The directory is kept under a size bound by deleting the least recently used
/// entries (file modification time; a load touches it).
/// </para>
/// <para>Thread-safe: the scheduler looks up, loads and offers entries on its thread; files are written on a background task.</para>
/// </remarks>
public sealed class PromptCacheStore : IDisposable
{
    internal const int FormatVersion = 1;
    /// <summary>Fewest full blocks worth saving (64 tokens).</summary>
    internal const int MinBlocks = 2;
    /// <summary>Bytes the directory's entries may take unless told otherwise (4 GiB).</summary>
    public const long DefaultMaxBytes = 4096L << 20;
    /// <summary>The file extension of an entry.</summary>
    public const string Extension = ".kvc";
    private const int T = KvCache.BlockTokens;
    // Magic, version, fingerprint, cache type, tokens per block, layers, tokens.
    private const int FixedHeader = 8 + 4 + 32 + 4 + 4 + 4 + 4;
    // Rows copied out for writing and not yet on disk, at most (more entries are skipped, not queued).
    private const long MaxPendingBytes = 1L << 30;
    // Tokens an entry may hold at most (far beyond any context); more is a corrupt header.
    private const uint MaxTokens = 1 << 24;
    private static readonly TimeSpan StaleTemp = TimeSpan.FromHours(1);
    private static ReadOnlySpan<byte> Magic => "KYPCACHE"u8;

    private readonly byte[] _fingerprint;
    private readonly GgmlType _type;
    private readonly int[] _widths;
    private readonly int[] _rowBytes;
    private readonly long _blockBytes;
    private readonly string _prefix;
    private readonly Action<string> _warn;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, List<Entry>> _byFirstBlock = [];
    private readonly HashSet<string> _ignored = new(StringComparer.Ordinal);
    private readonly List<int[]> _pending = [];
    private long _pendingBytes, _loadedTokens, _savedEntries;
    private DateTime _stamp;
    private Task _writes = Task.CompletedTask;
    private volatile bool _disposed;

    /// <param name="directory">Where entries live (created if missing); other models' entries may share it.</param>
    /// <param name="fingerprint">The model file's <see cref="Fingerprint"/>.</param>
    /// <param name="cacheType">KV cache row type; entries of another type are not used.</param>
    /// <param name="rowWidths">Floats per row, per layer (the model's <see cref="TransformerModel.CacheRowWidths"/>).</param>
    /// <param name="maxBytes">Bytes the directory's entries may take; the least recently used go beyond it.</param>
    /// <param name="warn">Where one-line warnings go (default: standard error).</param>
    internal PromptCacheStore(string directory, ReadOnlySpan<byte> fingerprint, GgmlType cacheType, IReadOnlyList<int> rowWidths,
        long maxBytes = DefaultMaxBytes, Action<string>? warn = null)
    {
        if (fingerprint.Length != 32) throw new ArgumentException("a model fingerprint is 32 bytes", nameof(fingerprint));
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        if (rowWidths.Count == 0) throw new ArgumentException("no layers", nameof(rowWidths));
        Directory = System.IO.Directory.CreateDirectory(directory).FullName;
        MaxBytes = maxBytes;
        _fingerprint = fingerprint.ToArray();
        _type = cacheType;
        _widths = rowWidths.ToArray();
        _rowBytes = _widths.Select(w => checked((int)GgmlTypeInfo.RowBytes(cacheType, w))).ToArray();
        _blockBytes = _rowBytes.Sum(b => (long)b) * T;
        _warn = warn ?? (message => Console.Error.WriteLine($"kaiyuan: {message}"));
        _prefix = LayoutKey(_fingerprint, cacheType, _widths);
        lock (_lock) Refresh();
        Evict(keep: null);
    }

    /// <summary>A store for a loaded model and cache type (computes the model's fingerprint).</summary>
    public static PromptCacheStore Open(string directory, TransformerModel model, GgmlType cacheType, long maxBytes = DefaultMaxBytes,
        Action<string>? warn = null) =>
        new(directory, Fingerprint(model.File), cacheType, model.CacheRowWidths, maxBytes, warn);

    /// <summary>The directory entries live in (full path).</summary>
    public string Directory { get; }
    /// <summary>Bytes the directory's entries may take; the least recently used go beyond it.</summary>
    public long MaxBytes { get; }
    /// <summary>Tokens whose rows were loaded from disk, so far.</summary>
    public long LoadedTokens => Interlocked.Read(ref _loadedTokens);
    /// <summary>Entries written by this store, so far.</summary>
    public long SavedEntries => Interlocked.Read(ref _savedEntries);

    /// <summary>Entries of this model and layout known now (tests, reports).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                Refresh();
                return _entries.Count;
            }
        }
    }

    /// <summary>Bytes an entry of <paramref name="blocks"/> full blocks takes on disk.</summary>
    internal long EntryBytes(int blocks) => HeaderBytes(blocks * T) + blocks * (_blockBytes + 8);

    private long HeaderBytes(long tokens) => FixedHeader + 4L * _widths.Length + 4 * tokens + 8;

    /// <summary>
    /// What tells a model file from another, even one of the same shape: SHA-256 over the file's length, its header,
    /// metadata and tensor table, the first and last MiB of its tensor data and the first 4 KiB of every tensor.
    /// </summary>
    internal static byte[] Fingerprint(GgufFile file)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, file.FileSize);
        sha.AppendData(length);
        long dataStart = Math.Clamp(file.DataOffset, 0, file.FileSize), data = file.FileSize - dataStart;
        Append(sha, file, 0, dataStart);
        const long Sample = 1 << 20;
        Append(sha, file, dataStart, Math.Min(Sample, data));
        Append(sha, file, file.FileSize - Math.Min(Sample, data), Math.Min(Sample, data));
        foreach (var t in file.Tensors)
        {
            long start = dataStart + (long)Math.Min(t.Offset, (ulong)data);
            Append(sha, file, start, Math.Min(Math.Min(4096, t.ByteSize), file.FileSize - start));
        }
        return sha.GetHashAndReset();
    }

    private static void Append(IncrementalHash sha, GgufFile file, long offset, long count)
    {
        while (count > 0)
        {
            int n = (int)Math.Min(count, 1 << 30);
            sha.AppendData(file.RawBytes(offset, n));
            offset += n;
            count -= n;
        }
    }

    /// <summary>The file-name prefix of one model and cache layout: 16 hex digits of a hash over both.</summary>
    private static string LayoutKey(byte[] fingerprint, GgmlType type, int[] widths)
    {
        var bytes = new byte[fingerprint.Length + 8 + 4 * widths.Length];
        fingerprint.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(32), (int)type);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(36), widths.Length);
        for (int i = 0; i < widths.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(40 + 4 * i), widths[i]);
        return Convert.ToHexStringLower(SHA256.HashData(bytes).AsSpan(0, 8));
    }

    /// <summary>Whether a cache stores rows as this store's entries do (same type and row widths).</summary>
    internal bool Fits(KvCache cache) => cache.Type == _type && cache.RowWidths.AsSpan().SequenceEqual(_widths);

    private void CheckFits(KvCache cache)
    {
        if (!Fits(cache)) throw new ArgumentException($"the prompt cache holds {_type} rows of widths [{string.Join(", ", _widths)}]; this KV cache's differ");
    }

    /// <summary>
    /// The entry sharing the most leading full blocks with <paramref name="tokens"/>, counting at most
    /// <paramref name="maxBlocks"/>; null when none shares a block.
    /// </summary>
    internal PromptCacheHit? Find(IReadOnlyList<int> tokens, int maxBlocks)
    {
        maxBlocks = Math.Min(maxBlocks, tokens.Count / T);
        if (maxBlocks < 1 || _disposed) return null;
        lock (_lock)
        {
            Refresh();
            if (!_byFirstBlock.TryGetValue(FirstBlockKey(tokens), out var candidates)) return null;
            Entry? best = null;
            int most = 0;
            foreach (var e in candidates)
            {
                int common = CommonBlocks(e.Tokens, tokens, Math.Min(e.Blocks, maxBlocks));
                if (common > most) (best, most) = (e, common);
            }
            return best is null ? null : new PromptCacheHit(best, most);
        }
    }

    /// <summary>
    /// Reads blocks <paramref name="first"/>… of a hit into the cache blocks <paramref name="blocks"/> (one each),
    /// checking each; returns how many were loaded. A block that fails its check stops the load (it and the rest are
    /// not loaded, its cache block may hold garbage) and the entry is ignored from then on.
    /// </summary>
    internal int Load(PromptCacheHit hit, int first, ReadOnlySpan<int> blocks, KvCache cache)
    {
        ArgumentNullException.ThrowIfNull(hit);
        if (first < 0 || first + blocks.Length > hit.Blocks) throw new ArgumentOutOfRangeException(nameof(first), "outside the hit");
        CheckFits(cache);
        var entry = (Entry)hit.Entry;
        int loaded = 0;
        try
        {
            using var file = new FileStream(entry.Path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
            // The header again: the file may have been damaged or replaced since it was indexed.
            var (again, problem) = ReadHeader(file);
            if (again is null || again.HeaderHash != entry.HeaderHash || again.Length != entry.Length)
            {
                Ignore(entry, problem ?? "changed since it was indexed");
                return 0;
            }
            file.Position = entry.HeaderBytes + first * (_blockBytes + 8);
            Span<byte> sum = stackalloc byte[8];
            for (; loaded < blocks.Length; loaded++)
            {
                var hash = new XxHash3(BlockSeed(entry.HeaderHash, first + loaded));
                for (int l = 0; l < _rowBytes.Length; l++)
                {
                    var rows = cache.BlockData(l, blocks[loaded]);
                    file.ReadExactly(rows);
                    hash.Append(rows);
                }
                file.ReadExactly(sum);
                if (BinaryPrimitives.ReadUInt64LittleEndian(sum) != hash.GetCurrentHashAsUInt64())
                {
                    Ignore(entry, $"block {first + loaded} fails its checksum");
                    break;
                }
            }
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // Evicted by another process meanwhile: nothing wrong with it, it is just gone.
            lock (_lock) Remove(entry);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Ignore(entry, e.Message);
        }
        if (loaded > 0)
        {
            Interlocked.Add(ref _loadedTokens, (long)loaded * T);
            // Recently used: the size bound evicts by modification time.
            try { File.SetLastWriteTimeUtc(entry.Path, DateTime.UtcNow); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return loaded;
    }

    /// <summary>
    /// Offers the rows of a prompt's leading full blocks (the cache blocks <paramref name="blocks"/>, holding the first
    /// <c>blocks.Length × 32</c> of <paramref name="tokens"/>). Saved when worth it: at least <see cref="MinBlocks"/>
    /// blocks, no entry (saved or being saved) already holding them all, and within the size bound. The rows are copied
    /// now; the file is written on a background task. Returns whether it will be saved.
    /// </summary>
    internal bool TrySave(KvCache cache, ReadOnlySpan<int> blocks, IReadOnlyList<int> tokens)
    {
        int n = blocks.Length;
        if (_disposed || n < MinBlocks || tokens.Count < n * T) return false;
        CheckFits(cache);
        long bytes = n * _blockBytes;
        if (EntryBytes(n) > MaxBytes || bytes > MaxPendingBytes) return false;
        var ids = new int[n * T];
        for (int i = 0; i < ids.Length; i++) ids[i] = tokens[i];
        lock (_lock)
        {
            Refresh();
            if (Covered(ids, n) || _pendingBytes + bytes > MaxPendingBytes) return false;
            _pending.Add(ids);
            _pendingBytes += bytes;
        }
        var rows = new byte[bytes];
        long at = 0;
        foreach (int b in blocks)
            for (int l = 0; l < _rowBytes.Length; l++)
            {
                var data = cache.BlockData(l, b);
                data.CopyTo(rows.AsSpan((int)at));
                at += data.Length;
            }
        lock (_lock) _writes = _writes.ContinueWith(_ => Write(ids, rows), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return true;
    }

    /// <summary>Waits until every entry offered so far is written (or has failed).</summary>
    public void WaitForWrites()
    {
        Task writes;
        lock (_lock) writes = _writes;
        writes.Wait();
    }

    /// <summary>Finishes the pending writes and takes no more.</summary>
    public void Dispose()
    {
        _disposed = true;
        WaitForWrites();
    }

    private bool Covered(int[] ids, int blocks)
    {
        if (_byFirstBlock.TryGetValue(FirstBlockKey(ids), out var candidates))
            foreach (var e in candidates)
                if (CommonBlocks(e.Tokens, ids, blocks) == blocks) return true;
        foreach (var p in _pending)
            if (CommonBlocks(p, ids, blocks) == blocks) return true;
        return false;
    }

    private void Write(int[] ids, byte[] rows)
    {
        string? temp = null;
        try
        {
            int blocks = ids.Length / T;
            var header = new byte[HeaderBytes(ids.Length) - 8];
            var span = header.AsSpan();
            Magic.CopyTo(span);
            BinaryPrimitives.WriteInt32LittleEndian(span[8..], FormatVersion);
            _fingerprint.CopyTo(span[12..]);
            BinaryPrimitives.WriteInt32LittleEndian(span[44..], (int)_type);
            BinaryPrimitives.WriteInt32LittleEndian(span[48..], T);
            BinaryPrimitives.WriteInt32LittleEndian(span[52..], _widths.Length);
            BinaryPrimitives.WriteInt32LittleEndian(span[56..], ids.Length);
            int at = FixedHeader;
            foreach (int w in _widths) { BinaryPrimitives.WriteInt32LittleEndian(span[at..], w); at += 4; }
            foreach (int id in ids) { BinaryPrimitives.WriteInt32LittleEndian(span[at..], id); at += 4; }
            ulong headerHash = XxHash3.HashToUInt64(header);

            string name = FileName(ids), path = Path.Combine(Directory, name);
            temp = Path.Combine(Directory, $".{name}.{Guid.NewGuid():N}.tmp");
            Span<byte> sum = stackalloc byte[8];
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                file.Write(header);
                BinaryPrimitives.WriteUInt64LittleEndian(sum, headerHash);
                file.Write(sum);
                for (int b = 0; b < blocks; b++)
                {
                    var block = rows.AsSpan((int)(b * _blockBytes), (int)_blockBytes);
                    file.Write(block);
                    BinaryPrimitives.WriteUInt64LittleEndian(sum, XxHash3.HashToUInt64(block, BlockSeed(headerHash, b)));
                    file.Write(sum);
                }
                file.Flush(flushToDisk: true);
                // Renamed while the handle (and its exclusive lock) is still held where the OS allows it, so no other
                // process's cleanup can take the file for abandoned between closing and renaming.
                if (!OperatingSystem.IsWindows())
                {
                    File.Move(temp, path, overwrite: true);
                    temp = null;
                }
            }
            if (temp is not null) File.Move(temp, path, overwrite: true);
            temp = null;
            var entry = new Entry(name, path, ids, header.Length + 8, headerHash, EntryBytes(blocks));
            var extended = new List<Entry>();
            lock (_lock)
            {
                _ignored.Remove(name);
                Add(entry);
                // An entry that is a strict prefix of this one is of no more use.
                foreach (var e in _byFirstBlock[FirstBlockKey(ids)])
                    if (e.Blocks < blocks && CommonBlocks(e.Tokens, ids, e.Blocks) == e.Blocks) extended.Add(e);
                foreach (var e in extended) Remove(e);
            }
            foreach (var e in extended) TryDelete(e.Path);
            Interlocked.Increment(ref _savedEntries);
            Evict(keep: name);
        }
        catch (Exception e)
        {
            // A background write must never take the process down; the entry is simply not saved.
            _warn($"cannot save a prompt cache entry in {Directory}: {e.Message}");
            if (temp is not null) TryDelete(temp);
        }
        finally
        {
            lock (_lock)
            {
                _pending.Remove(ids);
                _pendingBytes -= rows.LongLength;
            }
        }
    }

    /// <summary>Deletes the least recently used entries (of any model) while the directory holds more than the bound, and stale temporary files.</summary>
    private void Evict(string? keep)
    {
        try
        {
            var directory = new DirectoryInfo(Directory);
            foreach (var temp in directory.EnumerateFiles(".*.tmp"))
                if (IsAbandoned(temp)) TryDelete(temp.FullName);
            var files = directory.EnumerateFiles("*" + Extension).ToList();
            long total = files.Sum(f => f.Length);
            foreach (var f in files.OrderBy(f => f.LastWriteTimeUtc))
            {
                if (total <= MaxBytes) break;
                if (f.Name == keep) continue;
                TryDelete(f.FullName);
                total -= f.Length;
                lock (_lock)
                    if (_entries.TryGetValue(f.Name, out var e)) Remove(e);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _warn($"cannot trim the prompt cache in {Directory}: {e.Message}");
        }
    }

    /// <summary>Indexes entries of this model and layout that appeared since the last look, and forgets deleted ones (under the lock).</summary>
    private void Refresh()
    {
        try
        {
            var stamp = System.IO.Directory.GetLastWriteTimeUtc(Directory);
            if (stamp == _stamp) return;
            _stamp = stamp;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var path in System.IO.Directory.EnumerateFiles(Directory, _prefix + "-*" + Extension))
            {
                string name = Path.GetFileName(path);
                seen.Add(name);
                if (_entries.ContainsKey(name) || _ignored.Contains(name)) continue;
                var (entry, problem) = Index(path);
                if (entry is not null) Add(entry);
                else if (problem is not null) Ignore(name, problem);
            }
            foreach (var gone in _entries.Values.Where(e => !seen.Contains(e.Name)).ToList()) Remove(gone);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _stamp = default;
            _warn($"cannot read the prompt cache in {Directory}: {e.Message}");
        }
    }

    private (Entry?, string?) Index(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
            return ReadHeader(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // Deleted since the directory was listed: not a problem to report.
            return (null, null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, e.Message);
        }
    }

    /// <summary>Reads and checks an entry's header; allocates nothing from its sizes before they agree with the file's length.</summary>
    private (Entry?, string?) ReadHeader(FileStream file)
    {
        long length = file.Length;
        if (length < FixedHeader) return (null, $"truncated ({length} bytes)");
        Span<byte> head = stackalloc byte[FixedHeader];
        file.Position = 0;
        file.ReadExactly(head);
        if (!head[..8].SequenceEqual(Magic)) return (null, "not a prompt cache entry");
        int version = BinaryPrimitives.ReadInt32LittleEndian(head[8..]);
        if (version != FormatVersion) return (null, $"format version {version} (this kaiyuan reads {FormatVersion})");
        if (!head.Slice(12, 32).SequenceEqual(_fingerprint)) return (null, "written for another model file");
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(head[44..]);
        uint blockTokens = BinaryPrimitives.ReadUInt32LittleEndian(head[48..]);
        uint layers = BinaryPrimitives.ReadUInt32LittleEndian(head[52..]);
        uint tokens = BinaryPrimitives.ReadUInt32LittleEndian(head[56..]);
        if (type != (uint)_type || blockTokens != T || layers != _widths.Length) return (null, "written for another KV cache layout");
        if (tokens == 0 || tokens % T != 0 || tokens > MaxTokens) return (null, $"corrupt (a token count of {tokens})");
        long blocks = tokens / T;
        // Sizes agree with the file before anything is allocated from them.
        long headerBytes = HeaderBytes(tokens);
        if (headerBytes > length || blocks > (length - headerBytes) / (_blockBytes + 8))
            return (null, $"truncated or corrupt ({length} bytes for {tokens} tokens)");
        long expected = headerBytes + blocks * (_blockBytes + 8);
        if (expected != length) return (null, $"truncated or corrupt ({length} bytes; {expected} expected)");
        var header = new byte[headerBytes];
        file.Position = 0;
        file.ReadExactly(header);
        var body = header.AsSpan(0, header.Length - 8);
        ulong headerHash = XxHash3.HashToUInt64(body);
        if (headerHash != BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(header.Length - 8))) return (null, "corrupt header (checksum)");
        for (int l = 0; l < _widths.Length; l++)
            if (BinaryPrimitives.ReadInt32LittleEndian(body[(FixedHeader + 4 * l)..]) != _widths[l]) return (null, "written for another KV cache layout");
        var ids = new int[tokens];
        int at = FixedHeader + 4 * _widths.Length;
        for (int i = 0; i < ids.Length; i++, at += 4) ids[i] = BinaryPrimitives.ReadInt32LittleEndian(body[at..]);
        string name = Path.GetFileName(file.Name);
        return (new Entry(name, file.Name, ids, headerBytes, headerHash, length), null);
    }

    private void Add(Entry entry)
    {
        if (_entries.TryGetValue(entry.Name, out var old)) Remove(old);
        _entries[entry.Name] = entry;
        ulong key = FirstBlockKey(entry.Tokens);
        if (!_byFirstBlock.TryGetValue(key, out var list)) _byFirstBlock[key] = list = [];
        list.Add(entry);
    }

    private void Remove(Entry entry)
    {
        if (!_entries.Remove(entry.Name)) return;
        ulong key = FirstBlockKey(entry.Tokens);
        if (_byFirstBlock.TryGetValue(key, out var list))
        {
            list.Remove(entry);
            if (list.Count == 0) _byFirstBlock.Remove(key);
        }
    }

    private void Ignore(Entry entry, string problem)
    {
        lock (_lock)
        {
            Remove(entry);
            Ignore(entry.Name, problem);
        }
    }

    private void Ignore(string name, string problem)
    {
        if (_ignored.Add(name)) _warn($"prompt cache entry {Path.Combine(Directory, name)}: {problem}; ignored");
    }

    private string FileName(int[] ids) =>
        $"{_prefix}-{XxHash3.HashToUInt64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan())):x16}{Extension}";

    private static long BlockSeed(ulong headerHash, int block) => unchecked((long)(headerHash + (ulong)block));

    private static ulong FirstBlockKey(IReadOnlyList<int> tokens)
    {
        Span<int> first = stackalloc int[T];
        for (int i = 0; i < T; i++) first[i] = tokens[i];
        return XxHash3.HashToUInt64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(first));
    }

    private static int CommonBlocks(int[] entry, IReadOnlyList<int> tokens, int maxBlocks)
    {
        int n = Math.Min(maxBlocks * T, Math.Min(entry.Length, tokens.Count)), i = 0;
        while (i < n && entry[i] == tokens[i]) i++;
        return i / T;
    }

    /// <summary>
    /// A temporary entry no writer holds: a writer keeps its file open with <see cref="FileShare.None"/> (an exclusive lock
    /// on every OS .NET runs on) until it is renamed, and a killed writer's lock goes with its process. Where locking is
    /// turned off (DOTNET_SYSTEM_IO_DISABLEFILELOCKING) only an hour without writes marks a file as abandoned.
    /// </summary>
    private static bool IsAbandoned(FileInfo temp)
    {
        if (DateTime.UtcNow - temp.LastWriteTimeUtc > StaleTemp) return true;
        try
        {
            using var probe = new FileStream(temp.FullName, FileMode.Open, FileAccess.ReadWrite, FileShare.None, bufferSize: 1);
            return !FileLockingDisabled;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // held by a live writer, or already renamed or removed
        }
    }

    private static readonly bool FileLockingDisabled =
        (AppContext.TryGetSwitch("System.IO.DisableFileLocking", out bool off) && off) ||
        Environment.GetEnvironmentVariable("DOTNET_SYSTEM_IO_DISABLEFILELOCKING") is "1" or "true" or "TRUE" or "True";

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>An indexed entry: its file, tokens, where its blocks start, and its header's hash (which seeds the blocks' checksums).</summary>
    private sealed class Entry(string name, string path, int[] tokens, long headerBytes, ulong headerHash, long length)
    {
        public string Name { get; } = name;
        public string Path { get; } = path;
        public int[] Tokens { get; } = tokens;
        public long HeaderBytes { get; } = headerBytes;
        public ulong HeaderHash { get; } = headerHash;
        public long Length { get; } = length;
        public int Blocks => Tokens.Length / KvCache.BlockTokens;
    }
}
