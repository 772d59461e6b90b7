using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Kaiyuan.Hub;
using Kaiyuan.AspNetCore;
using Kaiyuan.Store;
using Kaiyuan.Tests.Hub;
using OllamaSharp;
using OllamaSharp.Models;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// Ollama's model management (<c>/api/pull</c>, <c>/api/delete</c>, <c>/api/copy</c>) through OllamaSharp, against a
/// throw-away store and a fake Hugging Face Hub on loopback serving a fixture GGUF.
/// </summary>
public sealed class OllamaModelsTests
{
    private const string Repo = "kaiyuan-test/aidreams-GGUF";
    private const string FileName = "aidreams260K-Q6_K.gguf";
    private const string Name = "hf.co/" + Repo + ":Q6_K";

    private static FakeHub Hub(out FakeHub.FakeFile file)
    {
        var hub = new FakeHub();
        file = new FakeHub.FakeFile(FileName, TestModels.SmallGguf());
        hub.Add(Repo, file);
        return hub;
    }

    private static Task<KaiyuanServer> StartAsync(TempStore temp, FakeHub hub, string modelPath = "scripted.gguf") =>
        ScriptedEngine.StartAsync(new ScriptedEngine(_ => "hi"), o => o with
        {
            ModelPath = modelPath,
            StoreRoot = temp.Store.Root,
            Hub = new HubOptions { Endpoint = hub.Endpoint, RetryDelay = TimeSpan.FromMilliseconds(10) },
        });

    private static HttpRequestMessage Request(HttpMethod method, string path, string json) =>
        new(method, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };

    [Fact]
    public async Task PullStreamsOllamasProgressLinesAndTheModelLandsInTheStoreAndTags()
    {
        var ct = TestContext.Current.CancellationToken;
        using var hub = Hub(out var file);
        hub.ChunkDelay = TimeSpan.FromMilliseconds(3);
        using var temp = new TempStore();
        await using var server = await StartAsync(temp, hub);
        var ollama = new OllamaApiClient(server.Address);

        var lines = new List<PullModelResponse>();
        await foreach (var line in ollama.PullModelAsync(new PullModelRequest { Model = Name }, ct))
            if (line is not null) lines.Add(line);

        Assert.Equal("pulling manifest", lines[0].Status);
        Assert.Equal("success", lines[^1].Status);
        var pulling = lines.Where(l => l.Status.StartsWith("pulling ", StringComparison.Ordinal) && l.Digest is not null).ToList();
        Assert.True(pulling.Count >= 2, string.Join(" | ", lines.Select(l => l.Status)));
        Assert.All(pulling, l =>
        {
            Assert.Equal("pulling " + file.Sha256[..12], l.Status);
            Assert.Equal("sha256:" + file.Sha256, l.Digest);
            Assert.Equal(file.Data.Length, l.Total);
        });
        Assert.Equal(0, pulling[0].Completed);
        Assert.Equal(file.Data.Length, pulling[^1].Completed);
        Assert.True(pulling.Zip(pulling.Skip(1)).All(p => p.First.Completed <= p.Second.Completed));
        Assert.Equal(["pulling manifest", "verifying sha256 digest", "writing manifest", "success"], lines.Where(l => l.Digest is null).Select(l => l.Status));

        var manifest = Assert.Single(temp.Store.List());
        Assert.Equal(file.Sha256, manifest.Sha256);
        Assert.Equal(file.Data, await File.ReadAllBytesAsync(temp.Store.BlobPath(file.Sha256), ct));
        Assert.Empty(temp.TempFiles("*.partial"));
        var tags = await ollama.ListLocalModelsAsync(ct);
        Assert.Contains(tags, m => m.Name == Name && m.Size == file.Data.Length && m.Digest == file.Sha256);

        // Pulled again without streaming: one line, and the blob is not fetched twice.
        using var http = new HttpClient { BaseAddress = server.Address };
        int downloads = hub.CdnRequests;
        var whole = await http.PostJsonAsync("api/pull", $$"""{"model":"{{Repo}}:q6_k","stream":false}""");
        Assert.Equal("""{"status":"success"}""", await whole.Content.ReadAsStringAsync(ct));
        Assert.Equal(downloads, hub.CdnRequests);
    }

