using System.ClientModel;
using System.Text;
using System.Text.Json;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;
using OpenAI;

namespace Kaiyuan.Tests.Server;

/// <summary>A real server over the stories260K model (a real tokenizer and coherent greedy text), shared by a test class.</summary>
public sealed class StoriesServer : IAsyncLifetime
{
    private KaiyuanServer? _server;

    internal KaiyuanServer Server => _server ?? throw new InvalidOperationException("not started");
    public string Model => "stories";
    public bool Available { get; private set; }

    public async ValueTask InitializeAsync()
    {
        string? path = Fixtures.Root is null ? null : Path.Combine(Fixtures.Root, "models", "stories260K", "stories260K-f32.gguf");
        if (path is null || !File.Exists(path)) return;
        _server = await KaiyuanServer.StartAsync(new ServerOptions
        {
            ModelPath = path,
            Port = 0,
            Alias = Model,
            Parallel = 8,
            ContextSize = 256,
            RequestLogging = false,
            Threads = 2,
        });
        await _server.WaitReadyAsync();
        Available = true;
    }

    /// <summary>The server, or a skip when the fixture model is absent.</summary>
    internal KaiyuanServer Require()
    {
        if (!Available) Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        return Server;
    }

    public HttpClient Http() => new() { BaseAddress = Require().Address, Timeout = TimeSpan.FromSeconds(60) };

    public OpenAIClient OpenAi() => new(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(Require().Address, "v1") });

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }
}

/// <summary>One character per token (id = UTF-16 code unit); id 0 ends generation.</summary>
internal sealed class CharCodec : ITextCodec
{
    public int BosId => -1;
    public int EosId => 0;
    public int[] Encode(string text, bool addSpecial, bool parseSpecial) => text.Select(c => (int)c).ToArray();
    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids) if (id > 0) sb.Append((char)id);
        return sb.ToString();
    }
    public bool IsEndOfGeneration(int id) => id == 0;
    public string TokenText(int id) => ((char)id).ToString();
    public byte[] TokenBytes(int id) => Encoding.UTF8.GetBytes(TokenText(id));
    public IStreamingTextDecoder CreateStreamingDecoder() => new Streaming();

    private sealed class Streaming : IStreamingTextDecoder
    {
        public string Append(int id) => id > 0 ? ((char)id).ToString() : "";
        public string Flush() => "";
    }
}

/// <summary>
/// A stand-in engine at the scheduler boundary: answers each prompt with text chosen by <see cref="Script"/>, one
/// character per token, then end-of-generation. Lets HTTP tests force exact model output (tool calls, reasoning).
/// </summary>
internal sealed class ScriptedEngine(Func<string, string> script) : IGenerationEngine
{
    public Func<string, string> Script { get; } = script;
    public List<string> Prompts { get; } = [];
    public int ContextLength => 4096;
    public int VocabSize => 65536;
    public SchedulerLoad Load => new(0, 0, 1);
    /// <summary>Thrown by Submit: the engine refuses the request (queue full, context overflow, shutting down).</summary>
    public Exception? Throw { get; set; }
    /// <summary>When set, Submit returns at once and the answer follows only when this completes: a long prompt prefilling.</summary>
    public Task? Hold { get; set; }
    /// <summary>The generation fails with this instead of answering (after <see cref="Hold"/>): a forward pass that broke.</summary>
    public Exception? Fail { get; set; }

    public GenerationStream Submit(GenerationRequest request, CancellationToken cancel)
    {
        if (Throw is { } e) throw e;
        string prompt = new(request.Prompt.Select(i => (char)i).ToArray());
        lock (Prompts) Prompts.Add(prompt);
        var stream = new GenerationStream(request.Prompt.Count);
        string answer = Script(prompt);
        var fail = Fail;
        void Answer()
        {
            if (fail is not null) { stream.Complete(FinishReason.Error, fail); return; }
            int n = 0;
            foreach (char c in answer)
            {
                if (request.MaxTokens >= 0 && n >= request.MaxTokens) { stream.Complete(FinishReason.MaxTokens); return; }
                stream.Write(new GeneratedToken(c, false, -0.5f, request.TopLogprobs > 0 ? [new TokenLogprob(c, -0.5f)] : null));
                n++;
            }
            stream.Write(new GeneratedToken(0, true, -0.1f, null));
            stream.Complete(FinishReason.EndOfGeneration);
        }
        if (Hold is not { } hold) Answer();
        else
        {
            _ = Task.Run(async () =>
            {
                try
                {
                    await hold.WaitAsync(cancel);
                    Answer();
                }
                catch (OperationCanceledException)
                {
                    stream.Complete(FinishReason.Cancelled);
                }
            }, CancellationToken.None);
        }
        return stream;
    }

    public Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel) =>
        Task.FromResult(inputs.Select(i => new float[] { 0.6f, 0.8f }).ToArray());

    public Task DrainAsync(CancellationToken cancel) => Task.CompletedTask;

    internal static async Task<KaiyuanServer> StartAsync(ScriptedEngine engine, Func<ServerOptions, ServerOptions>? configure = null, IPromptFormatter? formatter = null)
    {
        var options = new ServerOptions { ModelPath = "scripted.gguf", Port = 0, Alias = "scripted", RequestLogging = false };
        if (configure is not null) options = configure(options);
        var server = await KaiyuanServer.StartAsync(options, _ => new ModelRuntime("scripted", new CharCodec(), formatter ?? new ChatMlFormatter(), engine,
            new ModelDescription("test", "F32", 0, 0, 4096, 2, null, new Dictionary<string, object>())));
        await server.WaitReadyAsync();
        return server;
    }
}

internal static class JsonTestExtensions
{
    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }

    public static async Task<HttpResponseMessage> PostJsonAsync(this HttpClient http, string url, string json) =>
        await http.PostAsync(url, new StringContent(json, Encoding.UTF8, "application/json"));
}
