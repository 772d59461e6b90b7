using System.CommandLine;
using System.Globalization;

namespace Kaiyuan.Cli.Commands;

/// <summary>Options shared by several commands, so every command spells them the same way.</summary>
internal static class Arguments
{
    public static Option<string> Model(bool required = true) => new("--model", "-m") { Description = "Model: a GGUF file path or a store reference (hf.co/OWNER/REPO[:QUANT], an alias such as qwen2.5:0.5b)", Required = required };

    // More threads than this only adds contention; a larger number is a typo, not a setting.
    private static int MaxThreads => 4 * Environment.ProcessorCount;

    // The help prints the default (this machine's core count) itself, so the description does not say it again.
    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "Worker threads (all cores unless given)",
        DefaultValueFactory = _ => Environment.ProcessorCount,
        Validators =
        {
            r =>
            {
                int n = r.GetValueOrDefault<int>();
                if (n < 1 || n > MaxThreads)
                    r.AddError($"--threads must be between 1 and {MaxThreads} (4 × this machine's {Environment.ProcessorCount} cores)");
            },
        },
    };

    public static Option<int> ContextSize() => new("--ctx-size", "-c")
    {
        Description = "Context size in tokens (default or 0: the model's, at most 4096)",
        Validators = { r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--ctx-size must be a positive number of tokens (or 0: the model's)"); } },
    };

    /// <summary>A validator that refuses values outside [min, max] with a message naming the option.</summary>
    public static void Range<T>(Option<T> option, T min, T max, string meaning) where T : struct, IComparable<T> =>
        option.Validators.Add(r =>
        {
            T value = r.GetValueOrDefault<T>();
            if (value.CompareTo(min) < 0 || value.CompareTo(max) > 0) r.AddError($"{option.Name} {value}: {meaning}");
        });

    public static Option<string> CacheType() => new("--cache-type")
    {
        Description = "KV cache type: f32 (default, matches llama.cpp's F32-cache goldens), f16 or q8_0",
        DefaultValueFactory = _ => "f32",
        Validators = { r => { if (r.GetValueOrDefault<string>() is not ("f32" or "f16" or "q8_0")) r.AddError("--cache-type must be f32, f16 or q8_0"); } },
    };

    public static Option<string> PrefillPriority()
    {
        var option = new Option<string>("--prefill-priority")
        {
            Description = "Scheduling class of a long prompt's prefill while other requests stream: low (Linux SCHED_IDLE: the streams never wait behind it; it uses only CPU time nothing else wants) or normal",
            DefaultValueFactory = _ => "low",
        };
        option.AcceptOnlyFromAmong("low", "normal");
        return option;
    }

    public static Option<string> PromptCache() => new("--prompt-cache")
    {
        Description = "Keep prompt prefixes (64 tokens or more) in this directory, so a later run or a restarted server reads their KV instead of computing it",
    };

    public static Option<long> PromptCacheMax()
    {
        var option = new Option<long>("--prompt-cache-max")
        {
            Description = "MiB the --prompt-cache directory may hold; the least recently used entries go beyond it",
            DefaultValueFactory = _ => Inference.PromptCacheStore.DefaultMaxBytes >> 20,
        };
        Range(option, 1L, 1L << 30, "must be a size in MiB (at least 1)");
        return option;
    }

    public static Kaiyuan.Gguf.GgmlType ParseCacheType(string? text) => text switch
    {
        "f16" => Kaiyuan.Gguf.GgmlType.F16,
        "q8_0" => Kaiyuan.Gguf.GgmlType.Q8_0,
        _ => Kaiyuan.Gguf.GgmlType.F32,
    };

    /// <summary>Parses "1,2,3" (spaces allowed) into ids.</summary>
    public static int[] ParseIds(string text, string optionName)
    {
        var parts = text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
                throw new ArgumentException($"{optionName}: '{parts[i]}' is not a token id");
        if (ids.Length == 0) throw new ArgumentException($"{optionName}: no token ids given");
        return ids;
    }
}
