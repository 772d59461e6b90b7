using Kaiyuan.Hub;

namespace Kaiyuan.Store;

/// <summary>A model named by reference rather than by path, when the store cannot resolve it.</summary>
public sealed class ModelNotFoundException(string message) : FileNotFoundException(message);

/// <summary>
/// A model reference: <c>hf.co/OWNER/REPO[:QUANT]</c>, <c>hf.co/OWNER/REPO/FILE.gguf</c> (<c>huggingface.co/</c> works too),
/// or a catalog alias such as <c>qwen2.5:0.5b</c> (optionally with a quantization: <c>qwen2.5:0.5b-q8_0</c>).
/// <see cref="Resolve(string, ModelStore?)"/> turns what the user typed into a GGUF path: an existing file wins, then the store.
/// </summary>
public sealed record ModelReference
{
    /// <summary>What the user typed.</summary>
    public required string Text { get; init; }
    /// <summary>OWNER/REPO on the Hub.</summary>
    public required string Repo { get; init; }
    /// <summary>An exact file within the repository, when given.</summary>
    public string? File { get; init; }
    /// <summary>The quantization asked for (from <c>:QUANT</c>, an alias suffix, or the alias's default), when no file is given.</summary>
    public string? Quant { get; init; }
    /// <summary>Whether <see cref="Quant"/> was asked for explicitly rather than taken from a default.</summary>
    public bool QuantExplicit { get; init; }
    /// <summary>The catalog alias, when the reference is one.</summary>
    public string? Alias { get; init; }

    /// <summary>The quantization pulled when an <c>hf.co/OWNER/REPO</c> reference names none (as Ollama does).</summary>
    public const string DefaultQuant = "Q4_K_M";

    private static readonly string[] HubPrefixes = ["hf.co/", "huggingface.co/", "https://huggingface.co/", "https://hf.co/"];

    /// <summary>Parses a reference; null when the text is neither an hf.co reference nor a catalog alias.</summary>
    public static ModelReference? TryParse(string text, ModelCatalog catalog)
    {
        text = text.Trim();
        foreach (var prefix in HubPrefixes)
        {
            if (!text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) continue;
            var rest = text[prefix.Length..].Trim('/');
            var parts = rest.Split('/');
            if (parts.Length < 2 || parts.Any(p => p.Length == 0 || p is "." or "..")) return null;
            if (parts.Length == 2)
            {
                string repo = rest;
                string? quant = null;
                int colon = parts[1].IndexOf(':');
                if (colon >= 0)
                {
                    quant = parts[1][(colon + 1)..];
                    repo = parts[0] + "/" + parts[1][..colon];
                    if (quant.Length == 0 || repo.EndsWith('/')) return null;
                }
                if (quant is not null && quant.Equals("latest", StringComparison.OrdinalIgnoreCase)) quant = null;
                return new ModelReference
                {
                    Text = text,
                    Repo = repo,
                    Quant = quant?.ToUpperInvariant() ?? DefaultQuant,
                    QuantExplicit = quant is not null,
                };
            }
            var file = string.Join('/', parts[2..]);
            if (!file.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return null;
            return new ModelReference { Text = text, Repo = parts[0] + "/" + parts[1], File = file };
        }

        if (catalog.Find(text) is { } entry) return FromAlias(text, text, entry, null);
        int dash = text.LastIndexOf('-');
        while (dash > 0)
        {
            var quant = text[(dash + 1)..];
            if (catalog.Find(text[..dash]) is { } e && QuantNames.Known.Contains(quant, StringComparer.OrdinalIgnoreCase))
                return FromAlias(text, text[..dash], e, quant.ToUpperInvariant());
            dash = text.LastIndexOf('-', dash - 1);
        }
        return null;
    }

    private static ModelReference FromAlias(string text, string alias, CatalogEntry entry, string? quant) => new()
    {
        Text = text,
        Repo = entry.Repo,
        Alias = alias.ToLowerInvariant(),
        File = quant is null ? entry.File : null,
        Quant = entry.File is not null && quant is null ? null : quant ?? entry.Quant,
        QuantExplicit = quant is not null,
    };

    /// <summary>The reference in canonical form for messages: <c>hf.co/OWNER/REPO:QUANT</c> or <c>hf.co/OWNER/REPO/FILE</c>.</summary>
    public string Canonical => File is not null ? $"hf.co/{Repo}/{File}" : $"hf.co/{Repo}:{Quant}";

    /// <summary>Whether a pulled manifest is what this reference names.</summary>
    public bool IsSatisfiedBy(StoreManifest m)
    {
        if (!m.Repo.Equals(Repo, StringComparison.OrdinalIgnoreCase)) return false;
        if (File is not null) return m.File.Equals(File, StringComparison.Ordinal);
        if (Alias is not null && !QuantExplicit && m.Aliases.Contains(Alias, StringComparer.OrdinalIgnoreCase)) return true;
        return Quant is not null && m.Quant is not null && m.Quant.Equals(Quant, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The pulled manifest in <paramref name="store"/> this reference names, or null (copies go by their own name).</summary>
    public StoreManifest? FindIn(ModelStore store)
    {
        var all = store.List().Where(m => m.Name is null).ToList();
        return all.FirstOrDefault(m => Alias is not null && !QuantExplicit && m.Aliases.Contains(Alias, StringComparer.OrdinalIgnoreCase))
               ?? all.FirstOrDefault(IsSatisfiedBy);
    }

    /// <summary>
    /// The GGUF path for what the user typed: an existing file path wins; otherwise a store reference. Throws
    /// <see cref="ModelNotFoundException"/> with a message that says what to do when neither exists.
    /// </summary>
    public static string Resolve(string refOrPath, ModelStore? store = null)
    {
        if (string.IsNullOrWhiteSpace(refOrPath)) throw new ArgumentException("no model given");
        if (System.IO.File.Exists(refOrPath)) return Path.GetFullPath(refOrPath);
        store ??= ModelStore.Default();
        if (store.FindNamed(refOrPath) is { } copy && System.IO.File.Exists(store.BlobPath(copy.Sha256))) return store.BlobPath(copy.Sha256);
        var reference = TryParse(refOrPath, ModelCatalog.For(store));
        if (reference is null)
        {
            if (LooksLikePath(refOrPath)) throw new FileNotFoundException($"file not found: {refOrPath}");
            throw new ModelNotFoundException(
                $"'{refOrPath}' is not a file, a catalog alias or an hf.co/OWNER/REPO reference; pass a GGUF file path, " +
                $"or a reference such as {ModelCatalog.DefaultAlias} or hf.co/OWNER/REPO:Q4_K_M");
        }
        var manifest = reference.FindIn(store)
            ?? throw new ModelNotFoundException($"'{refOrPath}' is not in the local store ({store.Root}); run `kaiyuan pull {refOrPath}`, or pass a file path");
        var blob = store.BlobPath(manifest.Sha256);
        if (!System.IO.File.Exists(blob))
            throw new ModelNotFoundException($"'{refOrPath}' is in the store's manifests but its data (sha256-{manifest.Sha256}) is missing; run `kaiyuan pull {refOrPath}` again");
        return blob;
    }

    private static bool LooksLikePath(string text) =>
        text.Contains('/') || text.Contains('\\') || text.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || text.StartsWith('.');
}
