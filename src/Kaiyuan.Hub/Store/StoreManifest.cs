using System.Text.Json.Serialization;

namespace Kaiyuan.Store;

/// <summary>
/// One pulled model: the reference it was pulled as, where it came from on the Hub, and the blob (by SHA-256) that holds
/// its bytes. Stored as JSON under <c>manifests/</c> in the store.
/// </summary>
public sealed record StoreManifest
{
    /// <summary>The canonical reference, <c>hf.co/OWNER/REPO/FILE.gguf</c>.</summary>
    [JsonPropertyName("reference")] public required string Reference { get; init; }
    /// <summary>The Hub repository it came from, <c>OWNER/REPO</c>.</summary>
    [JsonPropertyName("repo")] public required string Repo { get; init; }
    /// <summary>The file's path in that repository.</summary>
    [JsonPropertyName("file")] public required string File { get; init; }
    /// <summary>The quantization named by the file (Q4_K_M, Q8_0, ...), or null when the name carries none.</summary>
    [JsonPropertyName("quant")] public string? Quant { get; init; }
    /// <summary>The file's length in bytes.</summary>
    [JsonPropertyName("size")] public long Size { get; init; }
    /// <summary>Lower-case hex SHA-256 of the file's bytes; the blob's name.</summary>
    [JsonPropertyName("sha256")] public required string Sha256 { get; init; }
    /// <summary>When these bytes were first pulled (UTC); pulling the same blob again keeps it.</summary>
    [JsonPropertyName("pulledAt")] public DateTimeOffset PulledAt { get; init; }
    /// <summary>Catalog aliases (e.g. <c>qwen2.5:0.5b</c>) this file was pulled as.</summary>
    [JsonPropertyName("aliases")] public string[] Aliases { get; init; } = [];
    /// <summary>
    /// The local name of a copy (Ollama's <c>/api/copy</c>: <c>model:tag</c> or <c>namespace/model:tag</c>), which points at
    /// the same blob as the manifest it was copied from; null for a pulled model.
    /// </summary>
    [JsonPropertyName("name")] public string? Name { get; init; }
}
