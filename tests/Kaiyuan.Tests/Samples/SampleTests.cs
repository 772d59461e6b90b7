using System.Text.Json;
using Kaiyuan.Extensions.AI;
using Kaiyuan.Samples.ConsoleChat;
using Kaiyuan.Samples.Rag;
using Kaiyuan.Samples.StructuredExtraction;
using Kaiyuan.Samples.ToolAgent;
using Kaiyuan.Tests.Extensions;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Tests.Samples;

/// <summary>The qwen3 fixture (random weights) with Qwen2.5's real chat template, for the tool and schema samples.</summary>
internal static class SampleModels
{
    public static KaiyuanModel LoadQwen3() => KaiyuanModel.Load(new KaiyuanModelOptions
    {
        Model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf"),
        ChatTemplateFile = Fixtures.Require("chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"),
        Parallel = 2,
        ContextLength = 1024,
        Threads = 2,
    });

    // A random-weight model under a grammar still wanders (JSON allows whitespace, strings any length), so the tests
    // sample a few seeds over the whole distribution (TopP = 1) and check every answer that ends, as InProcessToolTests does.
    public static IEnumerable<int> Seeds => Enumerable.Range(1, 6);

    public static ChatOptions Sampled(int seed) => new() { Temperature = 1, TopP = 1, Seed = seed, MaxOutputTokens = 300 };

    /// <summary>Sampled options that force one call to some tool, with strict argument schemas.</summary>
    public static ChatOptions ForcedCall(int seed)
    {
        var options = Sampled(seed);
        options.ToolMode = ChatToolMode.RequireAny;
        options.AllowMultipleToolCalls = false;
        options.AdditionalProperties = new() { ["strictJsonSchema"] = true };
        return options;
    }
}

