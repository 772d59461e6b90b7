using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Kaiyuan.Gguf;
using Kaiyuan.Kernels;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench attention</c>: one layer's attention kernel alone at given depths, like llama.cpp's
/// <c>test-backend-ops perf -o FLASH_ATTN_EXT</c>: what decode (and a prompt chunk) costs deep in a long context, per
/// cache type, as GFLOP/s and cache bytes read per second. Defaults are Qwen2.5-0.5B's heads.
/// </summary>
internal static class AttentionBenchCommand
{
    public static Command Create()
    {
        var heads = new Option<int>("--heads") { Description = "Query heads", DefaultValueFactory = _ => 14 };
        var headsKv = new Option<int>("--heads-kv") { Description = "Key/value heads (query heads share them in groups)", DefaultValueFactory = _ => 2 };
        var headDim = new Option<int>("--head-dim") { Description = "Floats per head", DefaultValueFactory = _ => 64 };
        var depths = new Option<string>("--depths") { Description = "Cached rows before the query tokens, comma-separated", DefaultValueFactory = _ => "512,4096,16384" };
        var tokens = new Option<string>("--tokens") { Description = "Query tokens per call, comma-separated (1: decode)", DefaultValueFactory = _ => "1,8" };
        var types = new Option<string>("--cache-types") { Description = "KV cache types, comma-separated (f32, f16, q8_0)", DefaultValueFactory = _ => "f32,f16,q8_0" };
        var threads = Arguments.Threads();
        var reps = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions (the median is reported)", DefaultValueFactory = _ => 7 };
        var json = new Option<bool>("--json") { Description = "Print one JSON array" };
        Arguments.Range(heads, 1, 1024, "--heads must be 1 to 1024");
        Arguments.Range(headsKv, 1, 1024, "--heads-kv must be 1 to 1024");
        Arguments.Range(headDim, 1, 1024, "--head-dim must be 1 to 1024");
        var command = new Command("attention", "Measure the attention kernel alone at depth (GFLOP/s, cache GB/s) per KV cache type")
        {
            heads, headsKv, headDim, depths, tokens, types, threads, reps, json,
        };
        command.SetAction(p =>
        {
            int h = p.GetValue(heads), kv = p.GetValue(headsKv), dim = p.GetValue(headDim);
            if (h % kv != 0) throw new ArgumentException($"--heads {h} is not a multiple of --heads-kv {kv}");
            var typeList = List(p.GetValue(types)!, t => t.ToLowerInvariant() switch
            {
                "f32" => GgmlType.F32,
                "f16" => GgmlType.F16,
                "q8_0" => GgmlType.Q8_0,
                _ => throw new ArgumentException($"--cache-types: '{t}' is not f32, f16 or q8_0"),
            });
            if (typeList.Contains(GgmlType.Q8_0) && kv * 2 * dim % 32 != 0) throw new ArgumentException("a q8_0 cache needs rows of a multiple of 32 values");
            var depthList = List(p.GetValue(depths)!, t => int.TryParse(t, CultureInfo.InvariantCulture, out int n) && n is >= 0 and <= 1 << 20 ? n : throw new ArgumentException($"--depths: '{t}' is not 0 to 1048576"));
            var tokenList = List(p.GetValue(tokens)!, t => int.TryParse(t, CultureInfo.InvariantCulture, out int n) && n is > 0 and <= 512 ? n : throw new ArgumentException($"--tokens: '{t}' is not 1 to 512"));
            int threadCount = Math.Max(1, p.GetValue(threads)), repetitions = Math.Max(1, p.GetValue(reps));
            var results = new List<AttentionTiming>();
            foreach (var type in typeList)
                foreach (int depth in depthList)
                    foreach (int n in tokenList)
                        results.Add(KernelBenchmarks.Attention(type, h, kv, dim, depth, n, repetitions, threadCount));
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(results.Select(x => new Dictionary<string, object>
                {
                    ["cache_type"] = x.CacheType.ToString().ToLowerInvariant(),
                    ["heads"] = h,
                    ["heads_kv"] = kv,
                    ["head_dim"] = dim,
                    ["depth"] = x.Depth,
                    ["tokens"] = x.Tokens,
                    ["threads"] = threadCount,
                    ["ms"] = Math.Round(x.Seconds * 1e3, 4),
                    ["gflop_s"] = Math.Round(x.GflopPerSecond, 3),
                    ["cache_gb_s"] = Math.Round(x.CacheGbPerSecond, 3),
                })));
                return 0;
            }
            Console.WriteLine($"attention: {h} heads over {kv} key/value heads of {dim}, one layer, threads: {threadCount}, kernels: {KernelBenchmarks.Tier}, median of {repetitions}");
            foreach (var x in results)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{x.CacheType.ToString().ToLowerInvariant(),-5} depth {x.Depth,7} tokens {x.Tokens,4}: {x.Seconds * 1e3,9:F3} ms {x.GflopPerSecond,8:F2} GFLOP/s {x.CacheGbPerSecond,7:F2} GB/s cache"));
            return 0;
        });
        return command;
    }

    private static T[] List<T>(string text, Func<string, T> parse) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToArray();
}
