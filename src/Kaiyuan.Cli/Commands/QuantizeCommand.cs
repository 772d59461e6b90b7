using System.CommandLine;
using System.Diagnostics;
using Kaiyuan.Gguf;
using Kaiyuan.Quantization;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan quantize IN.gguf OUT.gguf TYPE</c>: rewrite a model in a quantization mix, choosing per-tensor types as llama.cpp does.</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "The model to quantize: a GGUF file (F32/F16/BF16 is best) or a store reference" };
        var output = new Argument<string>("output") { Description = "The GGUF file to write" };
        var type = new Argument<string>("type") { Description = $"The mix: {string.Join(", ", TensorTypePlan.Supported)}" };
        var threads = Arguments.Threads();
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the type each tensor would get, and write nothing" };
        var imatrix = new Option<string?>("--imatrix")
        {
            Description = "An importance matrix (llama.cpp's imatrix GGUF or .dat, or `kaiyuan imatrix`'s) to weight each column's error by",
        };
        var cmd = new Command("quantize", "Quantize a GGUF model (the same per-tensor types as llama.cpp's llama-quantize)") { input, output, type, threads, dryRun, imatrix };
        cmd.SetAction(p =>
        {
            string typeText = p.GetValue(type)!;
            if (!FileTypes.TryParse(typeText, out var mix) || !TensorTypePlan.Supported.Contains(mix))
                throw new ArgumentException($"unknown quantization type '{typeText}' (supported: {string.Join(", ", TensorTypePlan.Supported)})");
            string inPath = StoreCommands.ResolveModel(p, p.GetValue(input)!);
            string outPath = Path.GetFullPath(p.GetValue(output)!);
            if (outPath == Path.GetFullPath(inPath)) throw new ArgumentException("the output would overwrite the input; choose another file");
            // Said before the work starts, and in place of .NET's wording about the temporary ".partial" file.
            if (Path.GetDirectoryName(outPath) is { } folder && !Directory.Exists(folder))
                throw new DirectoryNotFoundException($"<output>: the folder {folder} does not exist");
            using var file = GgufFile.Open(inPath);
            ImportanceMatrix? importance = null;
            string? importancePath = p.GetValue(imatrix);
            if (importancePath is not null)
            {
                importance = ImportanceMatrix.Load(Path.GetFullPath(importancePath));
                Console.Error.WriteLine($"importance matrix: {importance.EntryCount} entries from {importancePath}" +
                                        (importance.ChunkCount > 0 ? $", {importance.ChunkCount} chunks" : ""));
            }

            if (p.GetValue(dryRun))
            {
                foreach (var plan in TensorTypePlan.Plan(file, mix, withImportance: importance is not null))
                    Console.Out.WriteLine($"{plan.Tensor.Name,-40} {plan.Tensor.Type,-6} -> {plan.Type,-6}{(plan.Note is null ? "" : "  (" + plan.Note + ")")}");
                return 0;
            }
            var bar = new ProgressBar("quantizing", bytes: false);
            var quantizer = new ModelQuantizer
            {
                Threads = p.GetValue(threads),
                Progress = bar.Report,
                Importance = importance,
                ImportanceFile = importancePath,
            };
            var clock = Stopwatch.StartNew();
            IReadOnlyList<TensorPlan> done;
            try
            {
                done = quantizer.Quantize(file, outPath, mix);
            }
            finally
            {
                bar.Finish();
            }
            foreach (var plan in done.Where(x => x.Note is not null)) Console.Error.WriteLine($"{plan.Tensor.Name}: {plan.Note}");
            long size = new FileInfo(outPath).Length;
            Console.Out.WriteLine($"wrote {outPath}: {mix}, {InfoCommand.Size(file.FileSize)} -> {InfoCommand.Size(size)} in {clock.Elapsed.TotalSeconds:F1} s " +
                                  $"({string.Join(", ", done.GroupBy(x => x.Type).Select(g => $"{g.Key}×{g.Count()}"))})");
            return 0;
        });
        return cmd;
    }
}
