using Kaiyuan.Chat;
using Kaiyuan.Gguf;
using System.Buffers.Binary;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using Kaiyuan.Tensors;
using Kaiyuan.Tests.Inference;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// <c>--prompt-cache</c> through the scheduler: a new scheduler (as after a restart) reuses what an earlier one saved
/// and answers exactly as without any cache; damaged, foreign and hostile entries are ignored, never loaded.
/// </summary>
public sealed class PromptCacheSchedulerTests : IDisposable
{
    private const int T = KvCache.BlockTokens;
    private readonly WorkerPool _pool = new(2);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"kaiyuan-prompt-cache-{Guid.NewGuid():N}");
    private readonly List<string> _warnings = [];

    public void Dispose()
    {
        _pool.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static int[] Prompt(int seed, int length, int vocab)
    {
        var random = new Random(seed);
        var ids = new int[length];
        ids[0] = 1;
        for (int i = 1; i < length; i++) ids[i] = random.Next(3, Math.Min(vocab, 500));
        return ids;
    }

    private PromptCacheStore Store(TransformerModel model, GgmlType type, string? dir = null) =>
        PromptCacheStore.Open(dir ?? _dir, model, type, warn: m => { lock (_warnings) _warnings.Add(m); });

    private sealed record Result(int[] Ids, float[] Logprobs, int Cached);

    /// <summary>One request through a scheduler of its own (fresh process state), with or without a prompt cache.</summary>
    private async Task<Result> Run(TransformerModel model, GgmlType type, PromptCacheStore? store, int[] prompt, int count = 8)
    {
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 2, ContextLength = 256, CacheType = type, PromptCache = store }, _pool);
        var stream = scheduler.Submit(new GenerationRequest { Prompt = prompt, MaxTokens = count, TopLogprobs = 0 }, CancellationToken.None);
        var ids = new List<int>();
        var logprobs = new List<float>();
        await foreach (var t in stream)
        {
            ids.Add(t.Id);
            logprobs.Add(t.Logprob);
        }
        Assert.Equal(FinishReason.MaxTokens, stream.Finish);
        if (store is not null) Assert.Equal(store.LoadedTokens > 0, scheduler.Cache.PromptCacheTokens > 0);
        return new Result([.. ids], [.. logprobs], stream.CachedTokens);
    }

    private static void SameAnswer(Result expected, Result actual)
    {
        Assert.Equal(expected.Ids, actual.Ids);
        for (int i = 0; i < expected.Logprobs.Length; i++)
            Assert.True(Math.Abs(expected.Logprobs[i] - actual.Logprobs[i]) <= 1e-4f, $"token {i}: logprob {actual.Logprobs[i]}, {expected.Logprobs[i]} expected");
    }

    [Theory]
    [InlineData("stories260K", GgmlType.F32)]
    [InlineData("llama", GgmlType.F16)]
    [InlineData("deepseek2", GgmlType.Q8_0)]
    [InlineData("deepseek32", GgmlType.Q8_0)]
    public async Task ANewSchedulerReusesWhatAnEarlierOneSavedAndAnswersTheSame(string folder, GgmlType type)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        var prompt = Prompt(1, 150, model.VocabSize);
        var reference = await Run(model, type, null, prompt);

        using (var store = Store(model, type))
        {
            var first = await Run(model, type, store, prompt);
            Assert.Equal(0, first.Cached);
            SameAnswer(reference, first);
            Assert.Equal(1, store.SavedEntries);
        }
        Assert.Single(Directory.GetFiles(_dir, "*" + PromptCacheStore.Extension));

        // A restart: new store, new scheduler. Four full blocks come from disk, the last 22 tokens are computed.
        using (var store = Store(model, type))
        {
            var second = await Run(model, type, store, prompt);
            Assert.Equal(4 * T, second.Cached);
            Assert.Equal(4 * T, store.LoadedTokens);
            SameAnswer(reference, second);
            Assert.Equal(0, store.SavedEntries);
        }

        // A prompt that shares the first 100 tokens reuses the three full blocks among them.
        var sharing = prompt[..100].Concat(Prompt(2, 40, model.VocabSize)[1..]).ToArray();
        using (var store = Store(model, type))
        {
            var third = await Run(model, type, store, sharing);
            Assert.Equal(3 * T, third.Cached);
            SameAnswer(await Run(model, type, null, sharing), third);
        }
        Assert.Empty(_warnings);
    }

    [Fact]
    public async Task LoadedBlocksAreSharedInMemoryAfterwards()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        var prompt = Prompt(3, 120, model.VocabSize);
        using (var store = Store(model, GgmlType.F32)) await Run(model, GgmlType.F32, store, prompt);

        using var again = Store(model, GgmlType.F32);
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 1, ContextLength = 256, PromptCache = again }, _pool);
        async Task<int> Cached(int[] p)
        {
            var stream = scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = 2 }, CancellationToken.None);
            await foreach (var _ in stream) { }
            return stream.CachedTokens;
        }
        Assert.Equal(3 * T, await Cached(prompt));
        // The second time the blocks are in memory (and the partial fourth block too): nothing more is read.
        Assert.Equal(prompt.Length - 1, await Cached(prompt));
        Assert.Equal(3 * T, again.LoadedTokens);
        Assert.Equal(3 * T, scheduler.Cache.PromptCacheTokens);
    }

    /// <summary>Offsets into an entry file: where its blocks start and how long each (with its checksum) is.</summary>
    private static (long Blocks, long BlockBytes) Layout(TransformerModel model, GgmlType type, string file)
    {
        long perBlock = model.CacheRowWidths.Sum(w => GgmlTypeInfo.RowBytes(type, w)) * T + 8;
        long length = new FileInfo(file).Length;
        int tokens = BinaryPrimitives.ReadInt32LittleEndian(File.ReadAllBytes(file).AsSpan(56));
        return (length - tokens / T * perBlock, perBlock);
    }

    [Fact]
    public async Task DamagedForeignAndHostileEntriesAreIgnored()
    {
        string path = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        using var model = ModelLoader.Load(path);
        var prompt = Prompt(4, 150, model.VocabSize);
        var reference = await Run(model, GgmlType.F32, null, prompt);
        string good;
        using (var store = Store(model, GgmlType.F32))
        {
            await Run(model, GgmlType.F32, store, prompt);
            good = Assert.Single(Directory.GetFiles(_dir));
        }
        byte[] bytes = File.ReadAllBytes(good);
        var (blocksAt, perBlock) = Layout(model, GgmlType.F32, good);
        string name = Path.GetFileName(good);

        byte[] Flip(long at)
        {
            var copy = bytes.ToArray();
            copy[at] ^= 0x40;
            return copy;
        }
        byte[] Patch(int at, int value)
        {
            var copy = bytes.ToArray();
            BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(at), value);
            return copy;
        }
        var cases = new (string Case, byte[] Bytes, int Cached)[]
        {
            ("truncated", bytes[..^100], 0),
            ("cut inside the header", bytes[..40], 0),
            ("a flipped byte in the first block's rows", Flip(blocksAt + 1000), 0),
            ("a flipped byte in the last block's rows", Flip(blocksAt + 3 * perBlock + 1000), 3 * T),
            ("a flipped token", Flip(blocksAt - 20), 0),
            ("a newer format version", Patch(8, 2), 0),
            ("a huge token count", Patch(56, int.MaxValue - 31), 0),
            ("a negative token count", Patch(56, -32), 0),
            ("another layer count", Patch(52, 1000), 0),
            ("not an entry at all", "garbage garbage garbage garbage garbage garbage garbage garbage"u8.ToArray(), 0),
        };
        foreach (var (what, content, cached) in cases)
        {
            string dir = Path.Combine(_dir, "case");
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, name), content);
            _warnings.Clear();
            using (var store = Store(model, GgmlType.F32, dir))
            {
                var result = await Run(model, GgmlType.F32, store, prompt);
                Assert.True(cached == result.Cached, $"{what}: {result.Cached} tokens cached");
                SameAnswer(reference, result);
            }
            Assert.True(_warnings.Count == 1 && _warnings[0].Contains(name, StringComparison.Ordinal), $"{what}: {string.Join(" | ", _warnings)}");
            Directory.Delete(dir, recursive: true);
        }

        // Another model's entries in the same directory: its file names differ, so they are not even opened.
        using (var llama = ModelLoader.Load(Fixtures.ModelPath("llama", "llama-f32.gguf")))
        {
            var llamaPrompt = Prompt(4, 150, llama.VocabSize);
            _warnings.Clear();
            using var store = Store(llama, GgmlType.F32);
            var result = await Run(llama, GgmlType.F32, store, llamaPrompt);
            Assert.Equal(0, result.Cached);
            SameAnswer(await Run(llama, GgmlType.F32, null, llamaPrompt), result);
            Assert.Empty(_warnings);
        }

        // A file of the same shape with other weights, and the stories260K entry renamed to look like one of its own.
        string otherDir = Path.Combine(_dir, "other");
        Directory.CreateDirectory(otherDir);
        string perturbed = PromptCacheStoreTests.Perturbed(path, Path.Combine(otherDir, "perturbed.gguf"));
        using var other = ModelLoader.Load(perturbed);
        var otherReference = await Run(other, GgmlType.F32, null, prompt);
        Assert.NotEqual(reference.Logprobs, otherReference.Logprobs);
        using (var store = Store(other, GgmlType.F32, otherDir))
        {
            await Run(other, GgmlType.F32, store, Prompt(5, 100, other.VocabSize));
            string own = Assert.Single(Directory.GetFiles(otherDir, "*" + PromptCacheStore.Extension));
            string prefix = Path.GetFileName(own).Split('-')[0];
            File.Delete(own);
            File.Copy(good, Path.Combine(otherDir, $"{prefix}-{name.Split('-')[1]}"));
        }
        _warnings.Clear();
        using (var store = Store(other, GgmlType.F32, otherDir))
        {
            var result = await Run(other, GgmlType.F32, store, prompt);
            Assert.Equal(0, result.Cached);
            SameAnswer(otherReference, result);
        }
        Assert.Contains(_warnings, w => w.Contains("another model file", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AServerRestartedWithThePromptCacheReusesItsPrompts()
    {
        string path = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        var options = new ServerOptions { ModelPath = path, Parallel = 1, ContextSize = 256, Threads = 1, PromptCacheDir = _dir, RequestLogging = false };
        var prompt = Prompt(6, 100, 512);
        async Task<(int Cached, KvCacheReport Report)> Once()
        {
            using var runtime = ModelRuntime.Load(options);
            var stream = runtime.Engine.Submit(new GenerationRequest { Prompt = prompt, MaxTokens = 4 }, CancellationToken.None);
            await foreach (var _ in stream) { }
            return (stream.CachedTokens, runtime.Engine.Cache!);
        }
        Assert.Equal(0, (await Once()).Cached);
        var (cached, report) = await Once();
        Assert.Equal(3 * T, cached);
        Assert.Equal(3 * T, report.PromptCacheTokens);

        // With prefix caching in memory off (--cache-ram 0) the disk still serves the prompt.
        options = options with { CacheRamMiB = 0 };
        (cached, report) = await Once();
        Assert.False(report.CachingEnabled);
        Assert.Equal(3 * T, cached);
        Assert.Equal(0, report.UsedBlocks);
    }
}