/// <summary>The console chat and RAG samples on stories260K: their output is the model's greedy text.</summary>
public sealed class StoriesSampleTests(InProcessStories local) : IClassFixture<InProcessStories>
{
    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 24 };

    [Fact]
    public async Task ConsoleChatStreamsEachGreedyAnswerAndKeepsTheHistory()
    {
        var ct = TestContext.Current.CancellationToken;
        using IChatClient client = local.Require().AsChatClient();
        var output = new StringWriter { NewLine = "\n" };
        // Two turns, then an empty line ends the chat: the last line is never read as a turn.
        var history = await ChatLoop.RunAsync(client, new StringReader("Once upon a time\nTom had a dog\n\nnot a turn\n"), output, Greedy, cancellationToken: ct);

        // The same conversation asked turn by turn without the sample: the second turn sees the first answer.
        var first = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")], Greedy, ct);
        var second = await client.GetResponseAsync(
            [new(ChatRole.User, "Once upon a time"), new(ChatRole.Assistant, first.Text), new(ChatRole.User, "Tom had a dog")], Greedy, ct);
        Assert.False(string.IsNullOrWhiteSpace(first.Text));
        Assert.NotEqual(first.Text, second.Text);
        Assert.Equal($"> {first.Text}\n> {second.Text}\n> ", output.ToString());
        Assert.Equal([ChatRole.User, ChatRole.Assistant, ChatRole.User, ChatRole.Assistant], history.Select(m => m.Role));
        Assert.Equal(second.Text, history[^1].Text);
    }

    [Fact]
    public async Task ConsoleChatEndsAtTheEndOfInputAndGoesOnAfterAConversationOutgrowsTheContext()
    {
        var ct = TestContext.Current.CancellationToken;
        using IChatClient client = local.Require().AsChatClient();
        var output = new StringWriter { NewLine = "\n" };
        // The first turn alone is longer than the 256-token context: the chat says so, forgets it and answers the next.
        string tooLong = string.Join(' ', Enumerable.Repeat("The big dog ran to the park.", 60));
        var history = await ChatLoop.RunAsync(client, new StringReader($"{tooLong}\nOnce upon a time"), output, Greedy, cancellationToken: ct);
        var answer = await client.GetResponseAsync("Once upon a time", Greedy, ct);
        Assert.StartsWith("> [", output.ToString());
        Assert.Contains("starting a new conversation]\n", output.ToString());
        Assert.EndsWith($"> {answer.Text}\n> ", output.ToString());
        Assert.Equal(2, history.Count);
    }

    [Fact]
    public void RagSplitsAtParagraphsAndWordsWithinTheLimit()
    {
        string text = "one two three four five six\n\nseven eight\r\n\r\n  nine   ten eleven twelve thirteen fourteen fifteen  ";
        var chunks = RagAnswerer.Split(text, 14);
        Assert.Equal(["one two three", "four five six", "seven eight", "nine ten", "eleven twelve", "thirteen", "fourteen", "fifteen"], chunks);
        Assert.All(chunks, c => Assert.True(c.Length <= 14));
        Assert.Equal(text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries), chunks.SelectMany(c => c.Split(' ')));
    }

    [Fact]
    public async Task RagRanksTheFileAQuestionComesFromFirstAndAnswersCitingTheSources()
    {
        var ct = TestContext.Current.CancellationToken;
        // The model's whole context (512 tokens), for a prompt with two sources under the sample's instructions.
        using var model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"), Threads = 2 });
        string folder = Directory.CreateTempSubdirectory("kaiyuan-rag-").FullName;
        try
        {
            Dictionary<string, string> files = new()
            {
                ["cat.txt"] = "Lily had a little cat that liked to sleep in the sun.",
                ["boat.txt"] = "Tom built a red boat and sailed it on the big lake.",
                ["cake.txt"] = "Mom baked a sweet cake with apples for the party.",
            };
            foreach (var (name, text) in files) await File.WriteAllTextAsync(Path.Combine(folder, name), text, ct);
            // And a file that is not text, which the index skips.
            await File.WriteAllTextAsync(Path.Combine(folder, "notes.md"), "Lily had a little cat", ct);
            var embeddings = model.AsEmbeddingGenerator();
            var chat = model.AsChatClient();

            var index = await RagAnswerer.IndexAsync(embeddings, folder, cancellationToken: ct);
            Assert.Equal(files.Keys.Order(StringComparer.Ordinal), index.Select(c => c.File));
            // A file's own words as the question: its chunk is the same text, the nearest by far (cosine 1).
            foreach (var (name, text) in files)
            {
                var hits = await RagAnswerer.SearchAsync(embeddings, index, text, topK: 2, ct);
                Assert.Equal(2, hits.Count);
                Assert.Equal(name, hits[0].Chunk.File);
                Assert.Equal(1f, hits[0].Score, 0.001f);
                Assert.True(hits[0].Score > hits[1].Score + 0.01f, $"{name}: {hits[0].Score} vs {hits[1].Chunk.File} {hits[1].Score}");
            }

            var output = new StringWriter { NewLine = "\n" };
            var sources = await RagAnswerer.AnswerAsync(chat, embeddings, folder, files["boat.txt"], output, topK: 2, options: Greedy, cancellationToken: ct);
            Assert.Equal("boat.txt", sources[0].Chunk.File);
            string[] lines = output.ToString().Split('\n');
            Assert.False(string.IsNullOrWhiteSpace(lines[0]), "the chat model gave no answer");
            int at = Array.IndexOf(lines, "Sources:");
            Assert.True(at > 0, output.ToString());
            Assert.StartsWith("  boat.txt (similarity 1.000)", lines[at + 1]);
            Assert.StartsWith($"  {sources[1].Chunk.File} ", lines[at + 2]);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

/// <summary>The extraction and tool samples on the random-weight qwen3 fixture: schemas hold and tools run.</summary>
public sealed class Qwen3SampleTests
{
    [Fact]
    public void TheContactSchemaCarriesTheRecordsLimits()
    {
        var schema = AIJsonUtilities.CreateJsonSchema(typeof(Contact)).GetRawText();
        Assert.Contains("\"maxLength\":60", schema);
        Assert.Contains("The e-mail address", schema);
    }

    [Fact]
    public async Task StructuredExtractionReturnsAContactUnderTheSchema()
    {
        var ct = TestContext.Current.CancellationToken;
        using var model = SampleModels.LoadQwen3();
        using IChatClient client = model.AsChatClient();
        int parsed = 0;
        foreach (int seed in SampleModels.Seeds)
        {
            var output = new StringWriter { NewLine = "\n" };
            var contact = await ContactExtractor.ExtractAsync(client, "Ada Lovelace, ada@engines.example, Analytical Engines Ltd.", output, SampleModels.Sampled(seed), ct);
            if (contact is null)
            {
                // Only an answer cut at the token limit may fail: one that finished always parses.
                Assert.StartsWith("No contact: the answer ended with length", output.ToString());
                continue;
            }
            Assert.NotNull(contact.Name);
            Assert.True(contact.Name.Length <= 60 && contact.Email is not { Length: > 80 } && contact.Phone is not { Length: > 30 } && contact.Company is not { Length: > 60 }, contact.ToString());
            Assert.StartsWith($"Name:    {contact.Name}\n", output.ToString());
            parsed++;
        }
        Assert.True(parsed > 0, "no seed finished its answer within the token limit");
    }

    [Fact]
    public async Task ToolAgentInvokesATool()
    {
        var ct = TestContext.Current.CancellationToken;
        using var model = SampleModels.LoadQwen3();
        using IChatClient client = model.AsChatClient();
        foreach (int seed in SampleModels.Seeds)
        {
            var output = new StringWriter { NewLine = "\n" };
            var response = await WeatherAgent.AskAsync(client, "What is the weather in Paris?", output, SampleModels.ForcedCall(seed), ct);
            var results = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().ToList();
            if (results.Count == 0) continue; // the forced call ran out of tokens before it closed
            // The tool ran (it logged itself) and its result went back to the model, which answered last.
            Assert.Matches(@"^\[tool\] get_(weather\(city|time\(timeZone): ", output.ToString());
            Assert.Null(results[0].Exception);
            Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
            return;
        }
        Assert.Fail("no seed completed a forced call for the agent to run");
    }

    [Fact]
    public async Task AgentFrameworkAgentInvokesAToolInASession()
    {
        var ct = TestContext.Current.CancellationToken;
        using var model = SampleModels.LoadQwen3();
        using IChatClient client = model.AsChatClient();
        foreach (int seed in SampleModels.Seeds)
        {
            var output = new StringWriter { NewLine = "\n" };
            var responses = await AgentFrameworkAgent.AskAsync(client, ["What is the weather in Paris?"], output, SampleModels.ForcedCall(seed), ct);
            var response = Assert.Single(responses);
            var results = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().ToList();
            if (results.Count == 0) continue;
            Assert.Matches(@"^\[tool\] get_(weather\(city|time\(timeZone): ", output.ToString());
            Assert.Null(results[0].Exception);
            return;
        }
        Assert.Fail("no seed completed a forced call for the agent to run");
    }
}

/// <summary>The completion sample, on the runtime's public API alone, against llama.cpp's greedy ids for aidreams260K.</summary>
public sealed class CompletionSampleTests
{
    [Fact]
    public void GreedyCompletionThroughThePublicApiMatchesLlamaCpp()
    {
        using var model = Kaiyuan.Models.ModelLoader.Load(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        var tokenizer = Kaiyuan.Tokenizers.Tokenizer.FromGguf(model.File.Metadata);
        foreach (var c in Kaiyuan.Tests.Models.Goldens.Load("aidreams260K", "f32"))
        {
            var ids = Kaiyuan.Samples.Completion.TextCompletion.Continue(model, tokenizer, c.PromptIds, c.Ids.Length,
                Kaiyuan.Sampling.SamplerOptions.Greedy, stopAtEndOfGeneration: false).ToArray();
            Assert.Equal(c.Ids.Length, ids.Length);
            // Equal up to the first near-tie in llama.cpp's own logits, where float rounding may pick either token.
            int sure = 0;
            while (sure < c.Ids.Length && c.Margins[sure] >= 1e-3f) sure++;
            Assert.True(sure >= 16, $"only {sure} steps have a clear margin");
            Assert.Equal(c.Ids[..sure], ids[..sure]);
        }
    }

    [Fact]
    public void CompletionWritesTheDecodedTextOfItsTokens()
    {
        using var model = Kaiyuan.Models.ModelLoader.Load(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        var tokenizer = Kaiyuan.Tokenizers.Tokenizer.FromGguf(model.File.Metadata);
        var output = new StringWriter();
        int count = Kaiyuan.Samples.Completion.TextCompletion.Complete(model, tokenizer, "Once upon a time", 24, Kaiyuan.Sampling.SamplerOptions.Greedy, output);
        var prompt = tokenizer.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var ids = Kaiyuan.Samples.Completion.TextCompletion.Continue(model, tokenizer, prompt, 24, Kaiyuan.Sampling.SamplerOptions.Greedy).ToArray();
        Assert.Equal(ids.Length, count);
        Assert.InRange(count, 1, 24);
        Assert.Equal(tokenizer.Decode(ids, renderSpecial: false), output.ToString());
    }
}
