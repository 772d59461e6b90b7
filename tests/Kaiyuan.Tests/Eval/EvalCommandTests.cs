using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Eval;

/// <summary><c>kaiyuan eval</c> through the real command line on a fixture model and the real GSM8K test set.</summary>
[Collection("Console")]
public sealed class EvalCommandTests : IDisposable
{
    private readonly string _out = Path.Combine(Path.GetTempPath(), $"kaiyuan-eval-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_out)) Directory.Delete(_out, recursive: true);
    }

    private (int Code, string Out, string Err) Eval(string outDir, int limit, int concurrency = 1, params string[] more) => ConsoleRunner.Run(
        ["eval", "--task", "gsm8k", "-m", Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf"), "--data", Fixtures.Require("eval", "gsm8k", "test.jsonl"),
         "--limit", $"{limit}", "--max-tokens", "8", "--concurrency", $"{concurrency}", "-t", "1", "--out", outDir, .. more]);

    private static List<JsonObject> Records(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, "gsm8k", "qwen3-q8_0.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).OrderBy(r => (int)r["index"]!).ToList();

    [Fact]
    public void PrintsTheReportContractAndSavesEveryAnswer()
    {
        var (code, output, error) = Eval(_out, 3, more: "--json");
        Assert.True(code == 0, error);
        var report = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal("gsm8k", (string)report["task"]!);
        Assert.Equal("qwen3-q8_0", (string)report["model"]!);
        Assert.Equal("exact_match", (string)report["metric"]!);
        Assert.Equal(3, (int)report["n"]!);
        double score = (double)report["score"]!;
        var ci = report["ci95"]!.AsArray().Select(v => (double)v!).ToArray();
        Assert.True(ci.Length == 2 && ci[0] <= score && score <= ci[1], report.ToJsonString());
        Assert.True((long)report["tokens_in"]! > 0 && (long)report["tokens_out"]! > 0);
        Assert.True(report.ContainsKey("tokens_per_s") && report.ContainsKey("ttft_ms") && report.ContainsKey("cost_per_1k_tasks_usd"));

        var records = Records(_out);
        Assert.Equal([0, 1, 2], records.Select(r => (int)r["index"]!));
        string firstQuestion = JsonDocument.Parse(File.ReadLines(Fixtures.Require("eval", "gsm8k", "test.jsonl")).First()).RootElement.GetProperty("question").GetString()!;
        Assert.StartsWith(firstQuestion, (string)records[0]["prompt"]!);
        Assert.Equal("18", (string)records[0]["reference"]!);
        Assert.All(records, r => Assert.Equal(8, (int)r["tokens_out"]!));
    }

    [Fact]
    public void AStoppedRunResumesWithoutAnsweringAgain()
    {
        Assert.Equal(0, Eval(_out, 2).Code);
        // Mark a saved answer, and leave a line cut short as a kill would.
        string path = Path.Combine(_out, "gsm8k", "qwen3-q8_0.jsonl");
        var lines = File.ReadAllLines(path).ToList();
        var marked = JsonNode.Parse(lines[0])!.AsObject();
        marked["output"] = "saved before the kill";
        lines[0] = marked.ToJsonString();
        File.WriteAllText(path, string.Join('\n', lines) + "\n{\"index\":2,\"prom");

        var (code, _, error) = Eval(_out, 4);
        Assert.True(code == 0, error);
        var records = Records(_out);
        Assert.Equal([0, 1, 2, 3], records.Select(r => (int)r["index"]!));
        Assert.Contains(records, r => (string)r["output"]! == "saved before the kill");
        // The resumed run's clock starts where the first one stopped, so its wall time (a local model's cost) covers all four answers.
        double first = records.Take(2).Max(r => (double)r["wall_seconds"]!);
        Assert.True(first > 0 && records.Skip(2).All(r => (double)r["wall_seconds"]! > first), string.Join(", ", records.Select(r => r["wall_seconds"])));
        double total = (double)JsonNode.Parse(File.ReadAllLines(Path.Combine(_out, "summary.jsonl"))[^1])!["wall_s"]!;
        Assert.True(total >= records.Max(r => (double)r["wall_seconds"]!) - 0.01, $"{total}");
    }

    [Fact]
    public void AnswersBatchedTogetherEqualAnswersAloneAtTemperatureZero()
    {
        string alone = _out + "-alone";
        try
        {
            Assert.Equal(0, Eval(alone, 4, concurrency: 1).Code);
            Assert.Equal(0, Eval(_out, 4, concurrency: 4).Code);
            Assert.Equal(Records(alone).Select(r => (string)r["output"]!), Records(_out).Select(r => (string)r["output"]!));
        }
        finally
        {
            if (Directory.Exists(alone)) Directory.Delete(alone, recursive: true);
        }
    }

    [Fact]
    public void HumanEvalSamplesAreScoredLikeTheReferenceHarness()
    {
        var (code, output, error) = ConsoleRunner.Run("eval", "--task", "humaneval", "--data", Fixtures.Require("eval", "humaneval", "example_problem.jsonl"),
            "--samples", Fixtures.Require("eval", "humaneval", "example_samples.jsonl"), "--json");
        if (code != 0 && error.Contains("python3", StringComparison.Ordinal)) Assert.Skip("python3 is not installed");
        Assert.True(code == 0, error);
        var report = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal("pass@1", (string)report["metric"]!);
        Assert.Equal(0.5, (double)report["score"]!);
        Assert.Equal(6, (int)report["samples"]!);
        Assert.Equal(1, (int)report["timed_out"]!);
    }

    [Fact]
    public void UnknownTasksAndBadDataAreClearErrors()
    {
        var (code, _, error) = ConsoleRunner.Run("eval", "--task", "mmlu-pro", "-m", "x.gguf", "--data", "x.jsonl");
        Assert.Equal(1, code);
        Assert.Contains("unknown task", error);

        string bad = Path.Combine(Path.GetTempPath(), $"kaiyuan-eval-bad-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(bad, "{\"question\": \"2+2?\", \"answer\": \"4\"}\n");
        try
        {
            (code, _, error) = ConsoleRunner.Run("eval", "--task", "gsm8k", "-m", "x.gguf", "--data", bad);
            Assert.Equal(1, code);
            Assert.Contains(":1: not a GSM8K item", error);
        }
        finally
        {
            File.Delete(bad);
        }
    }
}

/// <summary><c>kaiyuan eval</c> of models behind OpenAI-compatible endpoints: a real <c>kaiyuan serve</c>, and a fake that fails first.</summary>
[Collection("Console")]
public sealed class EvalEndpointTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string _out = Path.Combine(Path.GetTempPath(), $"kaiyuan-eval-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_out)) Directory.Delete(_out, recursive: true);
    }

    private static List<JsonObject> Records(string outDir, string model) =>
        File.ReadAllLines(Path.Combine(outDir, "gsm8k", model + ".jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).OrderBy(r => (int)r["index"]!).ToList();

    [Fact]
    public async Task AModelOverHttpAnswersAsItDoesInProcess()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf"), data = Fixtures.Require("eval", "gsm8k", "test.jsonl");
        await using var server = await Kaiyuan.AspNetCore.KaiyuanServer.StartAsync(new Kaiyuan.AspNetCore.ServerOptions
        {
            ModelPath = model,
            Alias = "served",
            Port = 0,
            Parallel = 2,
            Threads = 1,
            RequestLogging = false,
        }, Ct);
        await server.WaitReadyAsync();
        var local = ConsoleRunner.Run("eval", "--task", "gsm8k", "-m", model, "--data", data, "--limit", "3", "--max-tokens", "8", "-t", "1", "--out", _out);
        Assert.True(local.Code == 0, local.Err);
        var remote = await Task.Run(() => ConsoleRunner.Run("eval", "--task", "gsm8k", "-m", $"openai:{server.Address}v1#served", "--data", data, "--limit", "3",
            "--max-tokens", "8", "--concurrency", "2", "--out", _out, "--json"), Ct);
        Assert.True(remote.Code == 0, remote.Err);
        var report = JsonNode.Parse(remote.Out.Trim())!.AsObject();
        Assert.Equal("served", (string)report["model"]!);
        Assert.Equal(3, (int)report["n"]!);
        var inProcess = Records(_out, "qwen3-q8_0");
        var overHttp = Records(_out, "served");
        Assert.Equal(inProcess.Select(r => (string)r["output"]!), overHttp.Select(r => (string)r["output"]!));
        Assert.Equal(inProcess.Select(r => (int)r["tokens_in"]!), overHttp.Select(r => (int)r["tokens_in"]!));
        Assert.Equal(inProcess.Select(r => (int)r["tokens_out"]!), overHttp.Select(r => (int)r["tokens_out"]!));
    }

    [Fact]
    public async Task BusyAndFailingEndpointsAreRetriedWithBackoff()
    {
        var (listener, url) = LoopbackListener.Start();
        using var listening = listener;
        int requests = 0;
        var serving = Task.Run(async () =>
        {
            while (listener.IsListening)
            {
                System.Net.HttpListenerContext context;
                try { context = await listener.GetContextAsync(); }
                catch (Exception) { return; }
                int n = Interlocked.Increment(ref requests);
                var response = context.Response;
                if (n == 1) { response.StatusCode = 429; response.AddHeader("Retry-After", "0"); response.Close(); continue; }
                if (n == 2) { response.StatusCode = 503; response.Close(); continue; }
                response.ContentType = "text/event-stream";
                byte[] body = System.Text.Encoding.UTF8.GetBytes(
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"9 * 2 = 18\\n#### 18\"}}]}\n\n" +
                    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
                    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":90,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n");
                await response.OutputStream.WriteAsync(body);
                response.Close();
            }
        }, Ct);
        var (code, output, error) = await Task.Run(() => ConsoleRunner.Run("eval", "--task", "gsm8k", "-m", $"openai:{url}/v1#fake",
            "--data", Fixtures.Require("eval", "gsm8k", "test.jsonl"), "--limit", "1", "--out", _out, "--json"), Ct);
        listener.Close(); // Close alone: Stop then Close removes the port twice, and the second rebinds it (EADDRINUSE under TIME_WAIT)
        Assert.True(code == 0, error);
        Assert.Equal(3, requests);
        var report = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal(1.0, (double)report["score"]!);
        Assert.Equal(90, (long)report["tokens_in"]!);
        Assert.Equal(7, (long)report["tokens_out"]!);
    }
}
