using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Quantization;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Quantization;

/// <summary><c>kaiyuan synth</c>: random-weight models of real shapes that load and run.</summary>
public sealed class SynthTests
{
    [Theory]
    [InlineData("tiny", FileType.Q4_K_M)]
    [InlineData("tiny", FileType.Q8_0)]
    [InlineData("tiny", FileType.Q4_0)]
    [InlineData("tiny", FileType.Q6_K)]
    [InlineData("tiny", FileType.F16)]
    [InlineData("tiny", FileType.IQ4_XS)]
    [InlineData("tiny-qwen3", FileType.Q4_K_M)]
    [InlineData("tiny-deepseek32", FileType.Q8_0)]
    [InlineData("tiny-qwen35", FileType.Q8_0)]
    [InlineData("tiny-qwen35", FileType.Q4_K_M)]
    [InlineData("tiny-qwen3moe", FileType.Q4_K_M)]
    public void SynthesizedModelLoadsAndRuns(string like, FileType mix)
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-synth-{Guid.NewGuid():N}.gguf");
        try
        {
            var shape = Synth.Shape(like);
            Synth.Write(shape, mix, path, seed: 7, threads: 2);
            using var model = ModelLoader.Load(path);
            Assert.Equal(shape.VocabSize, model.VocabSize);
            Assert.Equal(shape.Layers, model.Config.BlockCount);
            using var pool = new WorkerPool(2);
            // For a sparse model, more tokens than its top-k (8), so its later positions attend to a chosen few.
            int[] tokens = shape.Mla is { IndexerTopK: > 0 } ? [1, 17, 300, 42, 511, 5, 6, 7, 8, 9, 10, 11, 12] : [1, 17, 300, 42, 511];
            var batch = new InferenceSession(model, 64, pool, maxBatch: 8);
            float[] last = batch.Evaluate(tokens).ToArray();
            Assert.All(last, v => Assert.True(float.IsFinite(v)));
            Assert.True(last.Max() - last.Min() > 1e-3f, "random weights should give varied logits");

            var steps = new InferenceSession(model, 64, pool, maxBatch: 8);
            float[] stepLast = [];
            foreach (int t in tokens) stepLast = steps.Evaluate([t]).ToArray();
            for (int i = 0; i < last.Length; i++) Assert.True(MathF.Abs(last[i] - stepLast[i]) <= 1e-3f + 1e-3f * MathF.Abs(last[i]), $"logit {i}: {last[i]} vs {stepLast[i]}");

            // A benchmark's depth of random cache rows, then a step after it.
            using var deep = new InferenceSession(model, 64, threads: 1);
            deep.AdvanceWithRandomRows(40);
            Assert.Equal(40, deep.Position);
            Assert.All(deep.Evaluate([1]).ToArray(), v => Assert.True(float.IsFinite(v)));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void SameSeedWritesTheSameFile()
    {
        string a = Path.GetTempFileName(), b = Path.GetTempFileName();
        try
        {
            Synth.Write(Synth.Shape("tiny"), FileType.Q4_K_M, a, seed: 3, threads: 2);
            Synth.Write(Synth.Shape("tiny"), FileType.Q4_K_M, b, seed: 3, threads: 1);
            Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        }
        finally
        {
            File.Delete(a);
            File.Delete(b);
        }
    }

    [Fact]
    public void RealShapesGetLlamaCppsMix()
    {
        var shape = Synth.Shape("qwen2.5-0.5b");
        var plan = TensorTypePlan.Plan(Synth.Metadata(shape, FileType.Q4_K_M), Synth.Tensors(shape), FileType.Q4_K_M);
        Assert.Equal(290, plan.Count);
        // 896-wide rows do not split into 256-blocks: the tied embedding falls back to Q8_0 and most matrices to Q5_0.
        Assert.Equal(GgmlType.Q8_0, plan.Single(p => p.Tensor.Name == "token_embd.weight").Type);
        Assert.Equal(121, plan.Count(p => p.Type == GgmlType.F32));
        Assert.Equal(132, plan.Count(p => p.Type == GgmlType.Q5_0));
        Assert.Throws<ArgumentException>(() => Synth.Shape("no-such-model"));
        Assert.Contains("llama-1b", Synth.PublicNames);
        Assert.DoesNotContain("tiny", Synth.PublicNames);
    }

    /// <summary>
    /// The Qwen3-30B-A3B shape has the published model's parameters: 30.5 B in all, 3.3 B active per token (8 of 128
    /// experts, embeddings counted); <c>--layers</c> keeps the first layers and says so in the name, and refuses a cut the shape cannot take.
    /// </summary>
    [Fact]
    public void Qwen3MoeShapeHasThePublishedParameterCounts()
    {
        var shape = Synth.Shape("qwen3moe-30b-a3b");
        var tensors = Synth.Tensors(shape);
        long total = tensors.Sum(t => t.ElementCount);
        long experts = tensors.Where(t => t.Name.Contains("_exps.", StringComparison.Ordinal)).Sum(t => t.ElementCount);
        Assert.InRange(total / 1e9, 30.4, 30.6);
        Assert.InRange((total - experts * 120 / 128) / 1e9, 3.25, 3.4); // the published count includes the embeddings

        var cut = Synth.WithLayers(shape, 4);
        Assert.Equal(4, cut.Layers);
        Assert.Contains("first 4 of 48 layers", cut.Name);
        Assert.Equal(4, Synth.Tensors(cut).Count(t => t.Name.EndsWith("ffn_down_exps.weight", StringComparison.Ordinal)));
        Assert.Throws<ArgumentException>(() => Synth.WithLayers(shape, 49));
        Assert.Throws<ArgumentException>(() => Synth.WithLayers(Synth.Shape("qwen3.5-0.8b"), 6)); // groups of 4
        Assert.Throws<ArgumentException>(() => Synth.WithLayers(Synth.Shape("deepseek-v3-attention"), 1)); // only the dense layer
    }

    /// <summary>
    /// <c>--copying</c>: the model's greedy continuation of a text that restarts is the rest of the text, even where a
    /// three-token context repeats with different continuations (the circuit matches four tokens in this shape), on
    /// the quantized mixes too; the file keeps the shape's other tensors and runs at its cost.
    /// </summary>
    [Theory]
    [InlineData(FileType.Q4_K_M)]
    [InlineData(FileType.Q8_0)]
    [InlineData(FileType.Q4_0)]
    public void CopyingModelContinuesTheTextItHasSeen(FileType mix)
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-copying-{Guid.NewGuid():N}.gguf");
        try
        {
            var shape = Synth.WithCopying(Synth.Shape("tiny"));
            Assert.False(shape.TiedEmbeddings);
            Synth.Write(shape, mix, path, seed: 5, threads: 2);
            using var model = ModelLoader.Load(path);
            Assert.Contains(model.File.Tensors, t => t.Name == "output.weight");
            // 120 tokens of a 512-token vocabulary, so tokens and pairs recur; "7 8 9" twice, after different tokens
            // and before different ones.
            var random = new Random(11);
            int[] text = [.. Enumerable.Range(0, 120).Select(_ => random.Next(10, 512))];
            text[30..34].AsSpan().Clear();
            (text[30], text[31], text[32], text[33]) = (3, 7, 8, 9);
            (text[70], text[71], text[72], text[73]) = (4, 7, 8, 9);
            Assert.NotEqual(text[34], text[74]);
            int[] prompt = [.. text, .. text[..6]];
            using var session = new InferenceSession(model, 512, threads: 2);
            int[] continuation = [.. Generator.Generate(session, prompt, new Kaiyuan.Sampling.Sampler(Kaiyuan.Sampling.SamplerOptions.Greedy),
                new GenerationOptions { MaxTokens = 100, IgnoreEndOfGeneration = true }, TestContext.Current.CancellationToken).Select(t => t.Id)];
            Assert.Equal(text[6..106], continuation);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void CopyingNeedsAPlainDenseShape()
    {
        Assert.Contains("qwen2 or llama", Assert.Throws<ArgumentException>(() => Synth.WithCopying(Synth.Shape("tiny-qwen3"))).Message);
        Assert.Contains("plain attention", Assert.Throws<ArgumentException>(() => Synth.WithCopying(Synth.Shape("tiny-deepseek32") with { Architecture = "llama" })).Message);
        var copying = Synth.WithCopying(Synth.Shape("qwen2.5-0.5b"));
        Assert.Contains("(copying)", copying.Name);
        var md = Synth.Metadata(copying, FileType.Q4_K_M);
        // Five rotary pairs; the rest of each 64-wide head compares the last eight tokens' codes.
        Assert.Equal(10u, md.Get("qwen2.rope.dimension_count").Value);
        // The same tensors as the shape, plus an untied output head of the embedding's size.
        Assert.Equal(Synth.Tensors(Synth.Shape("qwen2.5-0.5b")).Count + 1, Synth.Tensors(copying).Count);
    }
}