    [Fact]
    public async Task PullErrorsSayWhatWentWrong()
    {
        var ct = TestContext.Current.CancellationToken;
        using var hub = Hub(out _);
        using var temp = new TempStore();
        await using var server = await StartAsync(temp, hub);
        using var http = new HttpClient { BaseAddress = server.Address };

        var bad = await http.PostJsonAsync("api/pull", """{"model":"not a model!"}""");
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Contains("not a model this server can pull", (await bad.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);

        var missing = await http.PostJsonAsync("api/pull", """{"model":"hf.co/nobody/nothing-GGUF","stream":false}""");
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Contains("nobody/nothing-GGUF", (await missing.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);

        // Streaming, the failure comes as Ollama's error line after "pulling manifest".
        var streamed = await http.PostJsonAsync("api/pull", $$"""{"model":"hf.co/{{Repo}}:Q2_K"}""");
        var lines = (await streamed.Content.ReadAsStringAsync(ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l)).ToList();
        Assert.Equal("pulling manifest", lines[0].RootElement.GetProperty("status").GetString());
        Assert.Contains("Q2_K", lines[^1].RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Empty(temp.Store.List());
    }

    [Fact]
    public async Task AClientLeavingMidPullCancelsItAndCommitsNothing()
    {
        var ct = TestContext.Current.CancellationToken;
        using var hub = Hub(out var file);
        hub.ChunkDelay = TimeSpan.FromMilliseconds(20);
        using var temp = new TempStore();
        await using var server = await StartAsync(temp, hub);
        // No draining of the rest of the response on disposal: the connection closes at once, as a client that quits.
        using (var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.Address })
        {
            using var response = await http.SendAsync(Request(HttpMethod.Post, "api/pull", $$"""{"model":"{{Name}}"}"""), HttpCompletionOption.ResponseHeadersRead, ct);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
            while (await reader.ReadLineAsync(ct) is { } line)
                if (JsonDocument.Parse(line).RootElement.TryGetProperty("completed", out var done) && done.GetInt64() > 0) break;
        }

        // The server lets go of the download (its lock) once it sees the client gone; what it fetched stays in tmp/ only.
        string lockPath = Path.Combine(temp.Store.TempDir, $"sha256-{file.Sha256}.lock");
        for (int i = 0; ; i++)
        {
            try
            {
                using var held = new FileStream(lockPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
                break;
            }
            catch (IOException) when (i < 200)
            {
                await Task.Delay(50, ct);
            }
        }
        Assert.False(File.Exists(temp.Store.BlobPath(file.Sha256)));
        Assert.Empty(temp.Store.List());
        Assert.Single(temp.TempFiles("*.partial"));

        // The next pull resumes where the first stopped.
        hub.ChunkDelay = TimeSpan.Zero;
        var ollama = new OllamaApiClient(server.Address);
        await foreach (var _ in ollama.PullModelAsync(Name, ct)) { }
        Assert.Contains(hub.Ranges, r => r.StartsWith("bytes=", StringComparison.Ordinal));
        Assert.Equal(file.Data, await File.ReadAllBytesAsync(temp.Store.BlobPath(file.Sha256), ct));
    }

    [Fact]
    public async Task CopyMakesANameForTheSameBlobAndDeleteFreesTheBlobWithItsLastName()
    {
        var ct = TestContext.Current.CancellationToken;
        using var hub = Hub(out var file);
        using var temp = new TempStore();
        using (var client = TempStore.Client(hub)) await temp.Puller(hub, client).PullAsync(Name, ct);
        await using var server = await StartAsync(temp, hub);
        var ollama = new OllamaApiClient(server.Address);
        string blob = temp.Store.BlobPath(file.Sha256);

        await ollama.CopyModelAsync(Name, "mine:v1", ct);
        var copy = temp.Store.FindNamed("MINE:v1");
        Assert.NotNull(copy);
        Assert.Equal(file.Sha256, copy.Sha256);
        Assert.Equal(blob, ModelReference.Resolve("mine:v1", temp.Store));
        var names = (await ollama.ListLocalModelsAsync(ct)).Select(m => m.Name).ToList();
        Assert.Contains("mine:v1", names);
        Assert.Contains(Name, names);
        await ollama.CopyModelAsync("mine:v1", "team/mine", ct);
        Assert.NotNull(temp.Store.FindNamed("team/mine:latest"));

        // The original name goes; its blob stays for the copies.
        await ollama.DeleteModelAsync(Name, ct);
        Assert.Null(ModelReference.TryParse(Name, ModelCatalog.For(temp.Store))!.FindIn(temp.Store));
        Assert.True(File.Exists(blob));
        await ollama.DeleteModelAsync("mine:v1", ct);
        Assert.True(File.Exists(blob));
        await ollama.DeleteModelAsync("team/mine", ct);
        Assert.False(File.Exists(blob));
        Assert.Empty(temp.Store.List());

        using var http = new HttpClient { BaseAddress = server.Address };
        var missing = await http.SendAsync(Request(HttpMethod.Delete, "api/delete", """{"model":"mine:v1"}"""), ct);
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Equal("model 'mine:v1' not found", (await missing.JsonAsync()).GetProperty("error").GetString());
        await Assert.ThrowsAnyAsync<Exception>(() => ollama.DeleteModelAsync("mine:v1", ct));

        var noSource = await http.PostJsonAsync("api/copy", """{"source":"gone:latest","destination":"other"}""");
        Assert.Equal(404, (int)noSource.StatusCode);
        Assert.Equal("model 'gone:latest' not found", (await noSource.JsonAsync()).GetProperty("error").GetString());
        foreach (var destination in new[] { "bad name", "a/b/c", "../escape", "x:", "hf.co/owner/repo:Q4_K_M" })
        {
            var bad = await http.PostJsonAsync("api/copy", JsonSerializer.Serialize(new { source = "gone", destination }));
            Assert.Equal(400, (int)bad.StatusCode);
            Assert.Contains("is not a valid model name", (await bad.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task TheModelTheServerRunsFromCannotBeDeletedButAnotherNameForItCan()
    {
        var ct = TestContext.Current.CancellationToken;
        using var hub = Hub(out var file);
        using var temp = new TempStore();
        using (var client = TempStore.Client(hub)) await temp.Puller(hub, client).PullAsync(Name, ct);
        await using var server = await StartAsync(temp, hub, temp.Store.BlobPath(file.Sha256));
        var ollama = new OllamaApiClient(server.Address);
        using var http = new HttpClient { BaseAddress = server.Address };

        await ollama.CopyModelAsync(Name, "alias", ct);
        await ollama.DeleteModelAsync("alias", ct);
        var refused = await http.SendAsync(Request(HttpMethod.Delete, "api/delete", $$"""{"model":"{{Name}}"}"""), ct);
        Assert.Equal(409, (int)refused.StatusCode);
        Assert.Contains("one this server serves", (await refused.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.True(File.Exists(temp.Store.BlobPath(file.Sha256)));
        Assert.Single(temp.Store.List());
    }
}
