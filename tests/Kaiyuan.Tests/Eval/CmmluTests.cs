using System.Text.Json.Nodes;
using Kaiyuan.Cli.Eval;
using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Eval;

/// <summary>CMMLU: its data and prompt format as CMMLU's harness has them, and choice scoring against the model's own logits.</summary>
public sealed class CmmluTests
{
    private static string Data => Fixtures.Require("eval", "cmmlu");

    [Fact]
    public void EveryTestQuestionLoadsAndEverySubjectHasItsChineseNameAndCategories()
    {
        var task = CmmluTask.Load(Data, 0, null);
        // Every row of the 67 test files: 11,582, as Python's csv module also counts them (the fixtures' README says 11,528).
        Assert.Equal(11582, task.Count);
        var subjects = task.Items.Select(i => i.Subject).Distinct().ToList();
        Assert.Equal(67, subjects.Count);
        Assert.All(subjects, s => Assert.True(CmmluTask.Subjects.ContainsKey(s), s));
        // CMMLU's categories: a subject in one of the four fields, and some also China-specific.
        var perCategory = CmmluTask.Categories.ToDictionary(c => c, c => CmmluTask.Subjects.Count(s => s.Value.Categories.Contains(c)));
        Assert.Equal(67, CmmluTask.Subjects.Values.Count(f => f.Categories.Count(c => c != "China specific") == 1));
        Assert.Equal(new Dictionary<string, int> { ["STEM"] = 17, ["Humanities"] = 13, ["Social Science"] = 22, ["Other"] = 15, ["China specific"] = 15 }, perCategory);
        Assert.All(task.Items, i => Assert.Contains(i.Answer, new[] { "A", "B", "C", "D" }));
    }

    [Fact]
    public void ThePromptIsFiveShotInCmmlusOwnFormat()
    {
        var task = CmmluTask.Load(Data, 2, ["agronomy"]);
        Assert.Equal(2, task.Count);
        string prompt = task.Prompt(task.Items[0]);
        const string Expected = "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"
            + "题目：肉牛屠宰后，胴体的哪个部位肉质较好\nA. 胸\nB. 腹\nC. 大腿\nD. 小腿\n答案是：C\n\n"
            + "题目：下列鸭品种中，产蛋量最高的品种是\nA. 高邮鸭\nB. 北京鸭\nC. 樱桃谷鸭\nD. 绍鸭\n答案是：D\n\n"
            + "题目：常见家畜中输精管不形成输精管壶腹的是\nA. 马\nB. 猪\nC. 牛\nD. 羊\n答案是：B\n\n"
            + "题目：牛的发情周期平均为\nA. 16～17天\nB. 21天\nC. 28天\nD. 19～20天\n答案是：B\n\n"
            + "题目：羊胴体中，肉质较好的部位是\nA. 胸下肉\nB. 肩胛肉\nC. 后腿肉\nD. 小腿肉\n答案是：C\n\n"
            + "题目：在农业生产中被当作极其重要的劳动对象发挥作用，最主要的不可替代的基本生产资料是\nA. 农业生产工具\nB. 土地\nC. 劳动力\nD. 资金\n答案是：";
        Assert.Equal(Expected, prompt);
        Assert.Equal("B", task.Items[0].Answer);
    }

