using System.Security.Cryptography;
using System.Text.Json;

namespace Kaiyuan.Store;

/// <summary>
/// The local, content-addressed model store: <c>blobs/sha256-HEX</c> holds each file once, <c>manifests/hf.co/OWNER/REPO/FILE.json</c>
/// maps a reference to its blob, and <c>tmp/</c> holds downloads in progress (<c>.partial</c>) and their locks. The root is
/// <c>KAIYUAN_HOME</c>, else <c>~/.kaiyuan</c>. Copies made under a local name (<see cref="StoreManifest.Name"/>) live under
/// <c>manifests/local/[NAMESPACE/]MODEL/TAG.json</c>. Blobs and manifests only ever appear by atomic rename, so a reader never
/// sees a half-written file.
/// </summary>
public sealed class ModelStore
{
    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>The store's directory (a full path).</summary>
    public string Root { get; }
    /// <summary><c>blobs/</c>: each file once, named <c>sha256-HEX</c>.</summary>
    public string BlobsDir => Path.Combine(Root, "blobs");
    /// <summary><c>manifests/</c>: one JSON <see cref="StoreManifest"/> per reference or local name.</summary>
    public string ManifestsDir => Path.Combine(Root, "manifests");
    /// <summary><c>tmp/</c>: downloads in progress and their lock files.</summary>
    public string TempDir => Path.Combine(Root, "tmp");

    /// <summary>The store at <paramref name="root"/> (made a full path); nothing is created until something is written.</summary>
    /// <exception cref="ArgumentException"><paramref name="root"/> is empty.</exception>
    public ModelStore(string root)
    {
        if (string.IsNullOrWhiteSpace(root)) throw new ArgumentException("the store root is empty", nameof(root));
        Root = Path.GetFullPath(root);
    }

    /// <summary>The store at <c>KAIYUAN_HOME</c>, or <c>~/.kaiyuan</c> when it is unset.</summary>
    public static ModelStore Default() => new(DefaultRoot());

    /// <summary><c>KAIYUAN_HOME</c>, or <c>~/.kaiyuan</c> when it is unset.</summary>
    public static string DefaultRoot()
    {
        var home = Environment.GetEnvironmentVariable("KAIYUAN_HOME");
        if (!string.IsNullOrWhiteSpace(home)) return home;
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kaiyuan");
    }

    /// <summary>Where the blob with this hex SHA-256 (any case) is, or would be.</summary>
    /// <exception cref="ArgumentException"><paramref name="sha256"/> is not 64 hex digits.</exception>
    public string BlobPath(string sha256) => Path.Combine(BlobsDir, "sha256-" + CheckSha(sha256));

    /// <summary>Where the manifest of a file pulled from the Hub is: <c>manifests/hf.co/OWNER/REPO/FILE.json</c>.</summary>
    public string ManifestPath(string repo, string file) =>
        Path.Combine([ManifestsDir, "hf.co", .. repo.Split('/'), .. file.Split('/')]) + ".json";

    /// <summary>Where a manifest lives: under its local name for a copy, else under its Hub repository and file.</summary>
    public string ManifestPath(StoreManifest manifest) =>
        manifest.Name is { } name ? NamedManifestPath(name) : ManifestPath(manifest.Repo, manifest.File);

    /// <summary>
    /// A local name in canonical form: lower-case, <c>:latest</c> when no tag is given; null when it is not
    /// <c>[NAMESPACE/]MODEL[:TAG]</c> made of letters, digits, '_', '-' and '.' (no part starting with '.').
    /// </summary>
    public static string? CanonicalName(string name)
    {
        name = name.Trim().ToLowerInvariant();
        int colon = name.LastIndexOf(':');
        string path = colon >= 0 ? name[..colon] : name;
        string tag = colon >= 0 ? name[(colon + 1)..] : "latest";
        var parts = path.Split('/');
        if (parts.Length is < 1 or > 2 || tag.Length is 0 or > 80 || !IsNamePart(tag) || !parts.All(IsNamePart)) return null;
        return path + ":" + tag;
    }

