using System.CommandLine;
using System.Diagnostics;
using Kaiyuan.Models;
using Kaiyuan.Quantization;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan imatrix -m MODEL -f TEXT [-o imatrix.gguf]</c>: an importance matrix for <c>kaiyuan quantize --imatrix</c>,
/// computed as llama.cpp's <c>llama-imatrix</c> computes it and written in its GGUF form, so either tool reads the other's.
/// </summary>
internal static class ImatrixCommand
{
    public static Command Create()
    {
        var model = Arguments.Model();
        var text = new Option<string>("--file", "-f") { Description = "The calibration text (UTF-8)", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "The importance matrix to write", DefaultValueFactory = _ => "imatrix.gguf" };
        var chunkSize = new Option<int>("--ctx-size", "-c") { Description = "Tokens per chunk, each evaluated from an empty cache", DefaultValueFactory = _ => 512 };
        Arguments.Range(chunkSize, 16, 65536, "a chunk holds 16…65536 tokens");
        var chunks = new Option<int>("--chunks") { Description = "Most chunks to process (default: all of the text)" };
        Arguments.Range(chunks, 0, int.MaxValue, "the number of chunks cannot be negative");
        var threads = Arguments.Threads();
        var cmd = new Command("imatrix", "Compute an importance matrix from a text (llama.cpp's llama-imatrix, GGUF output) for quantize --imatrix")
        {
            model, text, output, chunkSize, chunks, threads,
        };
        cmd.SetAction(p =>
        {
            string path = StoreCommands.ResolveModel(p, p.GetValue(model)!);
            string textPath = p.GetValue(text)!;
            string outPath = Path.GetFullPath(p.GetValue(output)!);
            if (Path.GetDirectoryName(outPath) is { } folder && !Directory.Exists(folder))
                throw new DirectoryNotFoundException($"--output: the folder {folder} does not exist");
            using var loaded = ModelLoader.Load(path);
            if (!loaded.File.Metadata.Contains("tokenizer.ggml.model")) throw new NotSupportedException($"{Path.GetFileName(path)} has no tokenizer to read the text with");
            var tokenizer = Tokenizer.FromGguf(loaded.File.Metadata);
            // Tokenized whole and without special tokens; each chunk then starts with BOS where the vocabulary adds one.
            int[] tokens = tokenizer.Encode(File.ReadAllText(textPath), addSpecial: false, parseSpecial: false);
            int size = p.GetValue(chunkSize);
            Console.Error.WriteLine($"{textPath}: {tokens.Length} tokens, {tokens.Length / size} chunks of {size}");
            var clock = Stopwatch.StartNew();
            var matrix = ImportanceMatrix.Compute(loaded, tokens, outPath, new ImportanceOptions
            {
                ChunkSize = size,
                MaxChunks = p.GetValue(chunks),
                Threads = p.GetValue(threads),
                Bos = tokenizer.AddBos ? tokenizer.BosId : null,
                Dataset = textPath,
                // llama-imatrix's compact form: [chunk]perplexity so far, on one line.
                Progress = (done, all, perplexity) => Console.Error.Write($"[{done}]{perplexity:F4}{(done == all ? "\n" : ",")}"),
            });
            Console.Out.WriteLine($"wrote {outPath}: {matrix.EntryCount} entries from {matrix.ChunkCount} chunks of {size} tokens in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }
}
