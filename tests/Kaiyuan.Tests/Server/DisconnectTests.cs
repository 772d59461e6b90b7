using System.Net.Http.Headers;
using System.Text;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;

namespace Kaiyuan.Tests.Server;

/// <summary>A client that goes away mid-stream: the request is counted as cancelled (499), not as a success or a crash.</summary>
public sealed class DisconnectTests
{
    /// <summary>Writes one 'a' every few milliseconds until cancelled, so a stream is still running when the client leaves.</summary>
    private sealed class EndlessEngine : IGenerationEngine
    {
        public int ContextLength => 1 << 20;
        public int VocabSize => 65536;
        public SchedulerLoad Load => new(0, 0, 1);

        public GenerationStream Submit(GenerationRequest request, CancellationToken cancel)
        {
            var stream = new GenerationStream(request.Prompt.Count);
            _ = Task.Run(async () =>
            {
                try
                {
                    for (int i = 0; i < 100_000; i++)
                    {
                        stream.Write(new GeneratedToken('a', false, -0.5f, null));
                        await Task.Delay(5, cancel);
                    }
                    stream.Complete(FinishReason.MaxTokens);
                }
                catch (OperationCanceledException)
                {
                    stream.Complete(FinishReason.Cancelled);
                }
            }, CancellationToken.None);
            return stream;
        }

        public Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel) => throw new NotSupportedException();
        public Task DrainAsync(CancellationToken cancel) => Task.CompletedTask;
    }

    [Theory]
    [InlineData("v1/chat/completions", """{"stream":true,"messages":[{"role":"user","content":"Hi"}]}""")]
    [InlineData("api/chat", """{"messages":[{"role":"user","content":"Hi"}]}""")]
    public async Task AClientLeavingMidStreamIsCountedAsCancelled(string path, string body)
    {
        var ct = TestContext.Current.CancellationToken;
        var options = new ServerOptions { ModelPath = "endless.gguf", Port = 0, Alias = "endless", RequestLogging = false };
        await using var server = await KaiyuanServer.StartAsync(options, _ => new ModelRuntime("endless", new CharCodec(), new ChatMlFormatter(), new EndlessEngine(),
            new ModelDescription("test", "F32", 0, 0, 1 << 20, 2, null, new Dictionary<string, object>())), ct);
        await server.WaitReadyAsync();
        using (var client = new HttpClient { BaseAddress = server.Address })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            Assert.True(response.IsSuccessStatusCode);
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            Assert.True(await stream.ReadAsync(new byte[64], ct) > 0);
        }

        using var http = new HttpClient { BaseAddress = server.Address };
        string metrics = "";
        for (int i = 0; i < 100 && !metrics.Contains("status=\"499\"", StringComparison.Ordinal); i++)
        {
            await Task.Delay(50, ct);
            metrics = await http.GetStringAsync("metrics", ct);
        }
        Assert.Contains("status=\"499\"", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain($"route=\"/{path}\",status=\"200\"", metrics, StringComparison.Ordinal);
    }
}
