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

    [Fact]
    public void InteractiveLoopHandlesCommandsAndAnswers()
    {
        using var model = ModelLoader.Load(Aidreams);
        using var pool = new WorkerPool(1);
        var session = new InferenceSession(model, 0, pool);
        var tokenizer = Tokenizer.FromGguf(Aidreams);
        var chat = new ChatLoop(session, TextCodec.For(tokenizer), new RawPromptFormat()) { Sampling = new SamplerOptions() };
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
