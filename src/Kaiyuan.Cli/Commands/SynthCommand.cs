using System.CommandLine;
using System.Diagnostics;
using Kaiyuan.Quantization;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan synth --like qwen2.5-0.5b --type q4_k_m -o FILE</c>: a random-weight model with real shapes, for benchmarks without a download.</summary>
internal static class SynthCommand
{
    public static Command Create()
    {
        var like = new Option<string>("--like") { Description = $"The model shape: {string.Join(", ", Synth.PublicNames)}", Required = true };
        var type = new Option<string>("--type") { Description = $"The quantization mix: {string.Join(", ", TensorTypePlan.Supported)}", DefaultValueFactory = _ => "q4_k_m" };
        var output = new Option<string>("--output", "-o") { Description = "The GGUF file to write", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Random seed (the same seed writes the same file)", DefaultValueFactory = _ => 1UL };
        var threads = Arguments.Threads();
        var vocab = new Option<string>("--vocab")
        {
            Description = "Copy the tokenizer and chat template from this GGUF (a vocab-only file will do), so the model can be served and chatted with",
        };
        var layers = new Option<int>("--layers")
        {
            Description = "Keep only the first N layers (0: all): a big model's per-layer speed in a file that fits this machine; the name records it",
        };
        Arguments.Range(layers, 0, 4096, "must be 0 (all) or a number of layers");
        var copying = new Option<bool>("--copying")
        {
            Description = "Write an induction-head circuit into the first two layers, so that the model's greedy continuation copies earlier text "
                + "(it predicts what followed the latest earlier occurrence of its last two tokens): a model to measure prompt-lookup speculation with. "
                + "Other layers still run at full cost but add nothing. qwen2 and llama shapes",
        };
        var nextn = new Option<bool>("--nextn")
        {
            Description = "Add a multi-token-prediction (NextN) layer after the main stack, as DeepSeek-V3 and GLM-4.5 ship it: a model to run --mtp with",
        };
        var cmd = new Command("synth", "Write a GGUF model of a known shape with random weights (for benchmarking)") { like, type, output, seed, threads, vocab, layers, copying, nextn };
        cmd.SetAction(p =>
        {
            var shape = Synth.Shape(p.GetValue(like)!);
            int keep = p.GetValue(layers);
            if (keep > 0) shape = Synth.WithLayers(shape, keep);
            if (p.GetValue(copying)) shape = Synth.WithCopying(shape);
            if (p.GetValue(nextn)) shape = Synth.WithNextn(shape);
            string typeText = p.GetValue(type)!;
            if (!FileTypes.TryParse(typeText, out var mix) || !TensorTypePlan.Supported.Contains(mix))
                throw new ArgumentException($"unknown quantization type '{typeText}' (supported: {string.Join(", ", TensorTypePlan.Supported)})");
            string outPath = Path.GetFullPath(p.GetValue(output)!);
            Gguf.GgufMetadata? vocabulary = null;
            if (p.GetValue(vocab) is { } vocabPath)
            {
                if (!File.Exists(vocabPath)) throw new FileNotFoundException($"--vocab: file not found: {vocabPath}");
                using var vocabFile = Gguf.GgufFile.Open(vocabPath);
                vocabulary = vocabFile.Metadata;
            }
            var bar = new ProgressBar("synthesizing", bytes: false);
            var clock = Stopwatch.StartNew();
            IReadOnlyList<TensorPlan> done;
            try
            {
                done = Synth.Write(shape, mix, outPath, p.GetValue(seed), p.GetValue(threads), bar.Report, vocabulary);
            }
            finally
            {
                bar.Finish();
            }
            long size = new FileInfo(outPath).Length;
            Console.Out.WriteLine($"wrote {outPath}: {shape.Name} ({shape.Architecture}), {mix}, {InfoCommand.Size(size)} in {clock.Elapsed.TotalSeconds:F1} s " +
                                  $"({string.Join(", ", done.GroupBy(x => x.Type).Select(g => $"{g.Key}×{g.Count()}"))})");
            return 0;
        });
        return cmd;
    }
}
