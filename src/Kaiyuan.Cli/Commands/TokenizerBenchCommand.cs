using System.CommandLine;
using System.Globalization;
using Kaiyuan.Tokenizers;
using Microsoft.ML.Tokenizers;

using Kaiyuan.Cli.Benchmarks;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench tokenize -m VOCAB.gguf</c>: our tokenizer against Microsoft.ML.Tokenizers' o200k (gpt-4o) tiktoken
/// on the same ~10 MB mixed corpus, single-threaded.
/// </summary>
internal static class TokenizerBenchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF vocabulary to benchmark (e.g. ggml-vocab-qwen3.gguf)", Required = true };
        var size = new Option<int>("--megabytes") { Description = "Corpus size in MB", DefaultValueFactory = _ => 10 };
        var runs = new Option<int>("--runs") { Description = "Timed runs per tokenizer (the median is reported)", DefaultValueFactory = _ => 3 };
        var command = new Command("tokenize", "Measure tokenizer throughput against Microsoft.ML.Tokenizers (o200k)") { model, size, runs };
        command.SetAction(parse => TokenizeCommand.Run(parse, () =>
        {
            var output = parse.InvocationConfiguration.Output;
            string corpus = TokenizerBenchmark.BuildCorpus(Math.Max(1, parse.GetValue(size)) * 1_000_000);
            var reference = TiktokenTokenizer.CreateForModel("gpt-4o");
            var result = TokenizerBenchmark.Run(parse.GetValue(model)!, corpus, text => reference.CountTokens(text), parse.GetValue(runs));
            var c = CultureInfo.InvariantCulture;
            output.WriteLine(string.Create(c, $"corpus: {result.CorpusMegabytes:F2} MB (English, Chinese, code; deterministic)"));
            output.WriteLine(string.Create(c, $"vocab load: {result.VocabLoadMilliseconds:F0} ms"));
            output.WriteLine(string.Create(c, $"kaiyuan: {result.OursMegabytesPerSecond:F2} MB/s ({result.OursTokens} tokens)"));
            output.WriteLine(string.Create(c, $"Microsoft.ML.Tokenizers o200k: {result.ReferenceMegabytesPerSecond:F2} MB/s ({result.ReferenceTokens} tokens)"));
        }));
        return command;
    }
}
