using System.Text.Json;
using System.Text.Json.Serialization;
using Kaiyuan.Store;

namespace Kaiyuan.Hub;

/// <summary>A short name for a GGUF repository on the Hub and the quantization pulled by default.</summary>
public sealed record CatalogEntry
{
    /// <summary>The Hub repository, <c>OWNER/REPO</c>.</summary>
    [JsonPropertyName("repo")] public required string Repo { get; init; }
    /// <summary>The quantization pulled by default, matched against the repository's file names (Q4_K_M unless set).</summary>
    [JsonPropertyName("quant")] public string Quant { get; init; } = "Q4_K_M";
    /// <summary>An exact file, for repositories whose names carry no quantization.</summary>
    [JsonPropertyName("file")] public string? File { get; init; }
    /// <summary>What the model is, for listings; null when not given.</summary>
    [JsonPropertyName("description")] public string? Description { get; init; }
}

/// <summary>
/// Aliases such as <c>qwen2.5:0.5b</c> for well-known GGUF repositories. The built-in table below is the one place to
/// edit; users may add or override entries with <c>catalog.json</c> in the store root:
/// <c>{"mymodel:1b": {"repo": "owner/repo-GGUF", "quant": "Q8_0"}}</c>.
/// </summary>
public sealed class ModelCatalog
{
    /// <summary>The small default the README points newcomers at.</summary>
    public const string DefaultAlias = "qwen2.5:0.5b";

    private static readonly (string Alias, string Repo, string Quant, string Description)[] Builtin =
    [
        ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Q4_K_M", "Qwen2.5 0.5B Instruct"),
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "Q4_K_M", "Qwen2.5 1.5B Instruct"),
        ("qwen2.5:3b", "Qwen/Qwen2.5-3B-Instruct-GGUF", "Q4_K_M", "Qwen2.5 3B Instruct"),
        ("qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct-GGUF", "Q4_K_M", "Qwen2.5 7B Instruct"),
        ("qwen2.5-coder:1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "Q4_K_M", "Qwen2.5 Coder 1.5B Instruct"),
        ("qwen3:0.6b", "unsloth/Qwen3-0.6B-GGUF", "Q4_K_M", "Qwen3 0.6B"),
        ("qwen3:1.7b", "unsloth/Qwen3-1.7B-GGUF", "Q4_K_M", "Qwen3 1.7B"),
        ("qwen3:4b", "unsloth/Qwen3-4B-GGUF", "Q4_K_M", "Qwen3 4B"),
        ("qwen3:8b", "unsloth/Qwen3-8B-GGUF", "Q4_K_M", "Qwen3 8B"),
        ("qwen3:30b-a3b", "unsloth/Qwen3-30B-A3B-GGUF", "Q4_K_M", "Qwen3 30B-A3B (MoE)"),
        ("deepseek-r1:1.5b", "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF", "Q4_K_M", "DeepSeek-R1 distilled into Qwen2.5 1.5B"),
        ("deepseek-r1:7b", "unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF", "Q4_K_M", "DeepSeek-R1 distilled into Qwen2.5 7B"),
        ("deepseek-v2-lite", "bartowski/DeepSeek-V2-Lite-Chat-GGUF", "Q4_K_M", "DeepSeek-V2-Lite Chat (MLA + MoE)"),
        ("glm4:9b", "unsloth/GLM-4-9B-0414-GGUF", "Q4_K_M", "GLM-4 9B 0414"),
        ("llama3.2:1b", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M", "Llama 3.2 1B Instruct"),
        ("llama3.2:3b", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Q4_K_M", "Llama 3.2 3B Instruct"),
        ("smollm2:135m", "bartowski/SmolLM2-135M-Instruct-GGUF", "Q8_0", "SmolLM2 135M Instruct (llama architecture)"),
    ];

    private readonly Dictionary<string, CatalogEntry> _entries = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Every entry by alias (case-insensitive).</summary>
    public IReadOnlyDictionary<string, CatalogEntry> Entries => _entries;

    private ModelCatalog() { }

    /// <summary>The built-in table only.</summary>
    public static ModelCatalog BuiltIn()
    {
        var catalog = new ModelCatalog();
        foreach (var (alias, repo, quant, description) in Builtin)
            catalog._entries[alias] = new CatalogEntry { Repo = repo, Quant = quant, Description = description };
        return catalog;
    }

    /// <summary>The built-in table plus the store's <c>catalog.json</c>, whose entries win.</summary>
    public static ModelCatalog For(ModelStore store)
    {
        var catalog = BuiltIn();
        var path = Path.Combine(store.Root, "catalog.json");
        if (!File.Exists(path)) return catalog;
        Dictionary<string, CatalogEntry>? extra;
        try
        {
            extra = JsonSerializer.Deserialize<Dictionary<string, CatalogEntry>>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid catalog ({e.Message})", e);
        }
        foreach (var (alias, entry) in extra ?? []) catalog._entries[alias] = entry;
        return catalog;
    }

    /// <summary>The entry for <paramref name="alias"/> (case-insensitive), or null.</summary>
    public CatalogEntry? Find(string alias) => _entries.GetValueOrDefault(alias);
}
