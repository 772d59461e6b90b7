using Kaiyuan.Chat;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;
using Kaiyuan.Speculative;
using Kaiyuan.Tests.Cli;

namespace Kaiyuan.Tests.Speculative;

/// <summary>Speculative decoding with a draft model: the same outputs as decoding alone, with fewer passes of the target.</summary>
public sealed class DraftModelTests : IDisposable
{
    private readonly WorkerPool _pool = new(2);

    public void Dispose() => _pool.Dispose();

    private static int[] Generate(InferenceSession session, int[] prompt, int count, DraftModel? draft, SamplerOptions? sampling = null) =>
        Generator.Generate(session, prompt, new Sampler(sampling ?? SamplerOptions.Greedy),
            new GenerationOptions { MaxTokens = count, IgnoreEndOfGeneration = true, Draft = draft }).Select(t => t.Id).ToArray();

    /// <summary>
    /// Greedy ids with a draft equal one token at a time, token for token. A quantized copy of the target drafts well, so
    /// the target runs fewer passes; a different model (the fixtures share one vocabulary) drafts badly, and still changes
    /// nothing.
    /// </summary>
    [Theory]
    [InlineData("qwen3", "qwen3-q8_0.gguf", "qwen3", "qwen3-q4_0.gguf", true)]
    [InlineData("llama", "llama-q4_k_m.gguf", "llama", "llama-q8_0.gguf", true)]
    [InlineData("aidreams260K", "aidreams260K-f32.gguf", "aidreams260K", "aidreams260K-q6_k.gguf", true)]
    [InlineData("deepseek2", "deepseek2-q4_k_m.gguf", "deepseek2", "deepseek2-q4_k_m.gguf", true)]
    [InlineData("qwen3", "qwen3-f32.gguf", "llama", "llama-f32.gguf", false)]
    public void GreedyOutputIsUnchanged(string family, string file, string draftFamily, string draftFile, bool agrees)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(family, file));
        using var draftModel = ModelLoader.Load(Fixtures.ModelPath(draftFamily, draftFile));
        var draft = new DraftModel(draftModel, model, maxDraft: 6);
        int[] prompt = TestSequences.Prompt(31, 20);
        const int count = 48;
        var plain = new InferenceSession(model, 256, _pool);
        int[] expected = Generate(plain, prompt, count, draft: null);
        var speculative = new InferenceSession(model, 256, _pool);
        Assert.Equal(expected, Generate(speculative, prompt, count, draft));
        Assert.Equal(prompt.Length + count - 1, speculative.Position);
        if (agrees) Assert.True(speculative.Passes < plain.Passes * 2 / 3, $"{speculative.Passes} passes with the draft, {plain.Passes} without");
        // Generating again on the same draft (a chat's next turn) feeds it only what changed, and still changes nothing.
        var again = new InferenceSession(model, 256, _pool);
        Assert.Equal(expected[..20], Generate(again, prompt, 20, draft));
    }

    /// <summary>
    /// Sampled output keeps the target's distribution: the draft proposes its greedy choice, which is certain, so keeping
    /// it exactly when the target's sample equals it is speculative sampling's accept/reject rule. Thousands of seeded
    /// three-token samples with and without the draft agree by a two-sample chi-square test on the second and third
    /// tokens' joint outcomes.
    /// </summary>
    [Fact]
    public void SampledOutputKeepsTheDistribution()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        using var draftModel = ModelLoader.Load(Fixtures.ModelPath("aidreams260K", "aidreams260K-q6_k.gguf"));
        var draft = new DraftModel(draftModel, model, maxDraft: 4);
        int[] prompt = TestSequences.Prompt(5, 12);
        var sampling = new SamplerOptions { Temperature = 0.7f, TopK = 0, TopP = 1, MinP = 0 };
        const int runs = 2000;
        SamplingStatistics.AssertSpeculationKeepsTheDistribution(runs, prompt.Length, (speculative, seed) =>
        {
            var session = new InferenceSession(model, 64, _pool);
            return (session, Generate(session, prompt, 4, speculative ? draft : null, sampling with { Seed = seed }));
        });
    }

    /// <summary>A draft with another vocabulary, or a hybrid model whose state cannot take tokens back, is refused in one line.</summary>
    [Fact]
    public void MismatchedVocabularyAndHybridModelsAreRefused()
    {
        using var target = ModelLoader.Load(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        using var stories = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        var e = Assert.Throws<ArgumentException>(() => new DraftModel(stories, target));
        Assert.Contains("vocabulary", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        using var hybrid = ModelLoader.Load(Fixtures.ModelPath("qwen35", "qwen35-q8_0.gguf"));
        Assert.True(hybrid.IsRecurrent);
        Assert.Contains("hybrid", Assert.Throws<ArgumentException>(() => new DraftModel(target, hybrid)).Message, StringComparison.Ordinal);
        Assert.Contains("hybrid", Assert.Throws<ArgumentException>(() => new DraftModel(hybrid, target)).Message, StringComparison.Ordinal);
        // Prompt lookup and a draft model together: one kind of speculation at a time.
        var both = new GenerationOptions { LookupDraftTokens = 4, Draft = new DraftModel(target, target) };
        Assert.Throws<ArgumentException>(() => Generator.Generate(new InferenceSession(target, 64, _pool), [1, 5], new Sampler(SamplerOptions.Greedy), both, TestContext.Current.CancellationToken).ToList());
    }

    /// <summary>
    /// Serving: each slot has its own draft state, and the slots draft in shared batched passes. More sequences than
    /// slots (so a slot's draft passes from one sequence to the next) give the ids of solo decoding; drafts are
    /// accepted and every block returns.
    /// (F32 weights, as the lookup test: quantized ones round differently in mixed batches, speculation or not.)
    /// </summary>
    [Fact]
    public async Task SchedulerDraftsPerSlotWithUnchangedOutput()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("llama", "llama-f32.gguf"));
        using var draftModel = ModelLoader.Load(Fixtures.ModelPath("llama", "llama-q8_0.gguf"));
        var draft = new DraftModel(draftModel, model, maxDraft: 4);
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 2, ContextLength = 256, PrefillChunk = 32, DraftModel = draft }, _pool);
        int[][] prompts = [.. Enumerable.Range(0, 5).Select(i => TestSequences.Prompt(40 + i, 12 + 5 * i))];
        const int count = 40;
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = count }, TestContext.Current.CancellationToken)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(TestSequences.Solo(model, prompts[i], count, _pool), results[i]);
        var report = scheduler.Speculation!;
        Assert.True(report.AcceptedTokens > report.DraftedTokens / 2 && report.DraftedTokens > 0, $"{report}");
        // The slots draft together: a sequence drafting alone takes exactly one pass per drafted token (the first after
        // catching up, then one per token fed back), so fewer passes than tokens means slots shared them (111 for 164).
        Assert.True(scheduler.DraftPasses < report.DraftedTokens * 9 / 10, $"{scheduler.DraftPasses} draft passes for {report.DraftedTokens} drafted tokens");
        // Fewer steps than one token per step would take (5 × 40 tokens over 2 slots).
        Assert.True(scheduler.Steps < prompts.Length * count / 2, $"{scheduler.Steps} steps");
        Assert.Equal(0, scheduler.Load.BusySlots);
        Assert.Equal(0, scheduler.Cache.UsedBlocks);
    }

    /// <summary>
    /// The server's slots draft together (<see cref="DraftBatch"/>) and propose the draft's greedy continuation of each
    /// history, token by token on a session of its own: for a 700-token history (a catch-up longer than one batch) beside a short one, then after each took some
    /// of its draft and a new token (a catch-up of a few tokens), then after the slots swap sequences. The draft is a
    /// copying model (<c>synth --copying</c>), whose choices have wide margins, so batched rounding cannot tip them.
    /// </summary>
    [Fact]
    public void SlotsDraftingTogetherProposeWhatEachProposesAlone()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-draft-{Guid.NewGuid():N}.gguf");
        try
        {
            var vocabulary = new Kaiyuan.Gguf.GgufMetadata();
            vocabulary.Set("tokenizer.ggml.tokens", Kaiyuan.Gguf.GgufValue.Of(Kaiyuan.Gguf.GgufArray.Of([.. Enumerable.Range(0, 512).Select(i => $"t{i}")])));
            Kaiyuan.Quantization.Synth.Write(Kaiyuan.Quantization.Synth.WithCopying(Kaiyuan.Quantization.Synth.Shape("tiny")), Kaiyuan.Quantization.FileType.Q8_0, path,
                seed: 9, threads: 2, vocabulary: vocabulary);
            using var model = ModelLoader.Load(path);
            var draft = new DraftModel(model, model, maxDraft: 6);
            var batch = new DraftBatch(draft, slots: 2, contextLength: 1024, _pool);
            var random = new Random(3);
            int[] text = [.. Enumerable.Range(0, 400).Select(_ => random.Next(512))];
            List<int> longHistory = [.. text, .. text, .. text[..5]], shortHistory = [.. text[100..140], .. text[100..103]];
            for (int round = 0; round < 3; round++)
            {
                batch.Prepare(new[] { (0, longHistory, 6), (1, shortHistory, 4) });
                int[] first = Propose(batch.ForSlot(0), longHistory, 6), second = Propose(batch.ForSlot(1), shortHistory, 4);
                Assert.Equal(Greedy(longHistory, 6), first);
                Assert.Equal(Greedy(shortHistory, 4), second);
                // A lone sequence's proposer (generate, run) drafts the same.
                Assert.Equal(first, Propose(draft.CreateProposer(1024, _pool), longHistory, 6));
                Assert.Equal(6, first.Length);
                // The copying draft continues the text it has seen.
                if (round == 0) Assert.Equal(text[5..11], first);
                // Each takes two of its draft tokens and one of its own, then the next step drafts again.
                longHistory.AddRange([first[0], first[1], 7]);
                shortHistory.AddRange([second[0], second[1], 7]);
                if (round == 1) (longHistory, shortHistory) = (shortHistory, longHistory);
            }
            // Per round, the first slot's six tokens take six passes (one catching up, five feeding back) and the second's
            // four ride along; the two catch-ups of 800-odd tokens take a second pass. Alone: 6 + 4 a round, 30 and more.
            Assert.Equal(3 * 6 + 2, batch.Passes);
        }
        finally
        {
            File.Delete(path);
        }

        // The reference: the draft's greedy continuation, one token at a time on a session of its own.
        int[] Greedy(List<int> history, int count)
        {
            using var model = ModelLoader.Load(path);
            var session = new InferenceSession(model, 1024, _pool);
            var tokens = new int[count];
            var logits = session.Evaluate(history.ToArray()).ToArray();
            for (int i = 0; i < count; i++)
            {
                tokens[i] = Array.IndexOf(logits, logits.Max());
                logits = session.Evaluate([tokens[i]]).ToArray();
            }
            return tokens;
        }

        static int[] Propose(IDraftProposer proposer, List<int> history, int room)
        {
            var draft = new int[proposer.MaxDraft];
            return draft[..proposer.Propose(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history), draft, room)];
        }
    }

    /// <summary>The in-process API loads the draft beside the model and reports its speculation; a mismatched one is refused.</summary>
    [Fact]
    public void ModelRuntimeLoadsTheDraft()
    {
        string path = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        using (var runtime = ModelRuntime.Load(new ModelOptions { ModelPath = path, DraftModelPath = Fixtures.ModelPath("aidreams260K", "aidreams260K-q6_k.gguf"), Parallel = 1, Threads = 1 }))
            Assert.Equal(new SpeculationReport(0, 0), runtime.Speculation);
        Assert.Throws<ArgumentException>(() => ModelRuntime.Load(new ModelOptions { ModelPath = path, DraftModelPath = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"), Threads = 1 }));
    }

    /// <summary><c>generate --model-draft</c> prints the ids plain decoding prints; a draft with another vocabulary is a one-line error.</summary>
    [Fact]
    public void GenerateWithModelDraft()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf");
        string[] common = ["generate", "-m", model, "--prompt-ids", "1,50,100,7,300,42", "-n", "24", "--temp", "0", "--ignore-eos", "--json", "-t", "2"];
        var plain = KaiyuanProcess.Run(common);
        var drafted = KaiyuanProcess.Run([.. common, "--model-draft", Fixtures.ModelPath("qwen3", "qwen3-q4_0.gguf"), "--draft-max", "5"]);
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.True(drafted.ExitCode == 0, drafted.Stderr);
        Assert.Equal(plain.Stdout, drafted.Stdout);
        var refused = KaiyuanProcess.Run([.. common, "--model-draft", Fixtures.ModelPath("stories260K", "stories260K-f32.gguf")]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("vocabulary", refused.Stderr, StringComparison.Ordinal);
        Assert.Single(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
