using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OllamaSharp;
using OllamaSharp.Models;
using OllamaChatRequest = OllamaSharp.Models.Chat.ChatRequest;
using OllamaChatRole = OllamaSharp.Models.Chat.ChatRole;
using OllamaMessage = OllamaSharp.Models.Chat.Message;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// Every call an Ollama app makes through OllamaSharp 5.5.2 (version, list, ps, show, generate, chat, embed, and its
/// Microsoft.Extensions.AI chat client and embedding generator) against a real server on loopback, each answer checked
/// against the OpenAI routes of the same server (pull, copy and delete: <see cref="OllamaModelsTests"/>).
/// </summary>
public sealed class OllamaSharpTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private OllamaApiClient Client() => new(new HttpClient { BaseAddress = fixture.Require().Address, Timeout = TimeSpan.FromSeconds(60) }, fixture.Model);

    /// <summary>The server's greedy chat answer to one user message, from /v1/chat/completions.</summary>
    private async Task<string> OpenAiGreedy(string prompt, int tokens)
    {
        using var http = fixture.Http();
        var response = await http.PostAsJsonAsync("v1/chat/completions", new
        {
            model = fixture.Model,
            messages = new[] { new { role = "user", content = prompt } },
            temperature = 0,
            max_tokens = tokens,
        }, Ct);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        return json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    [Fact]
    public async Task VersionListPsAndShow()
    {
        var ollama = Client();
        Assert.NotNull(await ollama.GetVersionAsync(Ct));
        var model = Assert.Single(await ollama.ListLocalModelsAsync(Ct), m => m.Name.StartsWith(fixture.Model, StringComparison.Ordinal));
        Assert.True(model.Size > 0);
        Assert.Equal("gguf", model.Details.Format);
        var running = Assert.Single(await ollama.ListRunningModelsAsync(Ct));
        Assert.StartsWith(fixture.Model, running.Name, StringComparison.Ordinal);
        var show = await ollama.ShowModelAsync(fixture.Model, Ct);
        Assert.Equal("gguf", show.Details.Format);
        Assert.Equal("llama", show.Info.Architecture);
    }

    [Fact]
    public async Task ChatStreamsTheOpenAiRoutesGreedyAnswer()
    {
        string expected = await OpenAiGreedy("Once upon a time", 20);
        var text = new StringBuilder();
        OllamaSharp.Models.Chat.ChatDoneResponseStream? done = null;
        var request = new OllamaChatRequest
        {
            Model = fixture.Model,
            Messages = [new OllamaMessage(OllamaChatRole.User, "Once upon a time")],
            Options = new RequestOptions { Temperature = 0, NumPredict = 20 },
        };
        await foreach (var chunk in Client().ChatAsync(request, Ct))
        {
            text.Append(chunk?.Message.Content);
            if (chunk is OllamaSharp.Models.Chat.ChatDoneResponseStream d) done = d;
        }
        Assert.Equal(expected, text.ToString());
        Assert.NotNull(done);
        Assert.Equal(20, done.EvalCount);
        Assert.True(done.PromptEvalCount > 0);
    }

    [Fact]
    public async Task GenerateStreamsAndReturnsItsContext()
    {
        var text = new StringBuilder();
        GenerateDoneResponseStream? done = null;
        await foreach (var chunk in Client().GenerateAsync(new GenerateRequest
        {
            Model = fixture.Model,
            Prompt = "Once upon a time",
            Raw = true,
            Options = new RequestOptions { Temperature = 0, NumPredict = 20 },
        }, Ct))
        {
            text.Append(chunk?.Response);
            if (chunk is GenerateDoneResponseStream d) done = d;
        }
        // The model card's greedy continuation, as /v1/completions gives it.
        Assert.StartsWith(", there was a little girl named Lily", text.ToString(), StringComparison.Ordinal);
        Assert.Equal(20, done?.EvalCount);

        // A templated generate hands back its context, and a second one goes on from it (deprecated by Ollama, still sent
        // by clients that chain generates).
#pragma warning disable CS0618
        var first = await Last(Client().GenerateAsync(new GenerateRequest { Model = fixture.Model, Prompt = "Tom", Options = new RequestOptions { Temperature = 0, NumPredict = 5 } }, Ct));
        Assert.NotEmpty(first.Context!);
        var second = await Last(Client().GenerateAsync(new GenerateRequest
        {
            Model = fixture.Model,
            Prompt = "and",
            Context = first.Context,
            Options = new RequestOptions { Temperature = 0, NumPredict = 5 },
        }, Ct));
        Assert.True(second.Context!.Length > first.Context!.Length);
        Assert.Equal(first.Context, second.Context[..first.Context.Length]);
#pragma warning restore CS0618
    }

    private static async Task<GenerateDoneResponseStream> Last(IAsyncEnumerable<GenerateResponseStream?> stream)
    {
        GenerateDoneResponseStream? done = null;
        await foreach (var chunk in stream) if (chunk is GenerateDoneResponseStream d) done = d;
        return done ?? throw new Xunit.Sdk.XunitException("no done line");
    }

    [Fact]
    public async Task EmbedEqualsV1Embeddings()
    {
        string[] inputs = ["Lily likes cats.", "The sun is hot."];
        var embed = await Client().EmbedAsync(new EmbedRequest { Model = fixture.Model, Input = [.. inputs] }, Ct);
        using var http = fixture.Http();
        var response = await http.PostAsJsonAsync("v1/embeddings", new { model = fixture.Model, input = inputs }, Ct);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal(inputs.Length, embed.Embeddings.Count);
        for (int i = 0; i < inputs.Length; i++)
            Assert.Equal(json.RootElement.GetProperty("data")[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()), embed.Embeddings[i]);
    }

    [Fact]
    public async Task MicrosoftExtensionsAiChatClientAndEmbeddingGenerator()
    {
        string expected = await OpenAiGreedy("Once upon a time", 16);
        IChatClient chat = Client();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 16 };
        var response = await chat.GetResponseAsync("Once upon a time", options, Ct);
        Assert.Equal(expected, response.Text);
        var streamed = new StringBuilder();
        await foreach (var update in chat.GetStreamingResponseAsync("Once upon a time", options, Ct)) streamed.Append(update.Text);
        Assert.Equal(expected, streamed.ToString());

        IEmbeddingGenerator<string, Embedding<float>> embeddings = Client();
        var vectors = await embeddings.GenerateAsync(["Lily likes cats."], cancellationToken: Ct);
        var direct = await Client().EmbedAsync(new EmbedRequest { Model = fixture.Model, Input = ["Lily likes cats."] }, Ct);
        Assert.Equal(direct.Embeddings[0], vectors[0].Vector.ToArray());
    }
}
