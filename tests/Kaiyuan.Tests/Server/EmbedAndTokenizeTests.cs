using System.Text;
using System.Text.Json;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Server;

/// <summary>Ollama's /api/embed and /api/embeddings, and llama.cpp's /tokenize, /detokenize and /apply-template, on the real server.</summary>
public sealed class EmbedAndTokenizeTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => e.GetSingle()).ToArray();

    private async Task<JsonElement> PostOkAsync(HttpClient http, string url, string json)
    {
        var response = await http.PostJsonAsync(url, json);
        string body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    public async Task EmbedGivesOneUnitVectorPerInputInOrderEqualToV1Embeddings()
    {
        using var http = fixture.Http();
        string[] inputs = ["a little girl", "a big dog", "the sun was hot"];
        var embed = await PostOkAsync(http, "api/embed", JsonSerializer.Serialize(new { model = fixture.Model, input = inputs }));
        int dims = fixture.Server.State.Runtime.Description.EmbeddingLength;
        var vectors = embed.GetProperty("embeddings").EnumerateArray().Select(Floats).ToList();
        Assert.Equal(inputs.Length, vectors.Count);
        Assert.True(embed.GetProperty("prompt_eval_count").GetInt32() > 0);
        Assert.True(embed.GetProperty("total_duration").GetInt64() > 0);
        Assert.Equal(0, embed.GetProperty("load_duration").GetInt64());
        Assert.StartsWith(fixture.Model, embed.GetProperty("model").GetString(), StringComparison.Ordinal);
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.Equal(dims, vectors[i].Length);
            Assert.Equal(1.0, Math.Sqrt(vectors[i].Sum(x => (double)x * x)), 3);
            // Each input alone through /v1/embeddings: the same vector, so the batch kept its order.
            var v1 = await PostOkAsync(http, "v1/embeddings", JsonSerializer.Serialize(new { model = fixture.Model, input = inputs[i] }));
            var expected = Floats(v1.GetProperty("data")[0].GetProperty("embedding"));
            for (int j = 0; j < dims; j++) Assert.Equal(expected[j], vectors[i][j], 4);
        }
        Assert.NotEqual(vectors[0], vectors[1]);

        var single = await PostOkAsync(http, "api/embed", """{"input":"a big dog"}""");
        Assert.Equal(vectors[1], Floats(single.GetProperty("embeddings")[0]));
    }

    [Fact]
    public async Task EmbedTruncatesLongInputsUnlessToldNotTo()
    {
        using var http = fixture.Http();
        string input = string.Concat(Enumerable.Repeat("once upon a time there was a little girl. ", 100));
        string body = JsonSerializer.Serialize(new { input });
        var truncated = await PostOkAsync(http, "api/embed", body);
        Assert.Single(truncated.GetProperty("embeddings").EnumerateArray());
        Assert.Equal(fixture.Server.State.Runtime.Engine.ContextLength, truncated.GetProperty("prompt_eval_count").GetInt32());

        var refused = await http.PostJsonAsync("api/embed", JsonSerializer.Serialize(new { input, truncate = false }));
        Assert.Equal(400, (int)refused.StatusCode);
        Assert.Equal(JsonValueKind.String, (await refused.JsonAsync()).GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task EmbedRefusesOtherDimensionsAndAnswersEmptyInputWithNoVectors()
    {
        using var http = fixture.Http();
        int dims = fixture.Server.State.Runtime.Description.EmbeddingLength;
        var wrong = await http.PostJsonAsync("api/embed", $$"""{"input":"a dog","dimensions":{{dims + 1}}}""");
        Assert.Equal(400, (int)wrong.StatusCode);
        Assert.Contains("dimensions", (await wrong.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
        var same = await PostOkAsync(http, "api/embed", $$"""{"input":"a dog","dimensions":{{dims}}}""");
        Assert.Equal(dims, same.GetProperty("embeddings")[0].GetArrayLength());

        var empty = await PostOkAsync(http, "api/embed", """{"model":"stories","input":[]}""");
        Assert.Equal(0, empty.GetProperty("embeddings").GetArrayLength());
    }

    [Fact]
    public async Task LegacyEmbeddingsEqualsTheFirstEmbedVector()
    {
        using var http = fixture.Http();
        var legacy = await PostOkAsync(http, "api/embeddings", """{"model":"stories","prompt":"a little girl"}""");
        var embed = await PostOkAsync(http, "api/embed", """{"model":"stories","input":["a little girl","a big dog"]}""");
        var expected = Floats(embed.GetProperty("embeddings")[0]);
        var actual = Floats(legacy.GetProperty("embedding"));
        Assert.Equal(expected.Length, actual.Length);
        for (int j = 0; j < expected.Length; j++) Assert.Equal(expected[j], actual[j], 4);
    }

    [Fact]
    public async Task TokenizeMatchesTheTokenizerAndDetokenizeRoundTrips()
    {
        using var http = fixture.Http();
        var tokenizer = Tokenizer.FromGguf(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        const string Text = "Once upon a time, a little girl named Lily found a big dog.";
        var plain = await PostOkAsync(http, "tokenize", JsonSerializer.Serialize(new { content = Text }));
        var ids = plain.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(tokenizer.Encode(Text, addSpecial: false, parseSpecial: true), ids);

        var special = await PostOkAsync(http, "tokenize", JsonSerializer.Serialize(new { content = Text, add_special = true }));
        Assert.Equal(tokenizer.Encode(Text, addSpecial: true, parseSpecial: true), special.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());

        var pieces = await PostOkAsync(http, "tokenize", JsonSerializer.Serialize(new { content = Text, with_pieces = true }));
        var items = pieces.GetProperty("tokens").EnumerateArray().ToList();
        Assert.Equal(ids, items.Select(t => t.GetProperty("id").GetInt32()).ToArray());
        Assert.Equal(Text, string.Concat(items.Select(t => t.GetProperty("piece").GetString())).Replace('\u2581', ' ').TrimStart());

        var back = await PostOkAsync(http, "detokenize", JsonSerializer.Serialize(new { tokens = ids }));
        Assert.Equal(tokenizer.Decode(ids), back.GetProperty("content").GetString());
        Assert.Equal(Text, back.GetProperty("content").GetString()!.TrimStart());

        var outOfRange = await http.PostJsonAsync("detokenize", JsonSerializer.Serialize(new { tokens = new[] { 1, fixture.Server.State.Runtime.Engine.VocabSize } }));
        Assert.Equal(400, (int)outOfRange.StatusCode);
        Assert.Equal(JsonValueKind.Object, (await outOfRange.JsonAsync()).GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task ApplyTemplateEqualsTheFormatterOutput()
    {
        using var http = fixture.Http();
        var result = await PostOkAsync(http, "apply-template",
            """{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}""");
        string expected = fixture.Server.State.Runtime.Formatter.Format(
            [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi")], [], addGenerationPrompt: true);
        Assert.Equal(expected, result.GetProperty("prompt").GetString());
    }
}

/// <summary>The llama.cpp helper routes with a known formatter, and behind the API key like /v1 and /api.</summary>
public sealed class LlamaCppHelperRouteTests
{
    [Fact]
    public async Task ApplyTemplateRendersChatMlWithTheGenerationPrompt()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "hi"));
        using var http = new HttpClient { BaseAddress = server.Address };
        var response = await http.PostJsonAsync("apply-template", """{"messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", (await response.JsonAsync()).GetProperty("prompt").GetString());

        var bad = await http.PostJsonAsync("apply-template", """{"messages":[]}""");
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Equal(JsonValueKind.Object, (await bad.JsonAsync()).GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task HelperRoutesNeedTheApiKeyWhenOneIsSet()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "hi"), o => o with { ApiKey = "sekret" });
        using var http = new HttpClient { BaseAddress = server.Address };
        foreach (var (path, body) in new[] { ("tokenize", """{"content":"hi"}"""), ("detokenize", """{"tokens":[104]}"""), ("apply-template", """{"messages":[{"role":"user","content":"Hi"}]}""") })
        {
            var refused = await http.PostJsonAsync(path, body);
            Assert.Equal(401, (int)refused.StatusCode);
            Assert.Equal(JsonValueKind.Object, (await refused.JsonAsync()).GetProperty("error").ValueKind);
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            request.Headers.Authorization = new("Bearer", "sekret");
            var allowed = await http.SendAsync(request, TestContext.Current.CancellationToken);
            Assert.Equal(200, (int)allowed.StatusCode);
        }
    }
}
