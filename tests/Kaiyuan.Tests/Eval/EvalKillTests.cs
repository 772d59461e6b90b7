using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

using Kaiyuan.Tests.Cli;

namespace Kaiyuan.Tests.Eval;

/// <summary>
/// <c>kaiyuan eval</c> as a separate process against a slow endpoint on loopback: <c>--concurrency</c> requests are in
/// flight at once, and a run killed midway resumes without asking again for any answer it had saved.
/// </summary>
public sealed class EvalKillTests : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("kaiyuan-eval-kill-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    [Fact]
    public async Task ASlowEndpointIsAskedConcurrentlyAndAKilledRunResumes()
    {
        var ct = TestContext.Current.CancellationToken;
        var (listener, url) = LoopbackListener.Start();
        using var listening = listener;
        int inFlight = 0, maxInFlight = 0;
        var asked = new ConcurrentDictionary<string, int>();
        var serving = Task.Run(async () =>
        {
            while (listener.IsListening)
            {
                HttpListenerContext context;
                try { context = await listener.GetContextAsync(); }
                catch (Exception) { return; }
                _ = Task.Run(async () =>
                {
                    int now = Interlocked.Increment(ref inFlight);
                    lock (asked) maxInFlight = Math.Max(maxInFlight, now);
                    try
                    {
                        using var reader = new StreamReader(context.Request.InputStream);
                        var body = JsonNode.Parse(await reader.ReadToEndAsync())!;
                        asked.AddOrUpdate((string)body["messages"]![0]!["content"]!, 1, (_, n) => n + 1);
                        await Task.Delay(300);
                        context.Response.ContentType = "text/event-stream";
                        byte[] sse = Encoding.UTF8.GetBytes(
                            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"#### 7\"}}]}\n\n" +
                            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
                            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
                        await context.Response.OutputStream.WriteAsync(sse);
                        context.Response.Close();
                    }
                    catch (Exception) { context.Response.Abort(); }
                    finally { Interlocked.Decrement(ref inFlight); }
                });
            }
        }, ct);
        string[] args = ["eval", "--task", "gsm8k", "-m", $"openai:{url}/v1#slow", "--data", Fixtures.Require("eval", "gsm8k", "test.jsonl"),
            "--limit", "16", "--concurrency", "4", "--out", _out, "--json"];
        string records = Path.Combine(_out, "gsm8k", "slow.jsonl");

        // First run: killed once a few answers are saved.
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "kaiyuan.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        using (var first = Process.Start(psi)!)
        {
            _ = first.StandardOutput.ReadToEndAsync(ct);
            _ = first.StandardError.ReadToEndAsync(ct);
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (SavedLines(records) < 5 && DateTime.UtcNow < deadline && !first.HasExited) await Task.Delay(20, ct);
            Assert.False(first.HasExited, "the first run ended before it could be killed");
            first.Kill(entireProcessTree: true);
            await first.WaitForExitAsync(ct);
        }
        var saved = File.ReadAllLines(records).Where(l => l.EndsWith('}')).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.InRange(saved.Count, 5, 15);
        Assert.Equal(4, maxInFlight);

        // Second run: the rest, and nothing that was saved asked again.
        var second = await Task.Run(() => KaiyuanProcess.Run(args), ct);
        listener.Close(); // Close alone: Stop then Close removes the port twice, and the second rebinds it (EADDRINUSE under TIME_WAIT)
        Assert.True(second.ExitCode == 0, second.Stderr);
        var report = JsonNode.Parse(second.Stdout.Trim())!;
        Assert.Equal(16, (int)report["n"]!);
        Assert.Equal(1.0 / 16 * CorrectCount(), (double)report["score"]!, 6);
        var all = File.ReadAllLines(records).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(Enumerable.Range(0, 16), all.Select(r => (int)r["index"]!).Order());
        foreach (var r in saved) Assert.Equal(1, asked[(string)r["prompt"]!]);
        Assert.Equal(16, asked.Count);
    }

    private static int SavedLines(string path)
    {
        try { return File.Exists(path) ? File.ReadAllLines(path).Count(l => l.EndsWith('}')) : 0; }
        catch (IOException) { return 0; }
    }

    /// <summary>How many of the first 16 GSM8K answers are 7 (what the fake endpoint always answers).</summary>
    private static int CorrectCount() => File.ReadLines(Fixtures.Require("eval", "gsm8k", "test.jsonl")).Take(16)
        .Count(l => JsonDocument.Parse(l).RootElement.GetProperty("answer").GetString()!.EndsWith("#### 7", StringComparison.Ordinal));
}
