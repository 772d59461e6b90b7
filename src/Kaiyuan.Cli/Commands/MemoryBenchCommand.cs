using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Kaiyuan.Kernels;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench memory</c>: this machine's memory read bandwidth with the threads decode would use — the ceiling a
/// decode step, which streams every active weight once per token, cannot beat.
/// </summary>
internal static class MemoryBenchCommand
{
    public static Command Create()
    {
        var threads = Arguments.Threads();
        var size = new Option<int>("--size") { Description = "MiB read per sample (far larger than the caches)", DefaultValueFactory = _ => 512 };
        var reps = new Option<int>("--repetitions", "-r") { Description = "Timed samples (median and best are reported)", DefaultValueFactory = _ => 7 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        Arguments.Range(size, 16, 1 << 16, "must be 16…65536 MiB");
        Arguments.Range(reps, 1, 1000, "must be 1…1000");
        var command = new Command("memory", "Measure the memory read bandwidth with the threads decode uses (GB/s)") { threads, size, reps, json };
        command.SetAction(p =>
        {
            var r = KernelBenchmarks.ReadBandwidth(Math.Max(1, p.GetValue(threads)), (long)p.GetValue(size) << 20, p.GetValue(reps));
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["threads"] = r.Threads,
                    ["bytes"] = r.Bytes,
                    ["median_gb_s"] = Math.Round(r.MedianGbPerSecond, 3),
                    ["best_gb_s"] = Math.Round(r.BestGbPerSecond, 3),
                }));
                return 0;
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"read bandwidth, {r.Threads} threads, {r.Bytes >> 20} MiB × {p.GetValue(reps)}: median {r.MedianGbPerSecond:F1} GB/s, best {r.BestGbPerSecond:F1} GB/s"));
            return 0;
        });
        return command;
    }
}
