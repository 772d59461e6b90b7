using System.Security.Cryptography;
using System.Text;
using Kaiyuan.Store;

namespace Kaiyuan.Hub;

/// <summary>
/// <c>kaiyuan pull</c>: resolve a reference to one GGUF file on the Hub, download it into the store's <c>tmp/</c> as a
/// <c>.partial</c> file (resuming one left by an earlier attempt), verify its SHA-256 against the Hub's LFS oid, rename it
/// into <c>blobs/</c> and write the manifest. A lock file per blob makes concurrent pulls of the same file wait for each
/// other; the later ones find the blob and reuse it.
/// </summary>
/// <remarks>A cancelled pull leaves its <c>.partial</c> file in <c>tmp/</c> for the next pull to resume; nothing reaches
/// <c>blobs/</c> or <c>manifests/</c> before it is verified.</remarks>
public sealed class ModelPuller(ModelStore store, HubClient hub, ModelCatalog catalog)
{
    /// <summary>Human-readable progress notes (resume, retry, waiting for a lock).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Bytes downloaded so far and the total (-1 when unknown).</summary>
    public Action<long, long>? Progress { get; init; }
    /// <summary>How often a pull waiting for another pull of the same file tries its lock again.</summary>
    public TimeSpan LockPollInterval { get; init; } = TimeSpan.FromMilliseconds(200);
    /// <summary>
    /// Where the pull is (for Ollama's <c>/api/pull</c> status lines): the file chosen (before its download, or when it is
    /// already in the store), the download verified, the manifest written.
    /// </summary>
    public Action<PullStage, HubFile>? Stage { get; init; }

    /// <summary>
    /// Pulls a reference (<c>hf.co/OWNER/REPO[:QUANT]</c>, <c>hf.co/OWNER/REPO/FILE.gguf</c> or a catalog alias) into the store,
    /// or finds it there, and returns the manifest written for it.
    /// </summary>
    /// <exception cref="HubException">The reference is not valid, the Hub fails, or the download's size or SHA-256 is wrong.</exception>
    public async Task<StoreManifest> PullAsync(string text, CancellationToken ct = default)
    {
        var reference = ModelReference.TryParse(text, catalog)
            ?? throw new HubException($"'{text}' is not a model reference: use hf.co/OWNER/REPO[:QUANT], hf.co/OWNER/REPO/FILE.gguf, " +
                                      $"or an alias ({string.Join(", ", catalog.Entries.Keys.Take(6))}, ...)");
        var file = await hub.ChooseFileAsync(reference, ct).ConfigureAwait(false);
        Log?.Invoke($"{reference.Text}: {file.Repo}/{file.Path} ({(file.Size >= 0 ? $"{file.Size:N0} bytes" : "size unknown")})");
        Stage?.Invoke(PullStage.FileChosen, file);

        Directory.CreateDirectory(store.TempDir);
        string key = file.Sha256 ?? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{file.Repo}/{file.Path}")));
        string partial = Path.Combine(store.TempDir, $"sha256-{key}.partial");
        string lockPath = Path.Combine(store.TempDir, $"sha256-{key}.lock");

        using (await AcquireLockAsync(lockPath, ct).ConfigureAwait(false))
        {
            string sha;
            if (file.Sha256 is { } known && File.Exists(store.BlobPath(known)))
            {
                Log?.Invoke("already in the store");
                sha = known;
            }
            else
            {
                string? advertised = await hub.DownloadAsync(file, partial, Progress, Log, ct).ConfigureAwait(false);
                string? expected = file.Sha256 ?? advertised;
                long size = new FileInfo(partial).Length;
                if (file.Size >= 0 && size != file.Size)
                {
                    File.Delete(partial);
                    throw new HubException($"{file.Path}: downloaded {size:N0} bytes, the Hub lists {file.Size:N0}; the download was discarded, pull again");
                }
                Log?.Invoke("verifying SHA-256");
                Stage?.Invoke(PullStage.Verifying, file);
                sha = ModelStore.HashFile(partial);
                if (expected is not null && sha != expected)
                {
                    File.Delete(partial);
                    throw new HubException($"{file.Path}: SHA-256 mismatch (the Hub publishes {expected}, the download hashes to {sha}); " +
                                           "the download was discarded, pull again");
                }
                if (expected is null) Log?.Invoke("the Hub publishes no SHA-256 for this file; stored unverified under its own hash");
                store.Commit(partial, sha);
            }

            var previous = store.Find(file.Repo, file.Path);
            var aliases = (previous?.Aliases ?? []).ToList();
            if (reference.Alias is { } alias && !aliases.Contains(alias, StringComparer.OrdinalIgnoreCase)) aliases.Add(alias);
            var manifest = new StoreManifest
            {
                Reference = $"hf.co/{file.Repo}/{file.Path}",
                Repo = file.Repo,
                File = file.Path,
                Quant = QuantNames.FromFileName(file.Path),
                Size = new FileInfo(store.BlobPath(sha)).Length,
                Sha256 = sha,
                PulledAt = previous is not null && previous.Sha256 == sha ? previous.PulledAt : DateTimeOffset.UtcNow,
                Aliases = [.. aliases],
            };
            Stage?.Invoke(PullStage.WritingManifest, file);
            store.Save(manifest);
            return manifest;
        }
    }

    /// <summary>An exclusive lock file (FileShare.None: an OS lock, released when the process dies); polls while another holds it.</summary>
    private async Task<FileStream> AcquireLockAsync(string path, CancellationToken ct)
    {
        bool told = false;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (!ct.IsCancellationRequested)
            {
                if (!told) Log?.Invoke("another pull of the same file is running; waiting for it");
                told = true;
                await Task.Delay(LockPollInterval, ct).ConfigureAwait(false);
            }
        }
    }
}

/// <summary>The steps of a pull that <see cref="ModelPuller.Stage"/> reports.</summary>
public enum PullStage
{
    /// <summary>The file is chosen, before its download or when it is already in the store.</summary>
    FileChosen,
    /// <summary>The download is complete and its SHA-256 is being checked.</summary>
    Verifying,
    /// <summary>The blob is in the store and its manifest is being written.</summary>
    WritingManifest,
}
