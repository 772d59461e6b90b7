using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Security.Cryptography;
using Kaiyuan.Gguf;
using Kaiyuan.Models;
using Kaiyuan.Store;
using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Robustness;

/// <summary>
/// <c>kill -9</c> of the real <c>kaiyuan</c> process at many points of a quantization and of a pull: what a user saved is
/// never left corrupt or partial under its real name, and the next run completes (a pull resumes its download).
/// </summary>
public sealed class KillTests
{
    private static Process Start(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "kaiyuan.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        return p;
    }

    /// <summary>Runs to the end (true) or is killed with SIGKILL after <paramref name="after"/> (false).</summary>
    private static bool RunOrKill(TimeSpan after, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var p = Start(environment, args);
        if (p.WaitForExit(after)) return p.ExitCode == 0;
        p.Kill(entireProcessTree: true); // SIGKILL: no handler, no finally block runs
        p.WaitForExit();
        return false;
    }

    private static void AssertCompleteModel(string path)
    {
        using var model = ModelLoader.Load(path);
        Assert.True(model.VocabSize > 0);
    }

    [Fact]
    public void AQuantizationKilledAtAnyPointLeavesNoPartialOutput()
    {
        string input = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf");
        string dir = Directory.CreateTempSubdirectory("kaiyuan-kill-quantize-").FullName;
        try
        {
            string output = Path.Combine(dir, "out.gguf");
            int completed = 0;
            foreach (int ms in new[] { 30, 120, 200, 280, 360, 440, 520, 650, 800, 1000 })
            {
                if (File.Exists(output)) File.Delete(output);
                if (RunOrKill(TimeSpan.FromMilliseconds(ms), null, "quantize", input, output, "Q4_K_M", "-t", "1")) completed++;
                // Either nothing under the real name, or the whole model.
                if (File.Exists(output)) AssertCompleteModel(output);
            }
            // The next run completes whatever the last one left behind (a .partial is overwritten, then renamed).
            Assert.True(RunOrKill(TimeSpan.FromMinutes(2), null, "quantize", input, output, "Q4_K_M", "-t", "1"));
            AssertCompleteModel(output);
            Assert.Empty(Directory.GetFiles(dir, "*.partial"));
            Assert.True(completed < 10, "every run finished before its kill: the kills tested nothing");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void APullKilledAtAnyPointLeavesTheStoreConsistentAndTheNextPullResumes()
    {
        using var hub = new FakeHub { ChunkDelay = TimeSpan.FromMilliseconds(4) };
        var file = new FakeHub.FakeFile("tiny-Q6_K.gguf", File.ReadAllBytes(Fixtures.ModelPath("aidreams260K", "aidreams260K-q6_k.gguf")));
        hub.Add("kaiyuan-test/tiny-GGUF", file);
        using var temp = new TempStore();
        var environment = new Dictionary<string, string> { ["HF_ENDPOINT"] = hub.Endpoint };
        string[] pull = ["pull", "hf.co/kaiyuan-test/tiny-GGUF:Q6_K", "--store", temp.Store.Root];
        // Each pull is killed once its download has gone further than the last one's (the .partial file grows across
        // attempts, as each resumes), so the kills land mid-download however fast or loaded the machine is.
        foreach (int round in Enumerable.Range(1, 5))
        {
            using var p = Start(environment, pull);
            var clock = Stopwatch.StartNew();
            while (!p.HasExited && PartialBytes(temp) < round * file.Data.Length / 7 && clock.Elapsed < TimeSpan.FromMinutes(1)) Thread.Sleep(2);
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit();
            AssertConsistent(temp.Store);
        }
        Assert.True(RunOrKill(TimeSpan.FromMinutes(2), environment, pull));
        AssertConsistent(temp.Store);
        var manifest = Assert.Single(temp.Store.List());
        Assert.Equal(file.Sha256, ModelStore.HashFile(temp.Store.BlobPath(manifest.Sha256)));
        AssertCompleteModel(temp.Store.BlobPath(manifest.Sha256));
        // Some attempt went on from the bytes an earlier, killed one had saved.
        Assert.Contains(hub.Ranges, r => r.StartsWith("bytes=", StringComparison.Ordinal) && !r.StartsWith("bytes=0-", StringComparison.Ordinal));
    }

    private static readonly string[] Prompts =
    [
        .. Enumerable.Range(0, 6).Select(i => string.Join(' ', Enumerable.Repeat($"In my dream {i} I saw a garden,", 3 + i % 4))),
    ];

    /// <summary>Serves aidreams260K on a free port; returns the process and a client for the address it announces.</summary>
    private static async Task<(Process Process, HttpClient Http)> ServeAsync(params string[] args)
    {
        var (process, address, _) = await Cli.KaiyuanProcess.StartServeAsync(
            ["-m", Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"), "--port", "0", "-t", "1", .. args]);
        var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
        try
        {
            // The server listens before its model has loaded (answering 503 meanwhile); on a busy machine that takes a while.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                using var health = await http.GetAsync("health", TestContext.Current.CancellationToken);
                if (health.IsSuccessStatusCode) break;
                Assert.True(DateTime.UtcNow < deadline, "the server's model did not load within 60 s");
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }

        return (process, http);
    }

    private static async Task<string> CompleteAsync(HttpClient http, string prompt, CancellationToken ct = default)
    {
        string body = JsonSerializer.Serialize(new { model = "aidreams260K-f32", prompt, max_tokens = 12, temperature = 0 });
        using var response = await http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), ct);
        string text = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.IsSuccessStatusCode, text);
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    [Fact]
    public async Task AServerKilledWhileWritingItsPromptCacheLeavesEntriesThatGiveTheSameAnswers()
    {
        var ct = TestContext.Current.CancellationToken;
        // The answers computed from scratch, with no prompt cache.
        var reference = new List<string>();
        var (plain, plainHttp) = await ServeAsync();
        try
        {
            foreach (var prompt in Prompts) reference.Add(await CompleteAsync(plainHttp, prompt, ct));
        }
        finally
        {
            plain.Kill(entireProcessTree: true);
            plain.Dispose();
        }

        string dir = Directory.CreateTempSubdirectory("kaiyuan-kill-prompt-cache-").FullName;
        try
        {
            // Servers killed with requests (and so prompt-cache writes) in flight: each answers one request first (a fresh
            // process is slow to its first answer), then gets all of them and is killed a moment later; the last one
            // waits long enough for its writes to finish, so some entries are surely whole.
            int round = 0;
            foreach (int ms in new[] { 0, 2, 10, 30, 500 })
            {
                var (server, http) = await ServeAsync("--prompt-cache", dir);
                Task[] inFlight;
                try
                {
                    await CompleteAsync(http, Prompts[round++ % Prompts.Length], ct);
                    inFlight = Prompts.Select(p => CompleteAsync(http, p, ct)).ToArray();
                    await Task.Delay(ms, ct);
                }
                finally
                {
                    // Killed whatever happened, so a failed round leaves no server behind.
                    server.Kill(entireProcessTree: true);
                    server.WaitForExit();
                    server.Dispose();
                }

                await Task.WhenAll(inFlight.Select(t => t.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default)));
            }
            // A server on what they left: every answer as computed from scratch, some of them from entries on disk.
            var (last, lastHttp) = await ServeAsync("--prompt-cache", dir);
            try
            {
                // Opening the cache removed what the killed writers left; checked before this server writes its own.
                Assert.Empty(Directory.GetFiles(dir, "*.tmp", SearchOption.AllDirectories));
                for (int i = 0; i < Prompts.Length; i++) Assert.Equal(reference[i], await CompleteAsync(lastHttp, Prompts[i], ct));
                string metrics = await lastHttp.GetStringAsync("metrics", ct);
                Assert.Matches(@"kaiyuan_prompt_cache_loaded_tokens_total [1-9]", metrics);
            }
            finally
            {
                last.Kill(entireProcessTree: true);
                last.Dispose();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static long PartialBytes(TempStore temp) => temp.TempFiles("*.partial").Sum(f => new FileInfo(f).Length);

    /// <summary>Every manifest names a blob that is there, and every blob's content hashes to its name.</summary>
    private static void AssertConsistent(ModelStore store)
    {
        foreach (var m in store.List()) Assert.True(File.Exists(store.BlobPath(m.Sha256)), $"manifest {m.Repo}/{m.File} names a missing blob");
        if (!Directory.Exists(store.BlobsDir)) return;
        foreach (var blob in Directory.GetFiles(store.BlobsDir))
        {
            using var stream = File.OpenRead(blob);
            Assert.Equal(Path.GetFileName(blob), "sha256-" + Convert.ToHexStringLower(SHA256.HashData(stream)));
        }
    }
}
