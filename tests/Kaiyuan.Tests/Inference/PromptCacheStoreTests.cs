using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Inference;

/// <summary>
/// The prompt cache on disk, below the scheduler: rows survive a round trip byte for byte and a partial load reads only
/// what it needs; the save policy; the size bound; model fingerprints.
/// </summary>
public sealed class PromptCacheStoreTests : IDisposable
{
    private const int T = KvCache.BlockTokens;
    private static readonly byte[] SomeModel = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
    private static readonly int[] Widths = [64, 96, 32];

    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kaiyuan-prompt-cache-{Guid.NewGuid():N}");
    private readonly List<string> _warnings = [];

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private PromptCacheStore Store(long maxBytes = PromptCacheStore.DefaultMaxBytes, GgmlType type = GgmlType.F32) =>
        new(_dir, SomeModel, type, Widths, maxBytes, m => { lock (_warnings) _warnings.Add(m); });

    private static int[] Tokens(int seed, int length)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => random.Next(0, 1000)).ToArray();
    }

    /// <summary>A cache whose sequence 0 holds <paramref name="blocks"/> blocks of random bytes.</summary>
    private static KvCache Filled(int blocks, int seed, GgmlType type = GgmlType.F32)
    {
        var cache = new KvCache(Widths, 1, 512, type);
        Assert.True(cache.Reserve(0, blocks * T));
        var random = new Random(seed);
        foreach (int b in cache.Table(0)[..blocks])
            for (int l = 0; l < Widths.Length; l++) random.NextBytes(cache.BlockData(l, b));
        return cache;
    }

    private static byte[] Rows(KvCache cache, ReadOnlySpan<int> blocks) =>
        blocks.ToArray().SelectMany(b => Enumerable.Range(0, Widths.Length).SelectMany(l => cache.BlockData(l, b).ToArray())).ToArray();

    private string[] Entries() => Directory.GetFiles(_dir, "*" + PromptCacheStore.Extension);

    [Fact]
    public void OpeningRemovesTheTemporaryFilesOfDeadWritersButNotOfLiveOnes()
    {
        Directory.CreateDirectory(_dir);
        string abandoned = Path.Combine(_dir, ".abandoned.kvc.0123.tmp"), live = Path.Combine(_dir, ".live.kvc.4567.tmp");
        File.WriteAllBytes(abandoned, new byte[100]);
        // A writer in this or another process holds its file exclusively until it renames it.
        using (var writer = new FileStream(live, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            writer.Write(new byte[100]);
            using (Store()) { }
            Assert.False(File.Exists(abandoned));
            Assert.True(File.Exists(live));
        }
        using (Store()) { }
        Assert.False(File.Exists(live));
        Assert.Empty(_warnings);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.Q8_0)]
    public void RowsComeBackByteForByteAndAPartialLoadReadsOnlyItsBlocks(GgmlType type)
    {
        var tokens = Tokens(1, 4 * T + 10);
        var source = Filled(4, 2, type);
        using (var store = Store(type: type))
        {
            Assert.True(store.TrySave(source, source.Table(0)[..4], tokens));
            store.WaitForWrites();
            Assert.Equal(1, store.SavedEntries);
        }
        Assert.Single(Entries());

        using var reader = Store(type: type);
        var target = new KvCache(Widths, 1, 512, type);
        Assert.True(target.Reserve(0, 4 * T));
        // A prompt that shares three blocks and then diverges.
        var other = tokens[..(3 * T + 5)].Concat(Tokens(3, 40)).ToArray();
        var hit = reader.Find(other, 100);
        Assert.NotNull(hit);
        Assert.Equal(3, hit.Blocks);
        Assert.Equal(3, reader.Load(hit, 0, target.Table(0)[..3], target));
        Assert.Equal(Rows(source, source.Table(0)[..3]), Rows(target, target.Table(0)[..3]));

        // Just the second block, into the fourth of the target.
        var fresh = new KvCache(Widths, 1, 512, type);
        Assert.True(fresh.Reserve(0, 4 * T));
        Assert.Equal(1, reader.Load(hit, 1, fresh.Table(0)[3..4], fresh));
        Assert.Equal(Rows(source, source.Table(0)[1..2]), Rows(fresh, fresh.Table(0)[3..4]));
        Assert.Equal(4 * T, reader.LoadedTokens);

        // At most the blocks asked for; nothing for a prompt that shares no full block.
        Assert.Equal(2, reader.Find(tokens, 2)!.Blocks);
        Assert.Null(reader.Find([.. tokens[..(T - 1)], -5, .. tokens[T..]], 100));
        Assert.Empty(_warnings);
    }

    [Fact]
    public void SavesOnlyWhatIsWorthItAndAnExtensionReplacesItsPrefix()
    {
        var tokens = Tokens(4, 5 * T);
        var cache = Filled(5, 5);
        using var store = Store();
        Assert.False(store.TrySave(cache, cache.Table(0)[..1], tokens), "one block is not worth a file");
        Assert.True(store.TrySave(cache, cache.Table(0)[..3], tokens));
        Assert.False(store.TrySave(cache, cache.Table(0)[..3], tokens), "the same blocks are being saved already");
        store.WaitForWrites();
        Assert.False(store.TrySave(cache, cache.Table(0)[..3], tokens), "the same blocks are saved already");
        Assert.False(store.TrySave(cache, cache.Table(0)[..2], tokens), "an entry holds these blocks and more");
        Assert.Single(Entries());

        // Four blocks extend the three: the shorter entry goes.
        Assert.True(store.TrySave(cache, cache.Table(0)[..4], tokens));
        store.WaitForWrites();
        Assert.Single(Entries());
        Assert.Equal(4, store.Find(tokens, 100)!.Blocks);

        // A prompt that diverges in the third block is a new entry; the old one stays (it is not a prefix of it).
        var diverging = tokens[..(2 * T + 3)].Concat(Tokens(6, 2 * T)).ToArray();
        Assert.True(store.TrySave(cache, cache.Table(0)[..3], diverging));
        store.WaitForWrites();
        Assert.Equal(2, Entries().Length);
        Assert.Equal(2, store.Count);

        // Another store on the same directory (the next process) sees both.
        using var next = Store();
        Assert.Equal(2, next.Count);
        Assert.Equal(4, next.Find(tokens, 100)!.Blocks);
        Assert.Equal(3, next.Find(diverging, 100)!.Blocks);
        Assert.Empty(_warnings);
    }

    [Fact]
    public void TheSizeBoundEvictsTheLeastRecentlyUsed()
    {
        var cache = Filled(2, 7);
        long entry;
        using (var probe = Store()) entry = probe.EntryBytes(2);
        using var store = Store(maxBytes: 2 * entry + entry / 2);
        int[] a = Tokens(10, 2 * T), b = Tokens(11, 2 * T), c = Tokens(12, 2 * T);
        Assert.True(store.TrySave(cache, cache.Table(0)[..2], a));
        store.WaitForWrites();
        string fileA = Assert.Single(Entries());
        Assert.True(store.TrySave(cache, cache.Table(0)[..2], b));
        store.WaitForWrites();
        string fileB = Assert.Single(Entries(), f => f != fileA);
        Assert.All(Entries(), f => Assert.Equal(entry, new FileInfo(f).Length));
        File.SetLastWriteTimeUtc(fileA, DateTime.UtcNow.AddHours(-3));
        File.SetLastWriteTimeUtc(fileB, DateTime.UtcNow.AddHours(-2));

        // Loading A makes it the most recently used, so B is the one to go.
        var target = new KvCache(Widths, 1, 512);
        Assert.True(target.Reserve(0, 2 * T));
        Assert.Equal(2, store.Load(store.Find(a, 2)!, 0, target.Table(0)[..2], target));
        Assert.True(store.TrySave(cache, cache.Table(0)[..2], c));
        store.WaitForWrites();
        Assert.True(File.Exists(fileA));
        Assert.False(File.Exists(fileB));
        Assert.Equal(2, Entries().Length);
        Assert.Null(store.Find(b, 2));
        Assert.NotNull(store.Find(c, 2));

        // An entry larger than the whole bound is never written.
        using var tiny = Store(maxBytes: entry - 1);
        Assert.False(tiny.TrySave(cache, cache.Table(0)[..2], Tokens(13, 2 * T)));
    }

    [Fact]
    public void OtherModelsAndLayoutsAreLeftAloneAndTheirEntriesKept()
    {
        var tokens = Tokens(20, 3 * T);
        var cache = Filled(3, 21);
        using (var store = Store())
        {
            Assert.True(store.TrySave(cache, cache.Table(0)[..3], tokens));
            store.WaitForWrites();
        }
        byte[] otherModel = [.. SomeModel.Reverse()];
        using var other = new PromptCacheStore(_dir, otherModel, GgmlType.F32, Widths, warn: _warnings.Add);
        Assert.Null(other.Find(tokens, 100));
        using var f16 = new PromptCacheStore(_dir, SomeModel, GgmlType.F16, Widths, warn: _warnings.Add);
        Assert.Null(f16.Find(tokens, 100));
        Assert.Single(Entries());
        Assert.Empty(_warnings);
        Assert.Throws<ArgumentException>(() => f16.TrySave(cache, cache.Table(0)[..3], tokens));
    }

    /// <summary>A copy of a model with one weight in the middle of one tensor changed: same shape, other weights.</summary>
    internal static string Perturbed(string path, string target)
    {
        using var source = GgufFile.Open(path);
        var writer = new GgufWriter { Alignment = source.Alignment };
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        var changed = source.Tensors.Where(t => t.Type == GgmlType.F32 && t.Dimensions.Length == 2).OrderBy(t => t.Name, StringComparer.Ordinal).ElementAt(3);
        foreach (var t in source.Tensors)
        {
            var bytes = t.Bytes.ToArray();
            if (t == changed)
            {
                var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
                floats[floats.Length / 2] += 0.5f;
            }
            writer.AddTensor(t.Name, t.Type, t.Dimensions, s => s.Write(bytes));
        }
        writer.Write(target);
        return target;
    }

    [Fact]
    public void TheFingerprintTellsSameShapedFilesApart()
    {
        string path = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        Directory.CreateDirectory(_dir);
        string copy = Perturbed(path, Path.Combine(_dir, "perturbed.gguf"));
        using var a = GgufFile.Open(path);
        using var again = GgufFile.Open(path);
        using var b = GgufFile.Open(copy);
        Assert.Equal(a.FileSize, b.FileSize);
        Assert.Equal(PromptCacheStore.Fingerprint(a), PromptCacheStore.Fingerprint(again));
        Assert.NotEqual(PromptCacheStore.Fingerprint(a), PromptCacheStore.Fingerprint(b));
    }
}
