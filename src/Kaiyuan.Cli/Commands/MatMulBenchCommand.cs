using Kaiyuan.Gguf;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Kaiyuan.Kernels;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench matmul</c>: the quantized matrix kernels alone, like llama.cpp's <c>test-backend-ops perf</c>: a
/// random weight matrix of each type times 1…N activation rows, median time, GMAC/s and weight bytes read per second.
/// </summary>
internal static class MatMulBenchCommand
{
    public static Command Create()
    {
        var types = new Option<string>("--types") { Description = "Weight types, comma-separated", DefaultValueFactory = _ => "q8_0,q4_0,q5_0,q4_k,q6_k" };
        var rows = new Option<int>("--rows") { Description = "Output features (weight rows)", DefaultValueFactory = _ => 4864 };
        var cols = new Option<int>("--cols") { Description = "Input features (a multiple of 256 suits every type)", DefaultValueFactory = _ => 1024 };
        var tokens = new Option<string>("--tokens") { Description = "Activation rows per multiply, comma-separated", DefaultValueFactory = _ => "1,128" };
        var threads = Arguments.Threads();
        var reps = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions (the median is reported)", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "Print one JSON array" };
        var cold = new Option<bool>("--cold") { Description = "Read the weights from memory on every multiply, as decode does (copies of the matrix past the caches, taken in turn)" };
        var command = new Command("matmul", "Measure the quantized matmul kernels (GMAC/s, weight GB/s)") { types, rows, cols, tokens, threads, reps, json, cold };
        command.SetAction(p =>
        {
            var typeList = p.GetValue(types)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => Enum.TryParse<GgmlType>(t, ignoreCase: true, out var g) && KernelBenchmarks.Supports(g) ? g : throw new ArgumentException($"unknown or unsupported weight type '{t}'"))
                .ToArray();
            var tokenList = p.GetValue(tokens)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => int.TryParse(t, CultureInfo.InvariantCulture, out int n) && n is > 0 and <= 4096 ? n : throw new ArgumentException($"--tokens: '{t}' is not a count from 1 to 4096"))
                .ToArray();
            int r = p.GetValue(rows), c = p.GetValue(cols), repetitions = Math.Max(1, p.GetValue(reps));
            if (r is < 1 or > 1 << 20 || c is < 1 or > 1 << 16) throw new ArgumentException("--rows must be 1…1048576 and --cols 1…65536");
            int threadCount = Math.Max(1, p.GetValue(threads));
            bool fromMemory = p.GetValue(cold);
            var results = typeList.SelectMany(type => KernelBenchmarks.MatMul(type, r, c, tokenList, repetitions, threadCount, fromMemory)).ToList();
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(results.Select(x => new Dictionary<string, object>
                {
                    ["type"] = x.Type.ToString().ToLowerInvariant(),
                    ["rows"] = r,
                    ["cols"] = c,
                    ["tokens"] = x.Tokens,
                    ["threads"] = threadCount,
                    ["ms"] = Math.Round(x.Seconds * 1e3, 4),
                    ["gmac_s"] = Math.Round(x.GmacPerSecond, 3),
                    ["weight_gb_s"] = Math.Round(x.WeightGbPerSecond, 3),
                    ["cold"] = fromMemory,
                })));
                return 0;
            }
            Console.WriteLine($"matrix {r} × {c}, threads: {threadCount}, median of {repetitions}" + (fromMemory ? ", weights read from memory (--cold)" : ""));
            foreach (var x in results)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{x.Type,-5} tokens {x.Tokens,5}: {x.Seconds * 1e3,9:F3} ms {x.GmacPerSecond,8:F2} GMAC/s {x.WeightGbPerSecond,7:F2} GB/s weights"));
            return 0;
        });
        return command;
    }
}
