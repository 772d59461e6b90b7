using Kaiyuan.Chat;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;
using Kaiyuan.Speculative;

namespace Kaiyuan.Tests.Speculative;

/// <summary>Prompt-lookup drafting: what it proposes, and that verifying the proposals changes no output.</summary>
public sealed class PromptLookupTests : IDisposable
{
    private readonly WorkerPool _pool = new(2);

    public void Dispose() => _pool.Dispose();

    private static int[] Propose(int[] history, int maxDraft = 8, int room = 100)
    {
        var draft = new int[maxDraft];
        int n = new PromptLookup(maxDraft).Propose(history, draft, room);
        return draft[..n];
    }

    [Fact]
    public void ProposesWhatFollowedTheLongestLatestMatch()
    {
        // "5 6" occurs twice before the end; the latest occurrence (followed by 9 9) wins over the first (7 8).
        Assert.Equal([9, 9, 1, 5, 6], Propose([0, 5, 6, 7, 8, 2, 5, 6, 9, 9, 1, 5, 6], maxDraft: 5));
        // Wanting more than the latest match leaves, an earlier one with a longer continuation is taken.
        Assert.Equal([7, 8, 2, 5, 6, 9, 9, 1], Propose([0, 5, 6, 7, 8, 2, 5, 6, 9, 9, 1, 5, 6]));
        // Inside a run of repeats: the whole draft, not the one token after the run's previous step.
        Assert.Equal([4, 4, 4], Propose([1, 4, 4, 4, 4, 4, 4], maxDraft: 3));
        // The whole trigram "1 5 6" occurred at the start: that match is longer, so it wins.
        Assert.Equal([7, 8, 2, 5, 6, 9, 9, 1], Propose([1, 5, 6, 7, 8, 2, 5, 6, 9, 9, 1, 5, 6]));
        // A three-token match beats a later two-token one.
        Assert.Equal([40, 41], Propose([3, 4, 5, 40, 41, 0, 4, 5, 50, 3, 4, 5], maxDraft: 2));
        // Up to eight: two lines that share their last four tokens ("1 2 3 4") are told apart by the fifth back.
        Assert.Equal([60, 61], Propose([9, 1, 2, 3, 4, 60, 61, 8, 1, 2, 3, 4, 70, 71, 9, 1, 2, 3, 4], maxDraft: 2));
        // No earlier bigram ending in the last token: nothing (a lone repeated token is not enough).
        Assert.Empty(Propose([1, 2, 3, 4, 2]));
        Assert.Empty(Propose([7]));
        // Bounded by the room left (context, token limit).
        Assert.Equal([7], Propose([5, 6, 7, 8, 5, 6], room: 1));
        Assert.Empty(Propose([5, 6, 7, 8, 5, 6], room: 0));
    }

    [Fact]
    public void ProposalsShrinkAfterAMissAndGrowWhileTaken()
    {
        var lookup = new PromptLookup(8);
        int[] history = [.. Enumerable.Range(0, 20), .. Enumerable.Range(0, 2)];
        var draft = new int[8];
        Assert.Equal(8, lookup.Propose(history, draft, 100));
        lookup.Observe(8, 1);
        Assert.Equal(2, lookup.Propose(history, draft, 100));
        lookup.Observe(2, 2);
        Assert.Equal(4, lookup.Propose(history, draft, 100));
    }

