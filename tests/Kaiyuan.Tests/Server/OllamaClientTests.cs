using System.Text.Json;
using Kaiyuan.AspNetCore;

namespace Kaiyuan.Tests.Server;

/// <summary>What real Ollama clients rely on: /api/show over a GGUF with full metadata, and Ollama-shaped errors.</summary>
public sealed class OllamaClientTests
{
    [Fact]
    public async Task ShowAnswersForARealGgufWithFullMetadata()
    {
        string path = Fixtures.ModelPath("qwen2", "qwen2-q8_0.gguf");
        await using var server = await KaiyuanServer.StartAsync(new ServerOptions
        {
            ModelPath = path,
            Port = 0,
            Alias = "qwen2",
            ContextSize = 128,
            RequestLogging = false,
            Threads = 1,
        }, TestContext.Current.CancellationToken);
        await server.WaitReadyAsync();
        using var http = new HttpClient { BaseAddress = server.Address };
        var response = await http.PostJsonAsync("api/show", """{"model":"qwen2"}""");
        string body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.IsSuccessStatusCode, body);
        var show = JsonDocument.Parse(body).RootElement;
        var info = show.GetProperty("model_info");
        Assert.Equal("qwen2", info.GetProperty("general.architecture").GetString());
        Assert.True(info.GetProperty("general.parameter_count").GetInt64() > 0);
        Assert.True(info.GetProperty("qwen2.context_length").GetInt32() > 0);
        Assert.Equal("gguf", show.GetProperty("details").GetProperty("format").GetString());
    }

    [Fact]
    public async Task OllamaRoutesAnswerErrorsInOllamaShapeAndOpenAiRoutesInOpenAiShape()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "hi"));
        using var http = new HttpClient { BaseAddress = server.Address };

        var unknown = await http.PostJsonAsync("api/chat", """{"model":"llama3","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(404, (int)unknown.StatusCode);
        var error = (await unknown.JsonAsync()).GetProperty("error");
        Assert.Equal(JsonValueKind.String, error.ValueKind);
        Assert.Contains("llama3", error.GetString(), StringComparison.Ordinal);

        var bad = await http.PostJsonAsync("api/generate", "{not json");
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Equal(JsonValueKind.String, (await bad.JsonAsync()).GetProperty("error").ValueKind);

        var missing = await http.GetAsync("api/nothing", TestContext.Current.CancellationToken);
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Equal(JsonValueKind.String, (await missing.JsonAsync()).GetProperty("error").ValueKind);

        var openAi = await http.PostJsonAsync("v1/chat/completions", """{"model":"llama3","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(404, (int)openAi.StatusCode);
        var openAiError = (await openAi.JsonAsync()).GetProperty("error");
        Assert.Equal(JsonValueKind.Object, openAiError.ValueKind);
        Assert.False(string.IsNullOrEmpty(openAiError.GetProperty("message").GetString()));
    }
}

/// <summary>A reply made only of whitespace is what the model generated, not an empty answer.</summary>
public sealed class WhitespaceReplyTests
{
    [Fact]
    public async Task AWhitespaceOnlyReplyComesBackAsGenerated()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => " \n "));
        using var http = new HttpClient { BaseAddress = server.Address };
        var ct = TestContext.Current.CancellationToken;
        const string Messages = "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]";

        var whole = await (await http.PostJsonAsync("v1/chat/completions", "{" + Messages + "}")).JsonAsync();
        Assert.Equal(" \n ", whole.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        var streamed = await (await http.PostJsonAsync("v1/chat/completions", """{"stream":true,""" + Messages + "}")).Content.ReadAsStringAsync(ct);
        string text = string.Concat(streamed.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l[6..]).RootElement.GetProperty("choices"))
            .Where(c => c.GetArrayLength() > 0 && c[0].GetProperty("delta").TryGetProperty("content", out var v) && v.ValueKind == JsonValueKind.String)
            .Select(c => c[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal(" \n ", text);

        var ollama = await (await http.PostJsonAsync("api/chat", """{"stream":false,""" + Messages + "}")).JsonAsync();
        Assert.Equal(" \n ", ollama.GetProperty("message").GetProperty("content").GetString());
    }
}
