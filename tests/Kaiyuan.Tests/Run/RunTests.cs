using System.Text.Json;
using Kaiyuan.Cli;
using Kaiyuan.Cli.Commands;
using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Tests.Hub;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Run;

/// <summary><c>kaiyuan run</c>: one-shot answers against llama.cpp's greedy goldens, the chat template path, and the interactive loop.</summary>
[Collection("Console")]
public sealed class RunTests
{
    private static string Aidreams => Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");

    [Fact]
    public void OneShotPrintsLlamaCppsGreedyContinuation()
    {
        var goldens = JsonDocument.Parse(File.ReadAllText(Fixtures.ModelPath("aidreams260K", "goldens-f32.json")));
        var tokenizer = Tokenizer.FromGguf(Aidreams);
        int checkedCases = 0;
        foreach (var c in goldens.RootElement.GetProperty("cases").EnumerateArray())
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            if (prompt.StartsWith("text:", StringComparison.Ordinal)) prompt = prompt["text:".Length..];
            int[] ids = c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            if (!tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true).SequenceEqual(ids)) continue;
            int steps = c.GetProperty("ids").GetArrayLength();
            var r = ConsoleRunner.Run("run", Aidreams, "-p", prompt, "--temp", "0", "-n", steps.ToString(), "--threads", "1");
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal(c.GetProperty("text").GetString() + Environment.NewLine, r.Out);
            Assert.Contains("tokens/s", r.Err);
            checkedCases++;
        }
        Assert.True(checkedCases >= 1, "no golden prompt tokenizes to its prompt ids");
    }

    [Fact]
    public void OneShotPrintsWhatGenerateDoes()
    {
        var run = ConsoleRunner.Run("run", Aidreams, "-p", "In my dream", "--temp", "0", "--threads", "1");
        var generate = ConsoleRunner.Run("generate", "-m", Aidreams, "-p", "In my dream", "--temp", "0", "--threads", "1");
        Assert.True(run.Code == 0, run.Err);
        Assert.True(generate.Code == 0, generate.Err);
        Assert.StartsWith(", as I sense the nodes", run.Out);
        Assert.Equal(generate.Out, run.Out);
    }

    /// <summary>A copy of aidreams260K with a chat template, in the temp folder.</summary>
    private static string WithTemplate(string template)
    {
        var path = Path.Combine(Path.GetTempPath(), $"kaiyuan-run-chat-{Guid.NewGuid():N}.gguf");
        using var source = GgufFile.Open(Aidreams);
        var writer = new GgufWriter { Alignment = source.Alignment };
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        writer.Metadata.Set("tokenizer.chat_template", GgufValue.Of(template));
        foreach (var t in source.Tensors) writer.AddTensor(t.Name, t.Type, t.Dimensions, s => s.Write(t.Bytes));
        writer.Write(path);
        return path;
    }

    [Fact]
    public void ASecondTurnSeesTheFirstAndMatchesAFreshEvaluation()
    {
        const string template = "{% for m in messages %}<s>{{ m.role }}</s>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<s>assistant</s>{% endif %}";
        var chatModel = WithTemplate(template);
        try
        {
            using var model = ModelLoader.Load(chatModel);
            using var pool = new WorkerPool(1);
            var tokenizer = Tokenizer.FromGguf(model.File.Metadata);
            var format = PromptFormats.For(model.File.Metadata, tokenizer);
            Assert.True(format.IsChat);
            var greedy = new SamplerOptions { Temperature = 0 };
            var chat = new ChatLoop(new InferenceSession(model, 0, pool), TokenCodec.For(tokenizer), format) { Sampling = greedy, MaxTokens = 12 };
            var stats = new StringWriter();
            string first = chat.Answer("In my dream", TextWriter.Null, stats);
            string second = chat.Answer("The data flows", TextWriter.Null, stats);

            var history = new List<ChatMessage> { new("user", "In my dream"), new("assistant", first), new("user", "The data flows") };
            var fresh = new ChatLoop(new InferenceSession(model, 0, pool), TokenCodec.For(tokenizer), new RawPromptFormat()) { Sampling = greedy, MaxTokens = 12 };
            Assert.Equal(fresh.Answer(format.Render(history), TextWriter.Null, null), second);
        }
        finally
        {
            File.Delete(chatModel);
        }
    }

    /// <summary>A chat format for the cache-reuse test: role markers around the messages.</summary>
    private sealed class MarkerFormat : IPromptFormat
    {
        public bool IsChat => true;
        public string Render(IReadOnlyList<ChatMessage> messages) =>
            string.Concat(messages.Select(m => $"[{m.Role}]{m.Content}")) + "[assistant]";
    }

    /// <summary>
    /// Two turns of a chat over a one-token-per-character codec (ids below the vocabulary size), and the second turn's
    /// answer from a fresh session given the whole conversation as a raw prompt.
    /// </summary>
    private static void TwoTurns(Func<Func<int, string>> createDecoder, Action<ChatLoop, string, string, string, string> check, string? modelPath = null)
    {
        var codec = new TokenCodec
        {
            Encode = text => text.Select(c => (int)c % 512).ToArray(),
            Decode = ids => new string(ids.Select(i => (char)i).ToArray()),
            CreateDecoder = createDecoder,
        };
        using var model = ModelLoader.Load(modelPath ?? Aidreams);
        using var pool = new WorkerPool(1);
        var greedy = new SamplerOptions { Temperature = 0 };
        var format = new MarkerFormat();
        var chat = new ChatLoop(new InferenceSession(model, 0, pool), codec, format) { Sampling = greedy, MaxTokens = 10, System = "hi" };
        var stats = new StringWriter();
        string first = chat.Answer("In my dream", TextWriter.Null, stats);
        string second = chat.Answer("The data flows", TextWriter.Null, stats);
        var history = new List<ChatMessage> { new("system", "hi"), new("user", "In my dream"), new("assistant", first), new("user", "The data flows") };
        var fresh = new ChatLoop(new InferenceSession(model, 0, pool), codec, new RawPromptFormat()) { Sampling = greedy, MaxTokens = 10 };
        check(chat, first, second, fresh.Answer(format.Render(history), TextWriter.Null, null), stats.ToString());
    }

    [Fact]
    public void ReusingTheCacheAcrossTurnsGivesWhatAFreshEvaluationGives() =>
        // A reply re-encodes to the tokens generated, so the second turn's prompt extends what the cache holds.
        TwoTurns(() => id => ((char)id).ToString(), (chat, first, second, freshSecond, stats) =>
        {
            Assert.Contains("reused", stats);
            Assert.Equal(freshSecond, second);
            chat.Clear();
            Assert.Equal(first, chat.Answer("In my dream", TextWriter.Null, null));
        });

    /// <summary>A decoder whose reply's fourth character decodes to a neighbouring id.</summary>
    private static Func<int, string> DepartingAtTheFourthCharacter()
    {
        int n = 0;
        return id => ((char)(n++ == 3 ? id ^ 1 : id)).ToString();
    }

    [Fact]
    public void ATurnThatDiffersFromTheCacheMidwayKeepsTheSharedPrefix() =>
        // The reply's fourth character decodes to a neighbouring id, so the next turn's prompt re-encodes the reply to
        // tokens that differ from the ids generated from that point on: the cache is no longer a prefix of the prompt.
        TwoTurns(DepartingAtTheFourthCharacter, (_, _, second, freshSecond, stats) =>
        {
            int firstPrompt = new MarkerFormat().Render([new("system", "hi"), new("user", "In my dream")]).Length;
            Assert.Contains($"{firstPrompt + 3} reused", stats.Split('\n')[1]);
            Assert.Equal(freshSecond, second);
        });

    [Fact]
    public void AHybridModelsTurnThatDiffersMidwayGoesBackToTheLastPromptsEnd() =>
        // Qwen3.5's recurrent state cannot be cut back to where the re-encoded reply departs from the ids generated; the
        // session kept it at the end of the first prompt, so the second turn resumes there.
        TwoTurns(DepartingAtTheFourthCharacter, (_, _, second, freshSecond, stats) =>
        {
            int firstPrompt = new MarkerFormat().Render([new("system", "hi"), new("user", "In my dream")]).Length;
            Assert.Contains($"{firstPrompt} reused", stats.Split('\n')[1]);
            Assert.Equal(freshSecond, second);
        }, Fixtures.ModelPath("qwen35", "qwen35-f32.gguf"));

    [Fact]
    public void ASecondRunReadsItsLongPromptFromThePromptCache()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kaiyuan-run-prompt-cache-{Guid.NewGuid():N}");
        try
        {
            string prompt = string.Concat(Enumerable.Repeat("In my dream, the data flows through the nodes. ", 4));
            string[] args = ["run", Aidreams, "-p", prompt, "--temp", "0", "-n", "12", "--threads", "1", "--prompt-cache", dir];
            var first = ConsoleRunner.Run(args);
            Assert.True(first.Code == 0, first.Err);
            Assert.DoesNotContain("from the prompt cache", first.Err);
            Assert.Single(Directory.GetFiles(dir, "*.kvc"));

            var second = ConsoleRunner.Run(args);
            Assert.True(second.Code == 0, second.Err);
            Assert.Matches(@"prompt: \d+ tokens, \d+ from the prompt cache", second.Err);
            Assert.Equal(first.Out, second.Out);
            var plain = ConsoleRunner.Run(args[..^2]);
            Assert.Equal(plain.Out, second.Out);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AChatTemplateShapesThePrompt()
    {
        const string template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
        var chatModel = WithTemplate(template);
        try
        {
            var chat = ConsoleRunner.Run("run", chatModel, "-p", "In my dream", "--temp", "0", "-n", "24", "--threads", "1", "--system", "be brief");
            Assert.True(chat.Code == 0, chat.Err);
            var raw = ConsoleRunner.Run("run", Aidreams, "-p", "system: be brief\nuser: In my dream\nassistant:", "--temp", "0", "-n", "24", "--threads", "1");
            Assert.Equal(raw.Out, chat.Out);
            var plain = ConsoleRunner.Run("run", Aidreams, "-p", "In my dream", "--temp", "0", "-n", "24", "--threads", "1");
            Assert.NotEqual(plain.Out, chat.Out);
        }
        finally
        {
            File.Delete(chatModel);
        }
    }

    [Fact]
    public void RunPullsAReferenceThatIsNotInTheStore()
    {
        using var hub = new FakeHub();
        hub.Add("kaiyuan-test/dreams-GGUF", new FakeHub.FakeFile("aidreams260K-F32.gguf", File.ReadAllBytes(Aidreams)));
        using var temp = new TempStore();
        var previous = Environment.GetEnvironmentVariable("HF_ENDPOINT");
        Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
        try
        {
            var r = ConsoleRunner.Run("run", "hf.co/kaiyuan-test/dreams-GGUF:f32", "--store", temp.Store.Root, "-p", "In my dream", "--temp", "0", "-n", "16", "--threads", "1");
            Assert.True(r.Code == 0, r.Err);
            Assert.Contains("pulling it", r.Err);
            Assert.StartsWith(", as I sense", r.Out);
            Assert.Single(temp.Store.List());
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", previous);
        }
    }

    [Fact]
    public void InteractiveLoopHandlesCommandsAndAnswers()
    {
        using var model = ModelLoader.Load(Aidreams);
        using var pool = new WorkerPool(1);
        var session = new InferenceSession(model, 0, pool);
        var tokenizer = Tokenizer.FromGguf(Aidreams);
        var chat = new ChatLoop(session, TokenCodec.For(tokenizer), new RawPromptFormat()) { Sampling = new SamplerOptions() };
        var input = new StringReader("/set temperature 0\n/set num_predict 8\n/set top_k x\nIn my \\\ndream\n/show\n/clear\nIn my dream\n/bye\nnever read\n");
        var output = new StringWriter();
        var messages = new StringWriter();

        Assert.Equal(0, RunCommand.Interactive(chat, new RawPromptFormat(), "aidreams", input, output, messages));

        Assert.Equal(0f, chat.Sampling.Temperature);
        Assert.Equal(8, chat.MaxTokens);
        string log = messages.ToString();
        Assert.Contains("completion mode", log);
        Assert.Contains("set temperature to 0", log);
        Assert.Contains("'x' is not a valid top_k", log);
        Assert.Contains("temperature 0, top_k 40", log);
        Assert.Contains("conversation cleared", log);
        Assert.Equal(2, log.Split('\n').Count(l => l.Contains("tokens/s", StringComparison.Ordinal)));
        // "In my \" + "dream" is the two-line message "In my \ndream"; the last answer is the golden ", as I sense the nodes, ...".
        Assert.True(output.ToString().Contains(", as I sense the no", StringComparison.Ordinal), output.ToString() + log);
        Assert.DoesNotContain("never read", output.ToString());
    }
}
