using Kaiyuan.AspNetCore;

namespace Kaiyuan.Tests.Server;

/// <summary>A real model with <c>--chat-template-file</c>: the Jinja path end to end, and a template that does not compile.</summary>
public sealed class TemplateFileTests
{
    [Fact]
    public async Task ChatTemplateFileIsRendered()
    {
        string model = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        string template = Fixtures.Require("chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
        await using var server = await KaiyuanServer.StartAsync(new ServerOptions
        {
            ModelPath = model,
            Port = 0,
            Parallel = 1,
            ContextSize = 256,
            Threads = 1,
            RequestLogging = false,
            ChatTemplateFile = template,
        }, TestContext.Current.CancellationToken);
        await server.WaitReadyAsync();
        Assert.StartsWith("jinja", server.State.Runtime.Formatter.Name);
        using var http = new HttpClient { BaseAddress = server.Address };
        var r = await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0}""");
        var json = await r.JsonAsync();
        Assert.Equal(3, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        // Qwen2.5's template adds its default system prompt: far more prompt tokens than the bare ChatML turn.
        Assert.True(json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > 60);
    }

    [Fact]
    public async Task BrokenTemplateFileFailsTheLoad()
    {
        string model = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        string file = Path.Combine(Path.GetTempPath(), $"kaiyuan-broken-{Guid.NewGuid():N}.jinja");
        await File.WriteAllTextAsync(file, "{% for m in messages %}{{ m.content ", TestContext.Current.CancellationToken);
        try
        {
            await using var server = await KaiyuanServer.StartAsync(new ServerOptions
            {
                ModelPath = model,
                Port = 0,
                Parallel = 1,
                ContextSize = 64,
                Threads = 1,
                RequestLogging = false,
                ChatTemplateFile = file,
            }, TestContext.Current.CancellationToken);
            await Assert.ThrowsAnyAsync<Exception>(server.WaitReadyAsync);
            using var http = new HttpClient { BaseAddress = server.Address };
            var health = await http.GetAsync("health", TestContext.Current.CancellationToken);
            Assert.Equal(503, (int)health.StatusCode);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
