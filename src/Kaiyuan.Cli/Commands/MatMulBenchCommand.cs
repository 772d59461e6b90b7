using Kaiyuan.Gguf;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Kaiyuan.Kernels;
using Kaiyuan.Tensors;

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
        var command = new Command("matmul", "Measure the quantized matmul kernels (GMAC/s, weight GB/s)") { types, rows, cols, tokens, threads, reps, json };
        command.SetAction(p =>
        {
            var typeList = p.GetValue(types)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => Enum.TryParse<GgmlType>(t, ignoreCase: true, out var g) && QuantizedDot.IsSupported(g) ? g : throw new ArgumentException($"unknown or unsupported weight type '{t}'"))
                .ToArray();
            var tokenList = p.GetValue(tokens)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => int.TryParse(t, CultureInfo.InvariantCulture, out int n) && n is > 0 and <= 4096 ? n : throw new ArgumentException($"--tokens: '{t}' is not a count from 1 to 4096"))
                .ToArray();
            int r = p.GetValue(rows), c = p.GetValue(cols), repetitions = Math.Max(1, p.GetValue(reps));
            if (r is < 1 or > 1 << 20 || c is < 1 or > 1 << 16) throw new ArgumentException("--rows must be 1…1048576 and --cols 1…65536");
            using var pool = new WorkerPool(p.GetValue(threads));
            var results = typeList.SelectMany(type => Measure(type, r, c, tokenList, repetitions, pool)).ToList();
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(results.Select(x => new Dictionary<string, object>
                {
                    ["type"] = x.Type.ToString().ToLowerInvariant(),
                    ["rows"] = r,
                    ["cols"] = c,
                    ["tokens"] = x.Tokens,
                    ["threads"] = pool.Threads,
                    ["ms"] = Math.Round(x.Seconds * 1e3, 4),
                    ["gmac_s"] = Math.Round(x.GmacPerSecond, 3),
                    ["weight_gb_s"] = Math.Round(x.WeightGbPerSecond, 3),
                })));
                return 0;
            }
            Console.WriteLine($"matrix {r} × {c}, threads: {pool.Threads}, median of {repetitions}");
            foreach (var x in results)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{x.Type,-5} tokens {x.Tokens,5}: {x.Seconds * 1e3,9:F3} ms {x.GmacPerSecond,8:F2} GMAC/s {x.WeightGbPerSecond,7:F2} GB/s weights"));
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Random quants for a type Kaiyuan reads but does not write yet (i-quants, ternary): speed does not depend on the
    /// values, only the block scale (an fp16) is kept small and finite.
    /// </summary>
    private static void RandomBlocks(GgmlType type, byte[] weights, Random random)
    {
        int scaleAt = type switch
        {
            GgmlType.IQ4_NL => BlockLayouts.IQ4_NL.D,
            GgmlType.IQ4_XS => BlockLayouts.IQ4_XS.D,
            GgmlType.TQ1_0 => BlockLayouts.TQ1_0.D,
            GgmlType.TQ2_0 => BlockLayouts.TQ2_0.D,
            _ => throw new ArgumentException($"cannot make {type} weights to measure"),
        };
        random.NextBytes(weights);
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        ushort scale = BitConverter.HalfToUInt16Bits((Half)0.01f);
        for (int at = 0; at < weights.Length; at += blockBytes) System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(weights.AsSpan(at + scaleAt), scale);
    }

    public sealed record Result(GgmlType Type, int Tokens, double Seconds, double GmacPerSecond, double WeightGbPerSecond);

    public static unsafe IEnumerable<Result> Measure(GgmlType type, int rows, int cols, int[] tokenCounts, int repetitions, WorkerPool pool)
    {
        var (blockSize, _) = GgmlTypeInfo.Geometry(type);
        if (cols % blockSize != 0) throw new ArgumentException($"--cols {cols} is not a multiple of the {type} block size {blockSize}");
        var random = new Random(7);
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, cols);
        var weights = new byte[(long)rows * rowBytes];
        var row = new float[cols];
        if (Quantize.IsSupported(type))
        {
            for (int i = 0; i < rows; i++)
            {
                for (int j = 0; j < cols; j++) row[j] = (float)(random.NextDouble() * 2 - 1);
                Quantize.Row(type, row, weights.AsSpan(i * rowBytes, rowBytes));
            }
        }
        else RandomBlocks(type, weights, random);
        var results = new List<Result>();
        fixed (byte* w = weights)
        {
            var matrix = new QuantMatrix(w, type, rows, cols);
            foreach (int tokens in tokenCounts)
            {
                var x = new float[tokens * cols];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
                var y = new float[(long)tokens * rows];
                var scratch = new byte[MatMul.ScratchBytes(matrix, tokens)];
                // Enough multiplies per sample that one lasts ~10 ms or more; the first sample warms up the JIT and caches.
                int inner = Math.Max(1, (int)(2e7 / ((double)rows * cols * tokens / 32)));
                var samples = new List<double>();
                for (int rep = 0; rep <= repetitions; rep++)
                {
                    long start = Stopwatch.GetTimestamp();
                    for (int i = 0; i < inner; i++) MatMul.Multiply(matrix, x, tokens, y, scratch, pool);
                    if (rep > 0) samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds / inner);
                }
                samples.Sort();
                double seconds = samples[samples.Count / 2];
                results.Add(new Result(type, tokens, seconds, (double)rows * cols * tokens / seconds / 1e9, weights.Length / seconds / 1e9));
            }
        }
        return results;
    }
}
