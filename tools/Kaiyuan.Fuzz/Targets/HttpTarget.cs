using System.Net;
using System.Text;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>
/// Mutated JSON bodies to every endpoint of a real server on loopback serving the real tiny model: no answer may be a
/// 5xx (503, busy, excepted), and the server must go on answering. The first byte of an input picks the route.
/// </summary>
internal sealed class HttpTarget : FuzzTarget
{
    private static readonly (string Route, string Body)[] Requests =
    [
        ("/v1/chat/completions", """{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0.7,"top_p":0.9,"seed":1,"stop":["\n"],"logprobs":true,"top_logprobs":2}"""),
        ("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Weather?"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":8,"tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto"}"""),
        ("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"JSON"}],"max_tokens":12,"n":2,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}}}}"""),
        ("/v1/completions", """{"model":"m","prompt":"Once upon","max_tokens":8,"echo":true,"logit_bias":{"5":-100},"frequency_penalty":0.5}"""),
        ("/v1/embeddings", """{"model":"m","input":["a dream","two"],"encoding_format":"float"}"""),
        ("/v1/responses", """{"model":"m","input":[{"role":"user","content":"Hi"}],"instructions":"Short.","max_output_tokens":16,"store":false}"""),
        ("/v1/messages", """{"model":"m","max_tokens":8,"system":"Brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],"stream":true}"""),
        ("/v1/messages/count_tokens", """{"model":"m","messages":[{"role":"user","content":"Hi"}]}"""),
        ("/api/chat", """{"model":"m","messages":[{"role":"user","content":"Hi"}],"stream":false,"options":{"num_predict":8,"temperature":0,"num_ctx":128},"format":"json"}"""),
        ("/api/generate", """{"model":"m","prompt":"Once","stream":true,"options":{"num_predict":8,"seed":3,"stop":["."]},"keep_alive":"5m"}"""),
        ("/api/embed", """{"model":"m","input":"a dream","truncate":true}"""),
        ("/api/show", """{"model":"m","verbose":true}"""),
        ("/tokenize", """{"content":"In my dream","add_special":true,"with_pieces":true}"""),
        ("/detokenize", """{"tokens":[1,2,3,300]}"""),
        ("/apply-template", """{"messages":[{"role":"user","content":"Hi"}]}"""),
    ];

    private LoopbackServer? _server;
    private HttpClient? _http;
    private int _runs;

    public override string Name => "http";
    // The request's own path (the endpoints, the chat pipeline, its templates), not what the scheduler's thread runs beside
    // it (generation, masks, detokenizing): with those instrumented too, the same request's coverage varied too much.
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.AspNetCore", "Kaiyuan.Templates", "Kaiyuan.Runtime Kaiyuan.Chat"];
    public override TimeSpan TimeBound => TimeSpan.FromSeconds(30);
    // The server's own allocations happen on its threads; this thread only builds the request.
    public override long AllocationBudget(int length) => (16L << 20) + 64L * length;

    public override void Setup(string fixtures)
    {
        _server = LoopbackServer.StartAsync(fixtures, parallel: 2).GetAwaiter().GetResult();
        _http = _server.Http;
    }

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
        [.. Requests.Select((r, i) => (byte[])[(byte)i, .. Encoding.UTF8.GetBytes(r.Body)])];

    public override IReadOnlyList<byte[]> Dictionary => Words("\"model\":", "\"messages\":", "\"role\":", "\"content\":", "\"tools\":",
        "\"stream\":true", "\"max_tokens\":", "\"n\":", "\"logprobs\":", "\"top_logprobs\":20", "\"response_format\":", "\"json_schema\"",
        "\"tool_choice\":\"required\"", "\"options\":", "\"num_predict\":-1", "\"num_ctx\":", "\"keep_alive\":0", "\"format\":", "\"input\":",
        "\"previous_response_id\":\"resp_x\"", "\"stop\":", "\"seed\":", "\"logit_bias\":", "\"grammar\":\"root ::= [a-z]+\"", "null", "true",
        "-1", "1e309", "99999999999", "\"\\u0000\"", "\"\\ud800\"", "[]", "{}", ",", ":", "\"");

    public override void Run(byte[] input)
    {
        if (input.Length == 0) return;
        string route = Requests[input[0] % Requests.Length].Route;
        using var content = new ByteArrayContent(input, 1, input.Length - 1);
        content.Headers.ContentType = new("application/json");
        using var response = _http!.PostAsync(route, content).GetAwaiter().GetResult();
        string body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
        if ((int)response.StatusCode >= 500 && response.StatusCode != HttpStatusCode.ServiceUnavailable)
            throw new FuzzFinding($"{route} answered {(int)response.StatusCode}: {body[..Math.Min(body.Length, 400)]}");
        if (++_runs % 50 == 0 && _http.GetAsync("/health").GetAwaiter().GetResult().StatusCode != HttpStatusCode.OK)
            throw new FuzzFinding("the server stopped answering /health");
    }

    public override void Dispose() => _server?.DisposeAsync().AsTask().GetAwaiter().GetResult();
}