    private static bool IsNamePart(string part) =>
        part.Length is > 0 and <= 128 && part[0] != '.' && part.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    private string NamedManifestPath(string name)
    {
        var canonical = CanonicalName(name) ?? throw new ArgumentException($"'{name}' is not a valid model name (use [NAMESPACE/]MODEL[:TAG])");
        int colon = canonical.LastIndexOf(':');
        return Path.Combine([ManifestsDir, "local", .. canonical[..colon].Split('/'), canonical[(colon + 1)..]]) + ".json";
    }

    /// <summary>The copy saved under a local name (see <see cref="CanonicalName"/>), or null.</summary>
    public StoreManifest? FindNamed(string name)
    {
        if (CanonicalName(name) is null) return null;
        var path = NamedManifestPath(name);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<StoreManifest>(File.ReadAllText(path), JsonOptions);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Every manifest in the store, sorted by reference; unreadable ones are skipped.</summary>
    public IReadOnlyList<StoreManifest> List()
    {
        if (!Directory.Exists(ManifestsDir)) return [];
        var result = new List<StoreManifest>();
        foreach (var path in Directory.EnumerateFiles(ManifestsDir, "*.json", SearchOption.AllDirectories))
        {
            try
            {
                if (JsonSerializer.Deserialize<StoreManifest>(File.ReadAllText(path), JsonOptions) is { } m) result.Add(m);
            }
            catch (Exception e) when (e is JsonException or IOException) { }
        }
        result.Sort((a, b) => string.CompareOrdinal(a.Reference, b.Reference));
        return result;
    }

    /// <summary>
    /// The manifest of <paramref name="file"/> pulled from <paramref name="repo"/>, or null when it was not pulled; an
    /// unreadable manifest throws <see cref="System.Text.Json.JsonException"/>.
    /// </summary>
    public StoreManifest? Find(string repo, string file)
    {
        var path = ManifestPath(repo, file);
        if (!File.Exists(path)) return null;
        return JsonSerializer.Deserialize<StoreManifest>(File.ReadAllText(path), JsonOptions);
    }

    /// <summary>Writes (or replaces) a manifest atomically; its blob must already be in the store.</summary>
    public void Save(StoreManifest manifest)
    {
        if (!File.Exists(BlobPath(manifest.Sha256))) throw new InvalidOperationException($"blob sha256-{manifest.Sha256} is not in the store");
        var path = ManifestPath(manifest);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Directory.CreateDirectory(TempDir);
        var temp = Path.Combine(TempDir, $"manifest-{Guid.NewGuid():N}.json");
        File.WriteAllText(temp, JsonSerializer.Serialize(manifest, JsonOptions));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Removes a manifest, and its blob when no other manifest uses it. Returns whether the blob was deleted.</summary>
    public bool Remove(StoreManifest manifest)
    {
        var path = ManifestPath(manifest);
        if (File.Exists(path)) File.Delete(path);
        for (var dir = Path.GetDirectoryName(path); dir is not null && dir.Length > ManifestsDir.Length; dir = Path.GetDirectoryName(dir))
        {
            if (Directory.EnumerateFileSystemEntries(dir).Any()) break;
            Directory.Delete(dir);
        }
        if (List().Any(m => m.Sha256 == manifest.Sha256)) return false;
        var blob = BlobPath(manifest.Sha256);
        if (!File.Exists(blob)) return false;
        File.Delete(blob);
        return true;
    }

    /// <summary>
    /// Moves a verified file into <c>blobs/</c> under its hash (atomic rename within the store). When the blob is already
    /// there the source is deleted instead.
    /// </summary>
    public string Commit(string verifiedFile, string sha256)
    {
        var blob = BlobPath(sha256);
        Directory.CreateDirectory(BlobsDir);
        if (File.Exists(blob))
        {
            File.Delete(verifiedFile);
            return blob;
        }
        File.Move(verifiedFile, blob, overwrite: false);
        return blob;
    }

    /// <summary>Lower-case hex SHA-256 of a file.</summary>
    public static string HashFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static string CheckSha(string sha256)
    {
        if (sha256.Length != 64 || !sha256.All(Uri.IsHexDigit)) throw new ArgumentException($"'{sha256}' is not a SHA-256 in hex");
        return sha256.ToLowerInvariant();
    }
}
