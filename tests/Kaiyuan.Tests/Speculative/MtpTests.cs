using Kaiyuan.Chat;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Quantization;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;
using Kaiyuan.Speculative;

namespace Kaiyuan.Tests.Speculative;

/// <summary>
/// Multi-token prediction (<c>--mtp</c>): a model's own NextN layer drafts, the model verifies. Files come from
/// <c>synth --nextn</c>: with random weights (drafts mostly rejected: the output must still not change) and with the
/// copying circuit, whose NextN layer copies one token further, so its drafts are right wherever the text repeats.
/// </summary>
public sealed class MtpTests : IDisposable
{
    private readonly WorkerPool _pool = new(2);
    private readonly List<string> _files = [];

    public void Dispose()
    {
        _pool.Dispose();
        foreach (var f in _files) File.Delete(f);
    }

    private string Synthesize(SynthShape shape, FileType type = FileType.Q8_0, ulong seed = 2, Kaiyuan.Gguf.GgufMetadata? vocabulary = null)
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-mtp-{Guid.NewGuid():N}.gguf");
        _files.Add(path);
        Synth.Write(shape, type, path, seed, threads: 2, vocabulary: vocabulary);
        return path;
    }

    private static int[] Generate(InferenceSession session, int[] prompt, int count, int mtp, SamplerOptions? sampling = null, Action<int, int>? verified = null) =>
        [.. Generator.Generate(session, prompt, new Sampler(sampling ?? SamplerOptions.Greedy), new GenerationOptions
        {
            MaxTokens = count, IgnoreEndOfGeneration = true, MtpDraftTokens = mtp, OnVerified = verified,
        }).Select(t => t.Id)];

    /// <summary>The NextN layer loads beside the main stack, which runs without it: the file's main model is unchanged.</summary>
    [Fact]
    public void TheNextnLayerLoadsAndTheMainModelIgnoresIt()
    {
        string plainPath = Synthesize(Synth.Shape("tiny"));
        string withPath = Synthesize(Synth.WithNextn(Synth.Shape("tiny")));
        using var plain = ModelLoader.Load(plainPath);
        using var with = ModelLoader.Load(withPath);
        Assert.False(plain.HasMultiTokenPrediction);
        Assert.True(with.HasMultiTokenPrediction);
        Assert.Equal(2, with.Shape.Layers);
        Assert.Equal(1, with.Shape.NextnLayers);
        int[] prompt = TestSequences.Prompt(7, 12);
        Assert.Equal(Generate(new InferenceSession(plain, 64, _pool), prompt, 8, mtp: 0), Generate(new InferenceSession(with, 64, _pool), prompt, 8, mtp: 0));
        var e = Assert.Throws<ArgumentException>(() => Generate(new InferenceSession(plain, 64, _pool), prompt, 4, mtp: 2));
        Assert.Contains("no multi-token-prediction", e.Message);
    }

    /// <summary>A NextN projection or norm of the wrong size is a load error that names the tensor, not a failure mid-generation.</summary>
    [Theory]
    [InlineData("blk.2.nextn.eh_proj.weight")]
    [InlineData("blk.2.nextn.hnorm.weight")]
    public void ANextnTensorOfTheWrongShapeIsALoadError(string tensor)
    {
        using var source = Kaiyuan.Gguf.GgufFile.Open(Synthesize(Synth.WithNextn(Synth.Shape("tiny")), FileType.F32));
        var writer = new Kaiyuan.Gguf.GgufWriter();
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        foreach (var t in source.Tensors)
        {
            // One row (or value) fewer: the data still matches the shape, the model does not.
            long[] dims = (long[])t.Dimensions.Clone();
            if (t.Name == tensor) dims[^1] -= 1;
            writer.AddTensor(t.Name, t.Type, dims, t.Bytes[..(int)(t.ByteSize / t.Dimensions[^1] * dims[^1])].ToArray());
        }
        var stream = new MemoryStream();
        writer.Write(stream);
        using var file = Kaiyuan.Gguf.GgufFile.FromBytes(stream.ToArray(), "rewritten.gguf");
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file));
        Assert.Contains($"'{tensor}'", e.Message);
    }

    /// <summary>
    /// Fixtures with a NextN layer appended as llama.cpp converts GLM-4.5 (block_count counts it, <c>nextn_predict_layers</c>
    /// says so, the layer is like the last full-attention main one, with its own <c>embed_tokens</c> and
    /// <c>shared_head_head</c>): the main stack still matches llama.cpp's golden logits, and the layer drafts without
    /// changing the greedy output. Per-layer tables of the metadata may list the NextN layer (deepseek32's indexer types)
    /// or stop at the main stack (qwen35's linear-attention pattern, where the NextN layer is full attention); a hybrid
    /// model loads the layer but refuses to draft with it.
    /// </summary>
    [Theory]
    [InlineData("glm4moe", 1)]
    [InlineData("deepseek32", 1)]
    [InlineData("qwen35", 3)]
    public void AFileWithANextnLayerKeepsItsGoldensAndDrafts(string folder, int copied)
    {
        using var source = Kaiyuan.Gguf.GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        int main = (int)source.Metadata.GetInteger($"{folder}.block_count", 0), d = (int)source.Metadata.GetInteger($"{folder}.embedding_length", 0);
        var writer = new Kaiyuan.Gguf.GgufWriter();
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        writer.Metadata.Set($"{folder}.block_count", Kaiyuan.Gguf.GgufValue.Of((uint)(main + 1)));
        writer.Metadata.Set($"{folder}.nextn_predict_layers", Kaiyuan.Gguf.GgufValue.Of(1u));
        if (folder == "deepseek32")
            writer.Metadata.Set("deepseek32.attention.indexer.types", Kaiyuan.Gguf.GgufValue.Of(Kaiyuan.Gguf.GgufArray.Of(Enumerable.Repeat(1, main + 1).ToArray())));
        string from = $"blk.{copied}.", to = $"blk.{main}.";
        foreach (var t in source.Tensors)
        {
            writer.AddTensor(t.Name, t.Type, t.Dimensions, t.Bytes.ToArray());
            if (t.Name.StartsWith(from, StringComparison.Ordinal)) writer.AddTensor(to + t.Name[from.Length..], t.Type, t.Dimensions, t.Bytes.ToArray());
            if (t.Name == "token_embd.weight") writer.AddTensor(to + "nextn.embed_tokens.weight", t.Type, t.Dimensions, t.Bytes.ToArray());
            if (t.Name == "output.weight") writer.AddTensor(to + "nextn.shared_head_head.weight", t.Type, t.Dimensions, t.Bytes.ToArray());
        }
        var random = new Random(5);
        float[] ones = [.. Enumerable.Repeat(1f, d)];
        float[] projection = [.. Enumerable.Range(0, 2 * d * d).Select(_ => (float)(random.NextDouble() - 0.5) / 16)];
        foreach (string norm in (string[])["enorm", "hnorm", "shared_head_norm"])
            writer.AddTensor($"{to}nextn.{norm}.weight", Kaiyuan.Gguf.GgmlType.F32, [d], System.Runtime.InteropServices.MemoryMarshal.AsBytes(ones.AsSpan()).ToArray());
        writer.AddTensor(to + "nextn.eh_proj.weight", Kaiyuan.Gguf.GgmlType.F32, [2 * d, d], System.Runtime.InteropServices.MemoryMarshal.AsBytes(projection.AsSpan()).ToArray());
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-nextn-{folder}-{Guid.NewGuid():N}.gguf");
        _files.Add(path);
        writer.Write(path);

        using var model = ModelLoader.Load(path);
        var golden = Kaiyuan.Tests.Models.Goldens.Load(folder, "f32")[0];
        var session = new InferenceSession(model, 256, _pool);
        var logits = session.Evaluate(golden.PromptIds).ToArray();
        for (int i = 0; i < 8; i++)
        {
            Assert.True(Kaiyuan.Tests.Models.Goldens.MaxAbsDiff(logits, golden.Logits[i]) <= 1e-3f, $"step {i}");
            logits = session.Evaluate([golden.Ids[i]]).ToArray();
        }
        Assert.True(model.HasMultiTokenPrediction);
        Assert.Equal(main, model.Shape.Layers);
        if (model.IsRecurrent)
        {
            Assert.Contains("hybrid", Assert.Throws<ArgumentException>(() => Generate(new InferenceSession(model, 256, _pool), golden.PromptIds, 4, mtp: 3)).Message);
            return;
        }
        int[] plain = Generate(new InferenceSession(model, 256, _pool), golden.PromptIds, 32, mtp: 0);
        long drafted = 0;
        Assert.Equal(plain, Generate(new InferenceSession(model, 256, _pool), golden.PromptIds, 32, mtp: 3, verified: (p, _) => drafted += p));
        Assert.True(drafted > 0, "nothing was drafted");
    }

    /// <summary>
    /// Greedy output with random NextN layers (a dense and an expert layer) is the same tokens as without, though most
    /// drafts are wrong; a second generation on the same session (a chat's next turn, going back into the first) too.
    /// </summary>
    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-qwen3moe")]
    [InlineData("tiny-deepseek32")]
    public void GreedyOutputIsUnchanged(string shape)
    {
        using var model = ModelLoader.Load(Synthesize(Synth.WithNextn(Synth.Shape(shape))));
        Assert.True(model.HasMultiTokenPrediction);
        int[] prompt = TestSequences.Prompt(11, 40);
        const int count = 40;
        var plain = new InferenceSession(model, 256, _pool);
        int[] expected = Generate(plain, prompt, count, mtp: 0);
        long drafted = 0;
        var speculative = new InferenceSession(model, 256, _pool);
        Assert.Equal(expected, Generate(speculative, prompt, count, mtp: 3, verified: (p, _) => drafted += p));
        Assert.True(drafted > 0, "nothing was drafted");
        Assert.Equal(prompt.Length + count - 1, speculative.Position);
        // The next turn shares the first 30 tokens: the session goes back and the drafter follows it.
        speculative.Truncate(30);
        plain.Truncate(30);
        int[] next = [.. prompt[30..], .. expected[..5]];
        Assert.Equal(Generate(plain, next, 20, mtp: 0), Generate(speculative, next, 20, mtp: 3));
    }

    /// <summary>
    /// On a copying model whose NextN layer copies one token further, the drafts are taken: the same tokens as without,
    /// nearly every drafted token accepted, several per pass, and a fraction of the passes. The layer's entries follow
    /// the session: made for every position, in batches of a long prompt as one at a time.
    /// </summary>
    [Fact]
    public void ACopyingNextnLayerDraftsWhatTheModelSays()
    {
        using var model = ModelLoader.Load(Synthesize(Synth.WithNextn(Synth.WithCopying(Synth.Shape("tiny")))));
        var random = new Random(4);
        int[] text = [.. Enumerable.Range(0, 300).Select(_ => random.Next(512))];
        int[] prompt = [.. text, .. text[..4]];
        const int count = 120;
        var plain = new InferenceSession(model, 1024, _pool);
        int[] expected = Generate(plain, prompt, count, mtp: 0);
        Assert.Equal(text[4..124], expected);
        long drafted = 0, accepted = 0;
        var speculative = new InferenceSession(model, 1024, _pool);
        int[] actual = Generate(speculative, prompt, count, mtp: 6, verified: (p, a) => { drafted += p; accepted += a; });
        Assert.Equal(expected, actual);
        Assert.True(drafted >= 80 && accepted >= drafted * 9 / 10, $"{accepted} of {drafted} drafted tokens accepted");
        TestContext.Current.SendDiagnosticMessage($"{accepted} of {drafted} accepted, {speculative.Passes} passes against {plain.Passes}");
        Assert.True(speculative.Passes * 3 < plain.Passes, $"{speculative.Passes} passes with multi-token prediction, {plain.Passes} without");
        Assert.InRange(speculative.Mtp!.Drafter.Entries(0), prompt.Length, speculative.Position);
    }

    /// <summary>
    /// The server's slots draft with the NextN layer together, within continuous batching: five requests of repeating
    /// text (prompts of 44–164 tokens, some long enough to prefill on threads of their own beside the others) over three
    /// slots give each the tokens it gives alone, most drafts are taken, in fewer steps than tokens, and every block returns.
    /// </summary>
    [Fact]
    public async Task TheSchedulerDraftsForEverySlot()
    {
        using var model = ModelLoader.Load(Synthesize(Synth.WithNextn(Synth.WithCopying(Synth.Shape("tiny")))));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 3, ContextLength = 256, PrefillChunk = 32, MtpDraft = 4 }, _pool);
        var random = new Random(8);
        int[][] prompts = [.. Enumerable.Range(0, 5).Select(i =>
        {
            int[] text = [.. Enumerable.Range(0, 40 + 30 * i).Select(_ => random.Next(512))];
            return (int[])[.. text, .. text[..4]];
        })];
        const int count = 40;
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = count }, TestContext.Current.CancellationToken)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(TestSequences.Solo(model, prompts[i], count, _pool), results[i]);
        var report = scheduler.Speculation!;
        Assert.True(report.DraftedTokens > 100 && report.AcceptedTokens > report.DraftedTokens * 8 / 10, $"{report}");
        Assert.True(scheduler.Steps < prompts.Length * count / 3, $"{scheduler.Steps} steps");
        Assert.Equal(0, scheduler.Load.BusySlots);
        Assert.Equal(0, scheduler.Cache.UsedBlocks);
    }

    /// <summary>
    /// A prompt served from the prefix cache has no hidden states on the slot it lands on; the slot takes the entries of
    /// the slot that computed them. After one request alone, two more with the same prompt (one on the other slot) draft
    /// as much per token as the first did, with the same output as alone.
    /// </summary>
    [Fact]
    public async Task ASlotTakesTheEntriesOfAPrefixAnotherSlotComputed()
    {
        using var model = ModelLoader.Load(Synthesize(Synth.WithNextn(Synth.WithCopying(Synth.Shape("tiny")))));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 2, ContextLength = 256, PrefillChunk = 32, MtpDraft = 4 }, _pool);
        var random = new Random(12);
        int[] text = [.. Enumerable.Range(0, 90).Select(_ => random.Next(512))];
        int[] prompt = [.. text, .. text[..4]];
        const int count = 60;
        int[] expected = TestSequences.Solo(model, prompt, count, _pool);
        var first = await TestSequences.Collect(scheduler.Submit(new GenerationRequest { Prompt = prompt, MaxTokens = count }, TestContext.Current.CancellationToken));
        Assert.Equal(expected, first);
        long alone = scheduler.Speculation!.DraftedTokens;
        var streams = Enumerable.Range(0, 2).Select(_ => scheduler.Submit(new GenerationRequest { Prompt = prompt, MaxTokens = count }, TestContext.Current.CancellationToken)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        Assert.All(results, r => Assert.Equal(expected, r));
        Assert.True(scheduler.Cache.HitTokens >= 2 * (prompt.Length - KvCache.BlockTokens), $"{scheduler.Cache.HitTokens} cached tokens");
        long together = scheduler.Speculation.DraftedTokens - alone;
        Assert.True(together >= alone * 9 / 5, $"{together} tokens drafted by the two, {alone} by the first alone");
    }

    /// <summary>The in-process API drafts with the NextN layer when asked, and says so in one line for a file without one.</summary>
    [Fact]
    public void ModelRuntimeTakesMultiTokenPrediction()
    {
        // The runtime serves chat, so the files take the 512-token vocabulary of the tiny trained model.
        using var vocabulary = Kaiyuan.Gguf.GgufFile.Open(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        string with = Synthesize(Synth.WithNextn(Synth.Shape("tiny")), vocabulary: vocabulary.Metadata);
        string without = Synthesize(Synth.Shape("tiny"), vocabulary: vocabulary.Metadata);
        using (var runtime = ModelRuntime.Load(new ModelOptions { ModelPath = with, MtpDraftTokens = 3, Parallel = 1, Threads = 1 }))
            Assert.Equal(new SpeculationReport(0, 0), runtime.Speculation);
        var e = Assert.Throws<ArgumentException>(() => ModelRuntime.Load(new ModelOptions { ModelPath = without, MtpDraftTokens = 3, Threads = 1 }));
        Assert.Contains("no multi-token-prediction (NextN) layer", e.Message);
    }

    /// <summary>
    /// Sampled output keeps the model's distribution: the layer's greedy draft is certain, so keeping it exactly when the
    /// model's own sample equals it is speculative sampling's accept/reject rule (checked by a two-sample chi-square test).
    /// The copying model at temperature 1.5 takes its copy about 60% of the time and a token a few bits away otherwise,
    /// so drafts are both taken and rejected.
    /// </summary>
    [Fact]
    public void SampledOutputKeepsTheDistribution()
    {
        using var model = ModelLoader.Load(Synthesize(Synth.WithNextn(Synth.WithCopying(Synth.Shape("tiny")))));
        var random = new Random(6);
        int[] text = [.. Enumerable.Range(0, 24).Select(_ => random.Next(512))];
        int[] prompt = [.. text, .. text[..4]];
        var sampling = new SamplerOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0 };
        SamplingStatistics.AssertSpeculationKeepsTheDistribution(2000, prompt.Length, (speculative, seed) =>
        {
            var session = new InferenceSession(model, 64, _pool);
            return (session, Generate(session, prompt, 4, speculative ? 3 : 0, sampling with { Seed = seed }));
        });
    }
}
