using System.CommandLine;
using System.Globalization;

namespace Kaiyuan.Cli.Commands;

/// <summary>Options shared by several commands, so every command spells them the same way.</summary>
public static class Arguments
{
    public static Option<string> Model(bool required = true) => new("--model", "-m") { Description = "Model: a GGUF file path or a store reference (hf.co/OWNER/REPO[:QUANT], an alias such as qwen2.5:0.5b)", Required = required };

    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "Worker threads (default: all cores)",
        DefaultValueFactory = _ => Environment.ProcessorCount,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--threads must be at least 1"); } },
    };

    public static Option<int> ContextSize() => new("--ctx-size", "-c") { Description = "Context size in tokens (default: the model's, at most 4096)" };

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
