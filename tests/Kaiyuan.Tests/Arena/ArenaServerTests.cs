using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using Kaiyuan.Cli.Arena;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Tests.Arena;

/// <summary>A model that streams a fixed answer a word at a time (or fails after its first word).</summary>
internal sealed class ScriptedModel(string name, string answer, bool fails = false) : IEvalModel
{
    public string Name => name;

    public bool CompletesRawText => false;

    public bool Fits(string rawPrompt) => true;

    public Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel) =>
        Task.FromResult(new EvalAnswer(answer, 1, 1, 0, 0, "stop"));

    public async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [EnumeratorCancellation] CancellationToken cancel)
    {
        foreach (string word in answer.Split(' '))
        {
            await Task.Delay(5, cancel);
            yield return word + " ";
            if (fails) throw new HttpRequestException("connection reset");
        }
    }

    public void Dispose() { }
}

/// <summary>The arena's HTTP API: the token, the streamed battle, the vote and its reveal, rate limits, and JSON errors for bad requests.</summary>
public sealed class ArenaServerTests : IDisposable
{
    private const string Token = "s3cret-token";
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-arena-http-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<(ArenaServer Server, HttpClient Http, ArenaStore Store)> Start(IReadOnlyList<IEvalModel> models, int votesPerMinute = 10)
    {
        var store = ArenaStore.Open(Path.Combine(_dir, "arena.db"));
        var server = await ArenaServer.StartAsync(new ArenaOptions { Models = models, Store = store, Token = Token, Port = 0, VotesPerMinute = votesPerMinute, Prompts = ["p1", "p2"] }, Ct);
        var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return (server, http, store);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task<(string Id, Dictionary<string, string> Text, JsonObject Done)> Battle(HttpClient http, string prompt = "hello", string mode = "text")
    {
        using var response = await http.PostAsync("api/battles", Json(new JsonObject { ["prompt"] = prompt, ["mode"] = mode }.ToJsonString()), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType!.MediaType);
        var lines = (await response.Content.ReadAsStringAsync(Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        string id = (string)lines[0]["battle_id"]!;
        var text = new Dictionary<string, string> { ["a"] = "", ["b"] = "" };
        foreach (var l in lines.Where(l => l["text"] is not null)) text[(string)l["side"]!] += (string)l["text"]!;
        Assert.True(lines.Count(l => l["text"] is not null) >= 4, "the answers came in pieces");
        return (id, text, lines[^1]);
    }

    private static async Task<(HttpStatusCode Status, JsonObject Body)> Send(HttpClient http, HttpMethod method, string path, string? body = null,
        bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : Json(body) };
        request.Headers.ExpectContinue = expectContinue;
        using var response = await http.SendAsync(request, Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, JsonNode.Parse(text)!.AsObject());
    }

    [Fact]
    public async Task ABattleStreamsBothAnswersAndTheVoteRevealsTheModels()
    {
        var (server, http, store) = await Start([new ScriptedModel("alpha", "one two three four"), new ScriptedModel("beta", "five six seven eight")]);
        await using var _ = server;
        using var __ = http;
        var (id, text, done) = await Battle(http);
        Assert.True((bool)done["done"]! && (bool)done["votable"]!);
        Assert.Equal(new[] { "five six seven eight ", "one two three four " }, text.Values.Order());
        var battle = store.Find(id)!;
        Assert.Null(battle.Winner);
        Assert.Equal(battle.ModelA == "alpha" ? "one two three four " : "five six seven eight ", text["a"]);

        var (status, reveal) = await Send(http, HttpMethod.Post, $"api/battles/{id}/vote", "{\"winner\":\"b\"}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal((battle.ModelA, battle.ModelB, "model_b"), ((string)reveal["model_a"]!, (string)reveal["model_b"]!, (string)reveal["winner"]!));
        (status, var again) = await Send(http, HttpMethod.Post, $"api/battles/{id}/vote", "{\"winner\":\"a\"}");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("voted on already", (string)again["error"]!["message"]!);

        (status, var board) = await Send(http, HttpMethod.Get, "api/leaderboard");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, (int)board["battles"]!);
        var ratings = board["ratings"]!.AsArray();
        Assert.Equal(battle.ModelB, (string)ratings[0]!["model"]!);
        Assert.True((double)ratings[0]!["rating"]! > (double)ratings[1]!["rating"]!);
        Assert.Equal(2, board["win_rate"]!.AsArray().Count);

        (status, var info) = await Send(http, HttpMethod.Get, "api/info");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(new[] { "p1", "p2" }, info["prompts"]!.AsArray().Select(p => (string)p!));
    }

    [Fact]
    public async Task WithoutTheTokenTheApiRefusesButThePageLoads()
    {
        var (server, http, _) = await Start([new ScriptedModel("alpha", "a"), new ScriptedModel("beta", "b")]);
        await using var _s = server;
        using var _h = http;
        using var anonymous = new HttpClient { BaseAddress = server.Address };
        foreach (var (method, path) in new[] { (HttpMethod.Get, "api/leaderboard"), (HttpMethod.Post, "api/battles"), (HttpMethod.Get, "api/info") })
        {
            var (status, body) = await Send(anonymous, method, path, "{}");
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Contains("token", (string)body["error"]!["message"]!);
        }
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token + "x");
        Assert.Equal(HttpStatusCode.Unauthorized, (await Send(anonymous, HttpMethod.Get, "api/leaderboard")).Status);
        using var page = await anonymous.GetAsync("", Ct);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        string html = await page.Content.ReadAsStringAsync(Ct);
        Assert.Contains("Kaiyuan Arena", html);
        Assert.DoesNotContain(Token, html);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org", "", StringComparison.Ordinal)); // nothing fetched from elsewhere
        Assert.DoesNotContain("https://", html);
        Assert.Contains("default-src 'none'", page.Headers.GetValues("Content-Security-Policy").Single());
    }

    [Theory]
    [InlineData("POST", "api/battles", "not json", HttpStatusCode.BadRequest, "not valid JSON")]
    [InlineData("POST", "api/battles", "[1]", HttpStatusCode.BadRequest, "must be a JSON object")]
    [InlineData("POST", "api/battles", "{}", HttpStatusCode.BadRequest, "'prompt' is required")]
    [InlineData("POST", "api/battles", "{\"prompt\":\"  \"}", HttpStatusCode.BadRequest, "'prompt' is empty")]
    [InlineData("POST", "api/battles", "{\"prompt\":5}", HttpStatusCode.BadRequest, "'prompt' must be a string")]
    [InlineData("POST", "api/battles", "{\"prompt\":\"hi\",\"mode\":\"poetry\"}", HttpStatusCode.BadRequest, "'mode' must be")]
    [InlineData("POST", "api/battles/nope/vote", "{\"winner\":\"a\"}", HttpStatusCode.NotFound, "no battle nope")]
    [InlineData("POST", "api/battles/nope/vote", "{\"winner\":\"c\"}", HttpStatusCode.BadRequest, "'winner' must be")]
    [InlineData("POST", "api/battles/nope/vote", "{\"winner\":null}", HttpStatusCode.BadRequest, "'winner' is required")]
    [InlineData("GET", "api/battles", null, HttpStatusCode.MethodNotAllowed, "not allowed")]
    [InlineData("GET", "api/nothing", null, HttpStatusCode.NotFound, "no such endpoint")]
    [InlineData("DELETE", "api/leaderboard", null, HttpStatusCode.MethodNotAllowed, "not allowed")]
    public async Task BadRequestsGetJsonErrors(string method, string path, string? body, HttpStatusCode expected, string message)
    {
        var (server, http, _) = await Start([new ScriptedModel("alpha", "a"), new ScriptedModel("beta", "b")]);
        await using var _s = server;
        using var _h = http;
        var (status, error) = await Send(http, new HttpMethod(method), path, body);
        Assert.Equal(expected, status);
        Assert.Contains(message, (string)error["error"]!["message"]!);
        Assert.Equal((int)expected, (int)error["error"]!["status"]!);
    }

    [Fact]
    public async Task AnOversizedBodyIsRefusedWithJson()
    {
        var (server, http, _) = await Start([new ScriptedModel("alpha", "a"), new ScriptedModel("beta", "b")]);
        await using var _s = server;
        using var _h = http;
        // As curl does for a large body, the client waits for "100 Continue" before sending it: the refusal comes first.
        // Without it the client may still be writing the 2 MB when the server answers and closes, and sees a broken pipe.
        var (status, error) = await Send(http, HttpMethod.Post, "api/battles", new JsonObject { ["prompt"] = new string('x', 2 << 20) }.ToJsonString(),
            expectContinue: true);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.NotNull(error["error"]);
        (status, error) = await Send(http, HttpMethod.Post, "api/battles", new JsonObject { ["prompt"] = new string('x', 20_000) }.ToJsonString());
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("longer than", (string)error["error"]!["message"]!);
    }

    [Fact]
    public async Task VotesAreRateLimitedPerVoter()
    {
        var (server, http, _) = await Start([new ScriptedModel("alpha", "one two"), new ScriptedModel("beta", "three four")], votesPerMinute: 2);
        await using var _s = server;
        using var _h = http;
        http.DefaultRequestHeaders.Add("X-Arena-Voter", "voter-1");
        var ids = new List<string>();
        for (int i = 0; i < 4; i++) ids.Add((await Battle(http)).Id);
        // A refused vote (unknown battle) costs nothing.
        Assert.Equal(HttpStatusCode.NotFound, (await Send(http, HttpMethod.Post, "api/battles/nope/vote", "{\"winner\":\"a\"}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Send(http, HttpMethod.Post, $"api/battles/{ids[0]}/vote", "{\"winner\":\"a\"}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Send(http, HttpMethod.Post, $"api/battles/{ids[1]}/vote", "{\"winner\":\"tie\"}")).Status);
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/battles/{ids[2]}/vote") { Content = Json("{\"winner\":\"bothbad\"}") };
        using var limited = await http.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(limited.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        Assert.Contains("too many votes", await limited.Content.ReadAsStringAsync(Ct));
        // Another voter is not held back.
        using var other = new HttpRequestMessage(HttpMethod.Post, $"api/battles/{ids[3]}/vote") { Content = Json("{\"winner\":\"bothbad\"}") };
        other.Headers.Add("X-Arena-Voter", "voter-2");
        other.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        using var fine = await new HttpClient { BaseAddress = server.Address }.SendAsync(other, Ct);
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    [Fact]
    public async Task AFailedAnswerMakesTheBattleUnvotable()
    {
        var (server, http, store) = await Start([new ScriptedModel("alpha", "one two three four"), new ScriptedModel("broken", "five six", fails: true)]);
        await using var _s = server;
        using var _h = http;
        using var response = await http.PostAsync("api/battles", Json("{\"prompt\":\"hi\"}"), Ct);
        var lines = (await response.Content.ReadAsStringAsync(Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        string id = (string)lines[0]["battle_id"]!;
        var error = Assert.Single(lines, l => l["error"] is not null);
        Assert.DoesNotContain("broken", (string)error["error"]!); // still anonymous
        Assert.False((bool)lines[^1]["votable"]!);
        var (status, body) = await Send(http, HttpMethod.Post, $"api/battles/{id}/vote", "{\"winner\":\"a\"}");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("not complete", (string)body["error"]!["message"]!);
        Assert.Equal(0, store.CountBattles(votedOnly: true));
    }

    [Fact]
    public async Task AnArenaNeedsTwoDistinctModels()
    {
        var store = ArenaStore.Open(Path.Combine(_dir, "x.db"));
        await Assert.ThrowsAsync<ArgumentException>(() => ArenaServer.StartAsync(new ArenaOptions { Models = [new ScriptedModel("a", "x")], Store = store, Token = "t", Port = 0 }, Ct));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ArenaServer.StartAsync(new ArenaOptions { Models = [new ScriptedModel("a", "x"), new ScriptedModel("a", "y")], Store = store, Token = "t", Port = 0 }, Ct));
        Assert.Contains("two models are named 'a'", e.Message);
    }
}
