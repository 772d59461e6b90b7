using Kaiyuan.Gguf;
using Kaiyuan.Hub;
using Kaiyuan.Store;

namespace Kaiyuan.Tests.Hub;

/// <summary><c>kaiyuan pull</c> against a fake Hub on loopback: download, resume, verification, errors, concurrency.</summary>
public sealed class PullTests
{
    private const string Repo = "kaiyuan-test/aidreams-GGUF";
    private const string FileName = "aidreams260K-Q6_K.gguf";

    private static FakeHub HubWithModel(out FakeHub.FakeFile file)
    {
        var hub = new FakeHub();
        file = new FakeHub.FakeFile(FileName, TestModels.SmallGguf());
        hub.Add(Repo, file, new FakeHub.FakeFile("aidreams260K-Q8_0.gguf", [1, 2, 3]));
        return hub;
    }

    [Fact]
    public async Task FreshDownloadLandsInTheStoreAndResolves()
    {
        using var hub = HubWithModel(out var file);
        using var temp = new TempStore();
        using var client = TempStore.Client(hub);
        var manifest = await temp.Puller(hub, client).PullAsync($"hf.co/{Repo}:q6_k", TestContext.Current.CancellationToken);

        Assert.Equal(file.Sha256, manifest.Sha256);
        Assert.Equal("Q6_K", manifest.Quant);
        Assert.Equal($"hf.co/{Repo}/{FileName}", manifest.Reference);
        Assert.Equal(file.Data, File.ReadAllBytes(temp.Store.BlobPath(manifest.Sha256)));
        Assert.Empty(temp.TempFiles("*.partial"));
        Assert.Equal([""], hub.Ranges);

        foreach (var reference in new[] { $"hf.co/{Repo}:Q6_K", $"hf.co/{Repo}/{FileName}", $"huggingface.co/{Repo}:q6_k" })
        {
            var path = ModelReference.Resolve(reference, temp.Store);
            Assert.Equal(temp.Store.BlobPath(file.Sha256), path);
            using var gguf = GgufFile.Open(path);
            Assert.Equal("llama", gguf.Architecture);
        }
        var missing = Assert.Throws<ModelNotFoundException>(() => ModelReference.Resolve($"hf.co/{Repo}:Q8_0", temp.Store));
        Assert.Contains("kaiyuan pull", missing.Message);
        Assert.Single(temp.Store.List());
    }

    [Fact]
    public async Task ResumesAfterTheConnectionIsCutMidFile()
    {
        using var hub = HubWithModel(out var file);
        hub.CutFirstResponseAfter = file.Data.Length / 2;
        using var temp = new TempStore();
        using var client = TempStore.Client(hub);
        var log = new List<string>();
        var manifest = await temp.Puller(hub, client, log).PullAsync($"hf.co/{Repo}/{FileName}", TestContext.Current.CancellationToken);

        Assert.Equal(file.Sha256, manifest.Sha256);
        Assert.Equal(file.Data, File.ReadAllBytes(temp.Store.BlobPath(manifest.Sha256)));
        var ranges = hub.Ranges.ToArray();
        Assert.Equal(2, ranges.Length);
        Assert.Equal("", ranges[0]);
        Assert.InRange(ResumedAt(ranges[1]), 1, file.Data.Length / 2);
        Assert.Contains(log, l => l.StartsWith("resuming at", StringComparison.Ordinal));
        Assert.Empty(temp.TempFiles("*.partial"));
    }

    /// <summary>Where a ranged request resumes (<c>bytes=N-</c>); the server's cut may land a little before the bytes it
    /// sent, since a reset connection loses what the client had not read.</summary>
    private static long ResumedAt(string range)
    {
        Assert.StartsWith("bytes=", range);
        Assert.EndsWith("-", range);
        return long.Parse(range[6..^1], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task ResumesAPartialFileLeftByAnEarlierPull()
    {
        using var hub = HubWithModel(out var file);
        hub.CutFirstResponseAfter = file.Data.Length / 3;
        using var temp = new TempStore();
        using (var once = TempStore.Client(hub, attempts: 1))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => temp.Puller(hub, once).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken));
            Assert.Contains("pull again to resume", e.Message);
        }
        var partial = Assert.Single(temp.TempFiles("*.partial"));
        long kept = new FileInfo(partial).Length;
        Assert.InRange(kept, 1, file.Data.Length / 3);
        Assert.Throws<ModelNotFoundException>(() => ModelReference.Resolve($"hf.co/{Repo}:Q6_K", temp.Store));

