using System.Diagnostics;
using System.Text.Json;
using Kaiyuan.Store;

namespace Kaiyuan.Tests.Cli;

/// <summary><c>kaiyuan serve</c> with several <c>-m</c>, <c>--models</c>, <c>--max-models</c> and <c>--keep-alive</c>, as a real process.</summary>
public sealed class ServeModelsCliTests
{
    private static async Task<string[]> Tags(Uri address)
    {
        using var http = new HttpClient { BaseAddress = address };
        using var doc = JsonDocument.Parse(await http.GetStringAsync("api/tags", TestContext.Current.CancellationToken));
        return doc.RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()!).ToArray();
    }

    [Fact]
    public async Task SeveralModelFlagsAndTheStoreAreServed()
    {
        string stories = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        string aidreams = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        var (process, address, banner) = await KaiyuanProcess.StartServeAsync("-m", stories, "-m", aidreams, "--max-models", "1", "--keep-alive", "30s", "--port", "0", "-t", "1");
        try
        {
            Assert.Contains("serving 2 models", banner, StringComparison.Ordinal);
            Assert.Contains("at most 1 loaded at once", banner, StringComparison.Ordinal);
            Assert.Contains("30 s after their last request", banner, StringComparison.Ordinal);
            Assert.Equal(["stories260K-f32:latest", "aidreams260K-f32:latest"], await Tags(address));
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
        }

        // --models: every model in the store, named by its catalog alias (else its reference), after those given with -m.
        string root = Directory.CreateTempSubdirectory("kaiyuan-store-").FullName;
        try
        {
            var store = new ModelStore(root);
            string copy = Path.Combine(root, "copy.gguf");
            File.Copy(aidreams, copy);
            string sha = ModelStore.HashFile(copy);
            store.Commit(copy, sha);
            store.Save(new StoreManifest
            {
                Reference = "hf.co/example/dreams/aidreams260K-f32.gguf",
                Repo = "example/dreams",
                File = "aidreams260K-f32.gguf",
                Sha256 = sha,
                Size = new FileInfo(aidreams).Length,
                Aliases = ["dreams:tiny"],
            });
            (process, address, banner) = await KaiyuanProcess.StartServeAsync("--store", root, "--models", "-m", stories, "--port", "0", "-t", "1");
            try
            {
                // Several models and no --keep-alive: Ollama's five minutes.
                Assert.Contains("300 s after their last request", banner, StringComparison.Ordinal);
                Assert.Equal(["stories260K-f32:latest", "dreams:tiny"], await Tags(address));
            }
            finally
            {
                process.Kill(entireProcessTree: true);
                process.Dispose();
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void BadModelFlagsAreOneLineErrors()
    {
        string stories = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        var keepAlive = KaiyuanProcess.Run("serve", "-m", stories, "--keep-alive", "soon", "--port", "0");
        Assert.NotEqual(0, keepAlive.ExitCode);
        Assert.Contains("--keep-alive", keepAlive.Stderr, StringComparison.Ordinal);
        var maxModels = KaiyuanProcess.Run("serve", "-m", stories, "--max-models", "-1", "--port", "0");
        Assert.NotEqual(0, maxModels.ExitCode);
        Assert.Contains("--max-models", maxModels.Stderr, StringComparison.Ordinal);
        string empty = Directory.CreateTempSubdirectory("kaiyuan-store-").FullName;
        try
        {
            var none = KaiyuanProcess.Run("serve", "--store", empty, "--models", "--port", "0");
            Assert.NotEqual(0, none.ExitCode);
            Assert.Contains("holds no models", none.Stderr, StringComparison.Ordinal);
            var nothing = KaiyuanProcess.Run("serve", "--port", "0");
            Assert.NotEqual(0, nothing.ExitCode);
            Assert.Contains("-m", nothing.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(empty, recursive: true);
        }
    }
}
