using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Kaiyuan.Hub;
using Kaiyuan.Store;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// Ollama's model management on the local store: <c>/api/pull</c> (from the Hugging Face Hub, streaming Ollama's progress
/// lines), <c>/api/delete</c> and <c>/api/copy</c>. Names are store references (<c>hf.co/OWNER/REPO:QUANT</c>,
/// <c>OWNER/REPO:QUANT</c>, a catalog alias) or the local names copies are saved under (<c>[NAMESPACE/]MODEL[:TAG]</c>).
/// </summary>
internal static class OllamaModelsApi
{
    /// <summary>How often a pull's download progress is reported (the last byte always is).</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Deletes and copies one at a time, so a copy never points at a blob a delete is removing.</summary>
    private static readonly SemaphoreSlim Mutations = new(1, 1);

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/pull", PullAsync);
        app.MapDelete("/api/delete", DeleteAsync);
        app.MapPost("/api/copy", CopyAsync);
    }

    internal static ModelStore Store(ServerState state) =>
        state.Options.StoreRoot is { Length: > 0 } root ? new ModelStore(root) : ModelStore.Default();

    /// <summary>A store reference; <c>OWNER/REPO[:QUANT]</c>, which Ollama reads as a repository without its host, is taken as the Hub's.</summary>
    private static ModelReference? Reference(ModelStore store, string name)
    {
        var catalog = ModelCatalog.For(store);
        return ModelReference.TryParse(name, catalog)
               ?? (name.Count(c => c == '/') == 1 && !name.Contains("://", StringComparison.Ordinal) ? ModelReference.TryParse("hf.co/" + name, catalog) : null);
    }

    /// <summary>The manifest a name means: a copy by its local name first, else a pulled model by reference.</summary>
    internal static StoreManifest? Find(ModelStore store, string name) => store.FindNamed(name) ?? Reference(store, name)?.FindIn(store);

    /// <summary>The name Ollama's clients see for a store manifest (and can give back to delete, copy or pull it).</summary>
    internal static string OllamaName(StoreManifest m) =>
        m.Name ?? (m.Aliases.Length > 0 ? m.Aliases[0] : m.Quant is { } quant ? $"hf.co/{m.Repo}:{quant}" : m.Reference);

    /// <summary>The store's models as <c>/api/tags</c> entries (those whose data is present).</summary>
    internal static IEnumerable<JsonNode> StoreEntries(ServerState state, IReadOnlySet<string> served)
    {
        var store = Store(state);
        foreach (var m in store.List())
        {
            string blob = store.BlobPath(m.Sha256);
            if (!File.Exists(blob) || served.Contains(Path.GetFullPath(blob))) continue;
            string name = OllamaName(m);
            yield return new JsonObject
            {
                ["name"] = name,
                ["model"] = name,
                ["modified_at"] = m.PulledAt.ToString("o"),
                ["size"] = m.Size,
                ["digest"] = m.Sha256,
                ["details"] = new JsonObject
                {
                    ["parent_model"] = "",
                    ["format"] = "gguf",
                    ["family"] = "",
                    ["families"] = null,
                    ["parameter_size"] = "",
                    ["quantization_level"] = m.Quant ?? "",
                },
            };
        }
    }

    private static string ModelName(JsonRequest r) =>
        r.String("model") ?? r.String("name") ?? throw RequestException.BadRequest("'model' is required", "model");

    private static async Task PullAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        string name = ModelName(r);
        // "insecure" lets Ollama pull from a registry without TLS checks; the Hub's URL is the server's to choose, so it changes nothing.
        _ = r.Bool("insecure", false);
        bool stream = r.Bool("stream", true);
        var store = Store(state);
        var reference = Reference(store, name) ?? throw RequestException.BadRequest(
            $"'{name}' is not a model this server can pull: use hf.co/OWNER/REPO[:QUANT], hf.co/OWNER/REPO/FILE.gguf, or an alias such as {ModelCatalog.DefaultAlias}",
            "model");
        var cancel = http.RequestAborted;
        if (!stream)
        {
            await PullCoreAsync(state, store, reference, null, cancel);
            await HttpOutput.Json(http, new JsonObject { ["status"] = "success" });
            return;
        }

        var lines = Channel.CreateUnbounded<JsonObject>(new UnboundedChannelOptions { SingleReader = true });
        HttpOutput.StartNdjson(http);
        await HttpOutput.Line(http, new JsonObject { ["status"] = "pulling manifest" });
        var pull = Task.Run(async () =>
        {
            try
            {
                await PullCoreAsync(state, store, reference, lines.Writer, cancel);
                lines.Writer.TryWrite(new JsonObject { ["status"] = "success" });
                lines.Writer.TryComplete();
            }
            catch (Exception e)
            {
                lines.Writer.TryComplete(e);
            }
        }, CancellationToken.None);
        try
        {
            await foreach (var line in lines.Reader.ReadAllAsync(cancel)) await HttpOutput.Line(http, line);
        }
        finally
        {
            // The pull shares the request's token: a client gone cancels it, and it is over (lock released, .partial kept
            // for the next pull to resume, nothing in blobs/ or manifests/) before the request ends.
            await pull;
        }
    }

    /// <summary>
    /// Pulls <paramref name="reference"/> into the store, reporting Ollama's progress lines to <paramref name="lines"/>
    /// when given. Hub failures become API errors: 404 for what the Hub does not have, else 502 (the upstream failed).
    /// </summary>
    private static async Task PullCoreAsync(ServerState state, ModelStore store, ModelReference reference, ChannelWriter<JsonObject>? lines,
        CancellationToken cancel)
    {
        string digest = "";
        long total = -1;
        long sent = -1;
        bool verified = false;
        var clock = Stopwatch.StartNew();
        TimeSpan last = TimeSpan.Zero;

        void Progress(long completed, long expected)
        {
            if (expected >= 0) total = expected;
            bool end = total >= 0 && completed >= total;
            if (lines is null || completed == sent || (!end && sent >= 0 && clock.Elapsed - last < ProgressInterval)) return;
            last = clock.Elapsed;
            sent = completed;
            // As Ollama: the status names the blob by the first 12 hex digits of its digest.
            lines.TryWrite(new JsonObject
            {
                ["status"] = $"pulling {digest[7..19]}",
                ["digest"] = digest,
                ["total"] = Math.Max(total, 0),
                ["completed"] = completed,
            });
        }

        void Stage(PullStage stage, HubFile file)
        {
            switch (stage)
            {
                case PullStage.FileChosen:
                    // A file the Hub publishes no SHA-256 for is named by the hash of its path until it is hashed itself.
                    digest = "sha256:" + (file.Sha256 ?? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{file.Repo}/{file.Path}"))));
                    total = file.Size;
                    Progress(0, file.Size);
                    break;
                case PullStage.Verifying:
                    verified = true;
                    lines?.TryWrite(new JsonObject { ["status"] = "verifying sha256 digest" });
                    break;
                case PullStage.WritingManifest:
                    // A blob already in the store was neither downloaded nor hashed again: it is reported complete and verified.
                    if (total >= 0) Progress(total, total);
                    if (!verified) lines?.TryWrite(new JsonObject { ["status"] = "verifying sha256 digest" });
                    lines?.TryWrite(new JsonObject { ["status"] = "writing manifest" });
                    break;
            }
        }

        try
        {
            using var hub = new HubClient(state.Options.Hub ?? HubOptions.FromEnvironment());
            var puller = new ModelPuller(store, hub, ModelCatalog.For(store)) { Progress = Progress, Stage = Stage };
            await puller.PullAsync(reference.Text, cancel);
        }
        catch (HubException e) when (!cancel.IsCancellationRequested)
        {
            throw e.Status == HttpStatusCode.NotFound
                ? new RequestException(404, $"pull model manifest: {e.Message}", code: "model_not_found")
                : new RequestException(502, $"pull model manifest: {e.Message}", code: "hub_error");
        }
    }

    private static async Task DeleteAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        string name = ModelName(r);
        var store = Store(state);
        await Mutations.WaitAsync(http.RequestAborted);
        try
        {
            var manifest = Find(store, name) ?? throw new RequestException(404, $"model '{name}' not found", code: "model_not_found");
            string path = store.ManifestPath(manifest);
            bool shared = store.List().Any(m => m.Sha256 == manifest.Sha256 && store.ManifestPath(m) != path);
            // The blob goes with its last manifest; one the server serves stays until the server stops.
            if (!shared && state.Models.Models.Any(m => SameFile(store.BlobPath(manifest.Sha256), m.Path)))
                throw new RequestException(409, $"model '{name}' is one this server serves; stop the server before deleting it", code: "model_in_use");
            store.Remove(manifest);
        }
        finally
        {
            Mutations.Release();
        }
        http.Response.StatusCode = 200;
    }

    private static async Task CopyAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        string source = r.String("source") ?? throw RequestException.BadRequest("'source' is required", "source");
        string destination = r.String("destination") ?? throw RequestException.BadRequest("'destination' is required", "destination");
        string name = ModelStore.CanonicalName(destination) ?? throw RequestException.BadRequest(
            $"destination '{destination}' is not a valid model name: use [NAMESPACE/]MODEL[:TAG] with letters, digits, '_', '-' and '.'", "destination");
        var store = Store(state);
        await Mutations.WaitAsync(http.RequestAborted);
        try
        {
            var manifest = Find(store, source) ?? throw new RequestException(404, $"model '{source}' not found", code: "model_not_found");
            if (!File.Exists(store.BlobPath(manifest.Sha256)))
                throw new RequestException(404, $"model '{source}' has no data in the store (sha256-{manifest.Sha256}); pull it again", code: "model_not_found");
            store.Save(manifest with { Name = name, Aliases = [], PulledAt = DateTimeOffset.UtcNow });
        }
        finally
        {
            Mutations.Release();
        }
        http.Response.StatusCode = 200;
    }

    private static bool SameFile(string a, string b)
    {
        try
        {
            return string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return false;
        }
    }
}