    /// <summary>A model that takes prompts up to a length in characters.</summary>
    private sealed class ShortModel(int length) : IEvalModel
    {
        public string Name => "short";
        public bool CompletesRawText => true;
        public bool Fits(string rawPrompt) => rawPrompt.Length <= length;
        public Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel) => throw new NotSupportedException();
        public void Dispose() { }
    }

    [Fact]
    public void APromptTooLongForTheContextLosesItsLongestExamplesFirst()
    {
        var task = CmmluTask.Load(Data, 1, ["agronomy"]);
        var item = task.Items[0];
        string full = task.Prompt(item);
        Assert.Equal(full, task.Prompt(item, new ShortModel(full.Length)));
        string shorter = task.Prompt(item, new ShortModel(full.Length - 1));
        // One character too many: the longest example goes, the others stay in order.
        var examples = full.Split("\n\n")[1..^1];
        string longest = examples.MaxBy(e => e.Length)!;
        Assert.Equal(full.Replace(longest + "\n\n", "", StringComparison.Ordinal), shorter);
        // Nothing fits: the header and the question alone.
        Assert.Equal("以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n" + CmmluTask.Question(item), task.Prompt(item, new ShortModel(10)));
    }

    /// <summary>An endpoint whose context is only found out by its refusals: prompts over a length in characters are refused as too long.</summary>
    private sealed class RefusingEndpoint(int length) : IEvalModel
    {
        public List<int> Asked { get; } = [];
        public string Name => "refusing";
        public bool CompletesRawText => true;
        public bool Fits(string rawPrompt) => true;

        public Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel)
        {
            lock (Asked) Asked.Add(request.Prompt.Length);
            if (request.Prompt.Length > length) throw new PromptTooLongException("refusing: the endpoint answered 400: context_length_exceeded");
            return Task.FromResult(new EvalAnswer("B", 10, 1, 1, 0.01, "stop"));
        }

        public void Dispose() { }
    }

    [Fact]
    public async Task AnEndpointThatRefusesAPromptAsTooLongIsAskedAgainWithFewerExamples()
    {
        var task = CmmluTask.Load(Data, 1, ["agronomy"]);
        string full = task.Prompt(task.Items[0]);
        using var endpoint = new RefusingEndpoint(full.Length - 100);
        string records = Path.Combine(Path.GetTempPath(), $"kaiyuan-cmmlu-{Guid.NewGuid():N}.jsonl");
        try
        {
            var result = await new EvalRunner(endpoint, 1).RunAsync(task, records, null, TestContext.Current.CancellationToken);
            Assert.Equal(1, result.N);
            // Asked with five examples, refused, then with one fewer at a time until it fitted: the prompt the local path
            // would have chosen for a context of that size.
            string fitted = task.Prompt(task.Items[0], new ShortModel(full.Length - 100));
            Assert.True(endpoint.Asked.Count >= 2 && endpoint.Asked[0] == full.Length && endpoint.Asked[^1] == fitted.Length, string.Join(",", endpoint.Asked));
            Assert.Equal(fitted, (string)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllLines(records).Single())!["prompt"]!);
        }
        finally
        {
            File.Delete(records);
        }
    }

    [Fact]
    public void TheChoiceIsTheLikeliestLetterOrElseTheFirstLetterStandingAlone()
    {
        string[] letters = ["A", "B", "C", "D"];
        var byLogprobs = new EvalAnswer("A", 1, 1, 0, 0, "length") { ChoiceLogprobs = new Dictionary<string, double> { ["A"] = -3, ["B"] = -0.5, ["C"] = -0.5, ["D"] = -9 } };
        Assert.Equal(("B", "logprobs"), CmmluTask.Choose(byLogprobs, letters)); // the first of equals
        Assert.Equal(("C", "generated"), CmmluTask.Choose(new EvalAnswer("Answer: C", 1, 3, 0, 0, "stop"), letters));
        Assert.Equal("B", CmmluTask.FirstLetter("答案是B。", letters));
        Assert.Null(CmmluTask.FirstLetter("No letter at all", letters));
        // An endpoint's first-token alternatives: " A" counts as "A", other tokens do not.
        Assert.Equal(new Dictionary<string, double> { ["A"] = -1.5, ["B"] = -0.2 },
            OpenAiEvalModel.ChoiceLogprobs([(" A", -1.5), ("B", -0.2), ("The", -0.1), ("A", -2.5)], letters));
        Assert.Null(OpenAiEvalModel.ChoiceLogprobs([("The", -0.1)], letters));
        // Chat streams the alternatives as {token, logprob} objects, text completions as a token → logprob map.
        using var chat = System.Text.Json.JsonDocument.Parse("""{"content":[{"token":"B","logprob":-0.1,"top_logprobs":[{"token":"B","logprob":-0.1},{"token":"A","logprob":-2.0}]}]}""");
        Assert.Equal([("B", -0.1), ("A", -2.0)], OpenAiEvalModel.FirstTop(chat.RootElement)!);
        using var text = System.Text.Json.JsonDocument.Parse("""{"tokens":["C"],"token_logprobs":[-0.3],"top_logprobs":[{"C":-0.3,"D":-1.25}]}""");
        Assert.Equal([("C", -0.3), ("D", -1.25)], OpenAiEvalModel.FirstTop(text.RootElement)!);
    }

    [Fact]
    public void MalformedDataIsAnErrorNamingFileAndLine()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kaiyuan-cmmlu-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(dir, "test"));
        Directory.CreateDirectory(Path.Combine(dir, "dev"));
        try
        {
            File.WriteAllText(Path.Combine(dir, "dev", "arts.csv"), ",Question,A,B,C,D,Answer\n0,\"q, with a comma\",a,b,c,d,A\n");
            File.WriteAllText(Path.Combine(dir, "test", "arts.csv"), ",Question,A,B,C,D,Answer\n0,q,a,b,c,d,B\n1,q,a,b,c,d,E\n");
            var e = Assert.Throws<FormatException>(() => CmmluTask.Load(dir, 0, null));
            Assert.Contains("arts.csv:3: the answer 'E'", e.Message);
            File.WriteAllText(Path.Combine(dir, "test", "arts.csv"), ",Question,A,B,C,D,Answer\n0,\"a quoted field\nover two lines\",a,b,c,d,B\n1,q,a,b\n");
            e = Assert.Throws<FormatException>(() => CmmluTask.Load(dir, 0, null));
            Assert.Contains("arts.csv:4: 4 fields", e.Message);
            File.WriteAllText(Path.Combine(dir, "test", "arts.csv"), ",Question,A,B,C,D,Answer\n0,\"a quoted field\nover two lines\",a,b,c,d,B\n");
            var task = CmmluTask.Load(dir, 0, null);
            Assert.Equal("a quoted field\nover two lines", task.Items[0].Question);
            Assert.Contains("题目：q, with a comma\nA. a", task.Prompt(task.Items[0]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>
/// CMMLU's choice scoring end to end: what <c>kaiyuan eval</c> picks for a local model (the letters' log-probabilities from
/// the scheduler) against the argmax of the same letters' logits that <c>kaiyuan generate --logits</c> prints for the same
/// prompt (a separate inference session).
/// </summary>
[Collection("Console")]
public sealed class CmmluCommandTests : IDisposable
{
    private readonly string _out = Path.Combine(Path.GetTempPath(), $"kaiyuan-eval-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_out)) Directory.Delete(_out, recursive: true);
    }

    [Fact]
    public void ChoiceScoringEqualsTheArgmaxOfGeneratesLogits()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf");
        var (code, output, error) = ConsoleRunner.Run("eval", "--task", "cmmlu", "-m", model, "--data", Fixtures.Require("eval", "cmmlu"), "--limit", "2",
            "--subjects", "arts,virology,computer_science", "-c", "2048", "-t", "1", "--concurrency", "2", "--out", _out, "--json");
        Assert.True(code == 0, error);
        var report = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal("cmmlu", (string)report["task"]!);
        Assert.Equal("accuracy", (string)report["metric"]!);
        Assert.Equal(6, (int)report["n"]!);
        Assert.Equal(6, (int)report["scored_by_logprobs"]!);
        Assert.Equal(3, report["subjects"]!.AsObject().Count);
        Assert.True(report["categories"]!.AsObject().ContainsKey("STEM"));
        foreach (string key in new[] { "score", "ci95", "tokens_in", "tokens_out", "tokens_per_s", "ttft_ms", "cost_per_1k_tasks_usd" }) Assert.True(report.ContainsKey(key), key);

        // The letters' token ids, as the tokenizer command gives them (the last token: SentencePiece puts a space piece first).
        var ids = new[] { "A", "B", "C", "D" }.ToDictionary(l => l, l =>
        {
            var t = ConsoleRunner.Run("tokenize", "-m", model, "--text", l, "--no-bos", "--json");
            Assert.True(t.Code == 0, t.Err);
            return (int)JsonNode.Parse(t.Out)!["ids"]!.AsArray()[^1]!;
        });
        var records = File.ReadAllLines(Path.Combine(_out, "cmmlu", "qwen3-q8_0.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(6, records.Count);
        int correct = 0;
        foreach (var record in records)
        {
            var generate = ConsoleRunner.Run("generate", "-m", model, "-p", (string)record["prompt"]!, "-n", "1", "--ignore-eos", "-c", "2048", "-t", "1", "--json", "--logits");
            Assert.True(generate.Code == 0, generate.Err);
            var logits = JsonNode.Parse(generate.Out)!["logits"]!.AsArray()[0]!.AsArray().Select(v => (double)v!).ToArray();
            double max = logits.Max(), logSum = max + Math.Log(logits.Sum(v => Math.Exp(v - max)));
            string argmax = ids.OrderByDescending(p => logits[p.Value]).First().Key;
            Assert.Equal(argmax, (string)record["extracted"]!);
            var scored = record["choice_logprobs"]!.AsObject();
            foreach (var (letter, id) in ids) Assert.Equal(logits[id] - logSum, (double)scored[letter]!, 2e-3);
            if ((bool)record["correct"]!) correct++;
        }
        Assert.Equal(correct / 6.0, (double)report["score"]!, 12);
    }

    /// <summary>A served model asked through <c>/v1/completions</c> for the same prompts: any letter among its 20 likeliest
    /// first tokens has the log-probability the local run computed; through chat the same task runs to a score too.</summary>
    [Fact]
    public async Task AServedModelsLogprobsAgreeWithTheLocalScores()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf"), data = Fixtures.Require("eval", "cmmlu");
        await using var server = await Kaiyuan.AspNetCore.KaiyuanServer.StartAsync(new Kaiyuan.AspNetCore.ServerOptions
        {
            ModelPath = model,
            Alias = "served",
            Port = 0,
            Parallel = 2,
            Threads = 1,
            ContextSize = 2048,
            RequestLogging = false,
        }, TestContext.Current.CancellationToken);
        await server.WaitReadyAsync();
        string[] common = ["eval", "--task", "cmmlu", "--data", data, "--limit", "1", "--subjects", "arts,virology,genetics", "--concurrency", "2", "--json"];
        var local = ConsoleRunner.Run([.. common, "-m", model, "-c", "2048", "-t", "1", "--out", _out]);
        Assert.True(local.Code == 0, local.Err);
        var remote = await Task.Run(() => ConsoleRunner.Run([.. common, "-m", $"openai:{server.Address}v1#served", "--completions", "--out", _out]), TestContext.Current.CancellationToken);
        Assert.True(remote.Code == 0, remote.Err);
        var chat = await Task.Run(() => ConsoleRunner.Run([.. common, "-m", $"openai:{server.Address}v1#served", "--out", Path.Combine(_out, "chat")]), TestContext.Current.CancellationToken);
        Assert.True(chat.Code == 0, chat.Err);
        Assert.Equal(3, (int)JsonNode.Parse(chat.Out.Trim())!["n"]!);

        List<JsonObject> Records(string name) => File.ReadAllLines(Path.Combine(_out, "cmmlu", name + ".jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).OrderBy(r => (int)r["index"]!).ToList();
        var inProcess = Records("qwen3-q8_0");
        var served = Records("served");
        Assert.Equal(inProcess.Select(r => (string)r["prompt"]!), served.Select(r => (string)r["prompt"]!));
        for (int i = 0; i < served.Count; i++)
        {
            if (served[i]["choice_logprobs"] is not JsonObject top) continue;
            Assert.Equal("logprobs", (string)served[i]["detail"]!);
            var all = inProcess[i]["choice_logprobs"]!.AsObject();
            foreach (var (letter, lp) in top)
            {
                Assert.Equal((double)all[letter]!, (double)lp!, 2e-3);
            }
            if (top.Count == 4) Assert.Equal((string)inProcess[i]["extracted"]!, (string)served[i]["extracted"]!);
        }
        // A random-weight model rarely ranks a letter among its 20 likeliest tokens: those answers fall back to the letter written.
        Assert.All(served.Where(r => r["choice_logprobs"] is null), r => Assert.Equal("generated", (string)r["detail"]!));
    }

    /// <summary>An endpoint's first-token log-probabilities decide where they name letters; an answer without them is read for its letter.</summary>
    [Fact]
    public async Task EndpointLogprobsDecideAndAnAnswerWithoutThemIsReadForItsLetter()
    {
        var (listener, url) = LoopbackListener.Start();
        using var listening = listener;
        var bodies = new List<JsonObject>();
        var serving = Task.Run(async () =>
        {
            while (listener.IsListening)
            {
                System.Net.HttpListenerContext context;
                try { context = await listener.GetContextAsync(); }
                catch (Exception) { return; }
                using (var reader = new StreamReader(context.Request.InputStream)) bodies.Add(JsonNode.Parse(await reader.ReadToEndAsync())!.AsObject());
                // Text completions give log-probabilities ("A" likelier than " B", the written token "x" likeliest); chat writes "C" and gives none.
                string chunk = context.Request.Url!.AbsolutePath == "/v1/completions"
                    ? """{"choices":[{"index":0,"text":"x","logprobs":{"tokens":["x"],"token_logprobs":[-0.1],"top_logprobs":[{"x":-0.1," B":-1.5,"A":-0.9}]}}]}"""
                    : """{"choices":[{"index":0,"delta":{"content":"C"},"logprobs":null}]}""";
                context.Response.ContentType = "text/event-stream";
                await context.Response.OutputStream.WriteAsync(System.Text.Encoding.UTF8.GetBytes($"data: {chunk}\n\ndata: [DONE]\n\n"));
                context.Response.Close();
            }
        }, TestContext.Current.CancellationToken);
        string[] args = ["eval", "--task", "cmmlu", "-m", $"openai:{url}/v1#fake", "--data", Fixtures.Require("eval", "cmmlu"), "--limit", "1", "--subjects", "arts", "--json"];
        var text = await Task.Run(() => ConsoleRunner.Run([.. args, "--completions", "--out", Path.Combine(_out, "text")]), TestContext.Current.CancellationToken);
        var chat = await Task.Run(() => ConsoleRunner.Run([.. args, "--out", Path.Combine(_out, "chat")]), TestContext.Current.CancellationToken);
        listener.Close(); // Close alone: Stop then Close removes the port twice, and the second rebinds it (EADDRINUSE under TIME_WAIT)
        Assert.True(text.Code == 0, text.Err);
        Assert.True(chat.Code == 0, chat.Err);
        var byLogprobs = JsonNode.Parse(File.ReadAllText(Path.Combine(_out, "text", "cmmlu", "fake.jsonl")))!;
        Assert.Equal("A", (string)byLogprobs["extracted"]!);
        Assert.Equal("logprobs", (string)byLogprobs["detail"]!);
        Assert.Equal(2, byLogprobs["choice_logprobs"]!.AsObject().Count);
        var byText = JsonNode.Parse(File.ReadAllText(Path.Combine(_out, "chat", "cmmlu", "fake.jsonl")))!;
        Assert.Equal("C", (string)byText["extracted"]!);
        Assert.Equal("generated", (string)byText["detail"]!);
        // What was asked: one token, with 20 alternatives, in each API's words.
        Assert.Equal(20, (int)bodies[0]["logprobs"]!);
        Assert.Equal(1, (int)bodies[0]["max_tokens"]!);
        Assert.True((bool)bodies[1]["logprobs"]!);
        Assert.Equal(20, (int)bodies[1]["top_logprobs"]!);
        Assert.Equal((string)bodies[0]["prompt"]!, (string)bodies[1]["messages"]![0]!["content"]!);
    }
}