        using var client = TempStore.Client(hub);
        var manifest = await temp.Puller(hub, client).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken);
        Assert.Equal(file.Data, File.ReadAllBytes(temp.Store.BlobPath(manifest.Sha256)));
        Assert.Equal($"bytes={kept}-", hub.Ranges.Last());
        Assert.Empty(temp.TempFiles("*.partial"));
    }

    [Fact]
    public async Task Sha256MismatchIsAnErrorAndKeepsNoFile()
    {
        using var hub = new FakeHub();
        var data = TestModels.SmallGguf();
        hub.Add(Repo, new FakeHub.FakeFile(FileName, data) { Advertised = new string('a', 64) });
        using var temp = new TempStore();
        using var client = TempStore.Client(hub);
        var e = await Assert.ThrowsAsync<HubException>(() => temp.Puller(hub, client).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken));

        Assert.Contains("SHA-256 mismatch", e.Message);
        Assert.Empty(temp.TempFiles("*.partial"));
        Assert.False(Directory.Exists(temp.Store.BlobsDir) && Directory.EnumerateFiles(temp.Store.BlobsDir).Any());
        Assert.Empty(temp.Store.List());
    }

    [Fact]
    public async Task GatedRepositoryNeedsAToken()
    {
        using var hub = new FakeHub();
        var file = new FakeHub.FakeFile(FileName, TestModels.SmallGguf());
        hub.Repos[Repo] = new FakeHub.FakeRepo { Token = "hf_secret" };
        hub.Repos[Repo].Files.Add(file);
        using var temp = new TempStore();

        using (var anonymous = TempStore.Client(hub))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => temp.Puller(hub, anonymous).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken));
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, e.Status);
            Assert.Contains("401", e.Message);
            Assert.Contains("HF_TOKEN", e.Message);
        }
        using (var wrong = TempStore.Client(hub, token: "hf_wrong"))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => temp.Puller(hub, wrong).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken));
            Assert.Contains("refused the token in HF_TOKEN", e.Message);
        }
        using var client = TempStore.Client(hub, token: "hf_secret");
        var manifest = await temp.Puller(hub, client).PullAsync($"hf.co/{Repo}:Q6_K", TestContext.Current.CancellationToken);
        Assert.Equal(file.Sha256, manifest.Sha256);
        Assert.Contains("Bearer hf_secret", hub.Authorizations);
    }

    [Fact]
    public async Task ForbiddenSaysToAcceptTheTerms()
    {
        using var hub = new FakeHub();
        hub.Repos[Repo] = new FakeHub.FakeRepo { Forbidden = true };
        using var temp = new TempStore();
        using var client = TempStore.Client(hub, token: "hf_x");
        var e = await Assert.ThrowsAsync<HubException>(() => temp.Puller(hub, client).PullAsync($"hf.co/{Repo}", TestContext.Current.CancellationToken));
        Assert.Contains("403", e.Message);
        Assert.Contains("accept its terms", e.Message);
    }

    [Fact]
    public async Task NotFoundMessagesNameTheRepositoryOrTheFile()
    {
        using var hub = HubWithModel(out _);
        using var temp = new TempStore();
        using var client = TempStore.Client(hub);
        var puller = temp.Puller(hub, client);
        var ct = TestContext.Current.CancellationToken;

        var noRepo = await Assert.ThrowsAsync<HubException>(() => puller.PullAsync("hf.co/nobody/nothing-GGUF:Q4_K_M", ct));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, noRepo.Status);
        Assert.Contains("repository nobody/nothing-GGUF", noRepo.Message);
        Assert.Contains("404", noRepo.Message);

        var noFile = await Assert.ThrowsAsync<HubException>(() => puller.PullAsync($"hf.co/{Repo}/missing.gguf", ct));
        Assert.Contains("has no file missing.gguf", noFile.Message);

        var noQuant = await Assert.ThrowsAsync<HubException>(() => puller.PullAsync($"hf.co/{Repo}:Q2_K", ct));
        Assert.Contains("has no Q2_K GGUF file; available: Q6_K, Q8_0", noQuant.Message);
        Assert.Empty(temp.Store.List());
    }

    [Fact]
    public async Task UnreachableHubSuggestsALocalFile()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        using var temp = new TempStore();
        using var client = new HubClient(new HubOptions { Endpoint = $"http://127.0.0.1:{port}" });
        var puller = new ModelPuller(temp.Store, client, ModelCatalog.BuiltIn());
        var e = await Assert.ThrowsAsync<HubException>(() => puller.PullAsync("qwen2.5:0.5b", TestContext.Current.CancellationToken));
        Assert.Contains("cannot reach the Hub", e.Message);
        Assert.Contains("pass a local file path instead", e.Message);
    }

    [Fact]
    public async Task TwoConcurrentPullsOfTheSameFileMakeOneCorrectFile()
    {
        using var hub = HubWithModel(out var file);
        hub.ChunkDelay = TimeSpan.FromMilliseconds(1);
        using var temp = new TempStore();
        using var a = TempStore.Client(hub);
        using var b = TempStore.Client(hub);
        var log = new List<string>();
        var ct = TestContext.Current.CancellationToken;
        var first = Task.Run(() => temp.Puller(hub, a, log).PullAsync($"hf.co/{Repo}:Q6_K", ct), ct);
        var second = Task.Run(() => temp.Puller(hub, b, log).PullAsync($"hf.co/{Repo}/{FileName}", ct), ct);
        var results = await Task.WhenAll(first, second);

        Assert.All(results, m => Assert.Equal(file.Sha256, m.Sha256));
        Assert.Equal(1, hub.CdnRequests);
        Assert.Equal(file.Data, File.ReadAllBytes(temp.Store.BlobPath(file.Sha256)));
        Assert.Single(Directory.GetFiles(temp.Store.BlobsDir));
        Assert.Single(temp.Store.List());
        Assert.Empty(temp.TempFiles("*.partial"));
    }

    [Fact]
    public async Task APullWaitsForTheLockHeldByAnotherAndThenReusesItsBlob()
    {
        using var hub = HubWithModel(out var file);
        using var temp = new TempStore();
        Directory.CreateDirectory(temp.Store.TempDir);
        var ct = TestContext.Current.CancellationToken;
        var log = new List<string>();
        Task<Kaiyuan.Store.StoreManifest> pull;
        using var client = TempStore.Client(hub);
        using (var held = new FileStream(Path.Combine(temp.Store.TempDir, $"sha256-{file.Sha256}.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            pull = Task.Run(() => temp.Puller(hub, client, log).PullAsync($"hf.co/{Repo}:Q6_K", ct), ct);
            for (int i = 0; i < 500 && !log.ToArray().Any(l => l.Contains("waiting", StringComparison.Ordinal)); i++) await Task.Delay(10, ct);
            Assert.Contains(log.ToArray(), l => l.Contains("waiting", StringComparison.Ordinal));
            Assert.False(pull.IsCompleted);
            Assert.Equal(0, hub.CdnRequests);
            // The other pull finishes: its blob appears before it lets go of the lock.
            Directory.CreateDirectory(temp.Store.BlobsDir);
            File.WriteAllBytes(temp.Store.BlobPath(file.Sha256), file.Data);
        }
        var manifest = await pull;
        Assert.Equal(file.Sha256, manifest.Sha256);
        Assert.Equal(0, hub.CdnRequests);
        Assert.Contains(log, l => l.Contains("already in the store", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AliasesResolveThroughTheCatalogAndRemoveFreesTheBlob()
    {
        using var hub = HubWithModel(out var file);
        using var temp = new TempStore();
        Directory.CreateDirectory(temp.Store.Root);
        File.WriteAllText(Path.Combine(temp.Store.Root, "catalog.json"), "{\"dreams:260k\": {\"repo\": \"" + Repo + "\", \"quant\": \"Q6_K\"}}");
        using var client = TempStore.Client(hub);
        var manifest = await temp.Puller(hub, client).PullAsync("dreams:260k", TestContext.Current.CancellationToken);

        Assert.Equal(["dreams:260k"], manifest.Aliases);
        Assert.Equal(temp.Store.BlobPath(file.Sha256), ModelReference.Resolve("dreams:260k", temp.Store));
        Assert.Equal(temp.Store.BlobPath(file.Sha256), ModelReference.Resolve("dreams:260k-q6_k", temp.Store));
        Assert.Throws<ModelNotFoundException>(() => ModelReference.Resolve("dreams:260k-q8_0", temp.Store));

        Assert.True(temp.Store.Remove(manifest));
        Assert.Empty(temp.Store.List());
        Assert.False(File.Exists(temp.Store.BlobPath(file.Sha256)));
        Assert.Throws<ModelNotFoundException>(() => ModelReference.Resolve("dreams:260k", temp.Store));
    }
}