    /// <summary>
    /// Greedy decoding with lookup speculation gives the same ids, token for token, as one token at a time, on
    /// every attention kind (dense GQA, MLA's latent cache, experts), while fewer passes run when the text repeats.
    /// </summary>
    [Theory]
    [InlineData("aidreams260K", "aidreams260K-f32.gguf")]
    [InlineData("llama", "llama-q4_k_m.gguf")]
    [InlineData("qwen3", "qwen3-q8_0.gguf")]
    [InlineData("deepseek2", "deepseek2-q4_k_m.gguf")]
    [InlineData("qwen3moe", "qwen3moe-q4_0.gguf")]
    public void GreedyOutputIsUnchanged(string family, string file)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(family, file));
        // A prompt that repeats itself, so there is something to look up from the start.
        int[] once = TestSequences.Prompt(11, 24);
        int[] prompt = [.. once, .. once[1..], .. once[1..12]];
        const int count = 48;
        var plain = new InferenceSession(model, 256, _pool);
        int[] expected = Generate(plain, prompt, count, lookup: 0);
        var speculative = new InferenceSession(model, 256, _pool);
        int[] actual = Generate(speculative, prompt, count, lookup: 8);
        Assert.Equal(expected, actual);
        // Never more passes; fewer wherever the greedy text continues a run it has seen before. Whether a random-weight
        // model's text does is chance (a change in the last bits of its logits can decide it), so that is checked, not assumed.
        Assert.True(speculative.Passes <= plain.Passes, $"{speculative.Passes} passes with lookup, {plain.Passes} without");
        if (ContinuesAUniqueTrigram(prompt, expected))
            Assert.True(speculative.Passes < plain.Passes, $"{speculative.Passes} passes with lookup, {plain.Passes} without");
        Assert.Equal(prompt.Length + count - 1, speculative.Position);
    }

    /// <summary>
    /// On a model that copies (<c>synth --copying</c>), as a model editing code does, lookup's proposals are taken: the
    /// same tokens as without it, nearly every drafted token accepted, and a fraction of the passes.
    /// </summary>
    [Fact]
    public void ACopyingModelTakesTheProposals()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-copying-{Guid.NewGuid():N}.gguf");
        try
        {
            Kaiyuan.Quantization.Synth.Write(Kaiyuan.Quantization.Synth.WithCopying(Kaiyuan.Quantization.Synth.Shape("tiny")), Kaiyuan.Quantization.FileType.Q8_0, path, seed: 2, threads: 2);
            using var model = ModelLoader.Load(path);
            var random = new Random(4);
            int[] text = [.. Enumerable.Range(0, 150).Select(_ => random.Next(512))];
            int[] prompt = [.. text, .. text[..4]];
            const int count = 120;
            var plain = new InferenceSession(model, 512, _pool);
            int[] expected = Generate(plain, prompt, count, lookup: 0);
            Assert.Equal(text[4..124], expected);
            long drafted = 0, accepted = 0;
            var speculative = new InferenceSession(model, 512, _pool);
            int[] actual = [.. Generator.Generate(speculative, prompt, new Sampler(SamplerOptions.Greedy), new GenerationOptions
            {
                MaxTokens = count, IgnoreEndOfGeneration = true, LookupDraftTokens = 6,
                OnVerified = (proposed, taken) => { drafted += proposed; accepted += taken; },
            }, TestContext.Current.CancellationToken).Select(t => t.Id)];
            Assert.Equal(expected, actual);
            Assert.True(drafted >= 80 && accepted >= drafted * 9 / 10, $"{accepted} of {drafted} drafted tokens accepted");
            Assert.True(speculative.Passes * 4 < plain.Passes, $"{speculative.Passes} passes with lookup, {plain.Passes} without");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Whether some generated token follows three tokens that occurred exactly once before, followed by that same token:
    /// there the lookup's longest match is that one occurrence, so its first proposed token is accepted.
    /// </summary>
    private static bool ContinuesAUniqueTrigram(int[] prompt, int[] generated)
    {
        int[] text = [.. prompt, .. generated];
        // The first generated token comes from the prompt's pass, and the last is never verified against a proposal.
        for (int i = prompt.Length + 1; i < text.Length - 1; i++)
        {
            var tail = text.AsSpan(i - 3, 3);
            int matches = 0, follows = -1;
            for (int j = 0; j + 3 < i; j++)
                if (text.AsSpan(j, 3).SequenceEqual(tail))
                {
                    matches++;
                    follows = text[j + 3];
                }
            if (matches == 1 && follows == text[i]) return true;
        }
        return false;
    }

    private static int[] Generate(InferenceSession session, int[] prompt, int count, int lookup, SamplerOptions? sampling = null) =>
        Generator.Generate(session, prompt, new Sampler(sampling ?? SamplerOptions.Greedy),
            new GenerationOptions { MaxTokens = count, IgnoreEndOfGeneration = true, LookupDraftTokens = lookup }).Select(t => t.Id).ToArray();

    /// <summary>
    /// Sampled output keeps the model's distribution: taking a draft token exactly when the sampled token equals it is
    /// speculative sampling's accept/reject rule for a draft that proposes one token with certainty. Thousands of
    /// seeded three-token samples with and without lookup, many of whose drafts are rejected, agree by a chi-square
    /// test on the second and third tokens' joint outcomes.
    /// </summary>
    [Fact]
    public void SampledOutputKeepsTheDistribution()
    {
        using var file = Kaiyuan.Gguf.GgufFile.Open(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        using var model = ModelLoader.Load(file);
        // The model's own greedy continuation C of a text P, then P again: drafts propose C, which a sample at a moderate
        // temperature follows often but not always.
        int[] p = Kaiyuan.Tokenizers.Tokenizer.FromGguf(file.Metadata).Encode("I had a dream.", addSpecial: true, parseSpecial: false);
        int[] continuation = Generate(new InferenceSession(model, 64, _pool), p, 8, lookup: 0);
        int[] prompt = [.. p, .. continuation, .. p[1..]];
        var sampling = new SamplerOptions { Temperature = 0.5f, TopK = 0, TopP = 1, MinP = 0 };
        const int runs = 2000;
        SamplingStatistics.AssertSpeculationKeepsTheDistribution(runs, prompt.Length, (speculative, seed) =>
        {
            var session = new InferenceSession(model, 64, _pool);
            return (session, Generate(session, prompt, 4, lookup: speculative ? 4 : 0, sampling with { Seed = seed }));
        });
    }

    /// <summary>
    /// The scheduler speculates per sequence inside its batched steps: greedy ids equal solo decoding for several
    /// concurrent sequences, drafts are accepted, and every block returns to the pool. (F32 weights: with quantized
    /// ones a chunked prefill inside mixed batches can already move a near-tied logit by rounding, speculation or not.)
    /// </summary>
    [Fact]
    public async Task SchedulerSpeculatesPerSequenceWithUnchangedOutput()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("llama", "llama-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 3, ContextLength = 256, PrefillChunk = 32, LookupDraft = 6 }, _pool);
        int[][] prompts = [.. Enumerable.Range(0, 4).Select(i =>
        {
            int[] once = TestSequences.Prompt(20 + i, 16 + 4 * i);
            return (int[])[.. once, .. once[1..]];
        })];
        const int count = 40;
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = count }, CancellationToken.None)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(TestSequences.Solo(model, prompts[i], count, _pool), results[i]);
        var report = scheduler.Speculation!;
        Assert.True(report.AcceptedTokens > 0 && report.DraftedTokens >= report.AcceptedTokens, $"{report}");
        Assert.Equal(0, scheduler.Load.BusySlots);
        var cache = scheduler.Cache;
        Assert.Equal(0, cache.UsedBlocks);
    }
}
