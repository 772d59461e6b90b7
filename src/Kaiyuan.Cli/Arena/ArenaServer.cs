using System.Collections.Concurrent;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Kaiyuan.Cli.Eval;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Kaiyuan.Cli.Arena;

/// <summary>How an arena is served.</summary>
internal sealed record ArenaOptions
{
    /// <summary>The contestants (at least two, distinct names).</summary>
    public required IReadOnlyList<IEvalModel> Models { get; init; }
    public required ArenaStore Store { get; init; }
    /// <summary>The token every API call must carry (the page takes it once from its URL's ?token=).</summary>
    public required string Token { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    /// <summary>Prompts the page offers to pick from.</summary>
    public IReadOnlyList<string> Prompts { get; init; } = [];
    public int MaxTokens { get; init; } = 512;
    /// <summary>Votes one voter may cast in a minute.</summary>
    public int VotesPerMinute { get; init; } = 10;
    /// <summary>Battles answering at once at most (more get 429).</summary>
    public int MaxConcurrentBattles { get; init; } = 8;
    public int MaxPromptChars { get; init; } = 16_000;
    public int BootstrapRounds { get; init; } = 200;
    /// <summary>Picks the pair of a battle (tests fix it); null: at random.</summary>
    public Random? Random { get; init; }
}

/// <summary>
/// <c>kaiyuan arena</c>'s web server: the page (one self-contained HTML file, no third-party code), and a JSON API under
/// /api that needs the token: POST /api/battles streams two anonymous models' answers as NDJSON; POST
/// /api/battles/{id}/vote records the vote (rate-limited per voter) and reveals the names; GET /api/leaderboard.
/// Every refusal is a JSON error with a 4xx status.
/// </summary>
internal sealed class ArenaServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ArenaOptions _options;
    private readonly VoteLimiter _limiter;
    private readonly SemaphoreSlim _battles;
    private readonly Lock _pick = new();
    private (long Count, JsonObject Board)? _leaderboard;

    public Uri Address { get; private set; } = null!;

    private ArenaServer(WebApplication app, ArenaOptions options)
    {
        _app = app;
        _options = options;
        _limiter = new VoteLimiter(options.VotesPerMinute, TimeSpan.FromMinutes(1));
        _battles = new SemaphoreSlim(options.MaxConcurrentBattles);
    }

    public static async Task<ArenaServer> StartAsync(ArenaOptions options, CancellationToken cancel = default)
    {
        if (options.Models.Count < 2) throw new ArgumentException("an arena needs at least two models");
        var duplicate = options.Models.GroupBy(m => m.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two models are named '{duplicate.Key}': the leaderboard could not tell them apart");
        if (string.IsNullOrEmpty(options.Token)) throw new ArgumentException("an arena needs a token");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "kaiyuan-arena" });
        string host = Kaiyuan.AspNetCore.KaiyuanServer.ListenHost(options.Host);
        builder.WebHost.UseUrls($"http://{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 1 << 20;
        });
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new ArenaServer(app, options);
        server.Map(app);
        await app.StartAsync(cancel).ConfigureAwait(false);
        server.Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/");
        return server;
    }

    /// <summary>Completes when the application is asked to stop (Ctrl-C, SIGTERM).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    private void Map(WebApplication app)
    {
        // A refusal by routing itself (a wrong method: 405) gets a JSON body like every other.
        app.UseStatusCodePages(async context =>
        {
            var http = context.HttpContext;
            if (http.Response.HasStarted || http.Response.ContentLength > 0) return;
            await WriteError(http, http.Response.StatusCode, http.Response.StatusCode == 405 ? $"{http.Request.Method} is not allowed on {http.Request.Path}" : "request refused");
        });
        app.Use(async (http, next) =>
        {
            try
            {
                if (http.Request.Path.StartsWithSegments("/api") && !Authorized(http.Request))
                    throw new ArenaError(401, "this arena needs its token: open the page with ?token=TOKEN (printed when the arena started), or send 'Authorization: Bearer TOKEN'");
                await next(http);
            }
            catch (ArenaError e) when (!http.Response.HasStarted)
            {
                await WriteError(http, e.Status, e.Message, e.RetryAfter);
            }
            catch (BadHttpRequestException e) when (!http.Response.HasStarted)
            {
                await WriteError(http, e.StatusCode, e.Message);
            }
        });
        app.MapGet("/", Page);
        app.MapGet("/leaderboard", Page);
        app.MapGet("/api/info", Info);
        app.MapPost("/api/battles", Battle);
        app.MapPost("/api/battles/{id}/vote", Vote);
        app.MapGet("/api/leaderboard", LeaderboardJson);
        // Anything else: a JSON 405 for a known path asked with the wrong method, else a JSON 404.
        app.MapFallback(http =>
        {
            string path = http.Request.Path.Value?.TrimEnd('/') ?? "";
            string? allowed = path switch
            {
                "" or "/leaderboard" or "/api/info" or "/api/leaderboard" => "GET",
                "/api/battles" => "POST",
                _ when path.StartsWith("/api/battles/", StringComparison.Ordinal) && path.EndsWith("/vote", StringComparison.Ordinal) => "POST",
                _ => null,
            };
            if (allowed is null) return WriteError(http, 404, $"no such endpoint: {http.Request.Method} {http.Request.Path}");
            http.Response.Headers.Allow = allowed;
            return WriteError(http, 405, $"{http.Request.Method} is not allowed on {http.Request.Path} (use {allowed})");
        });
    }

    private bool Authorized(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        // A header only, never a cookie: a browser does not attach it to another site's requests, so no cross-site request can vote.
        string? given = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
        if (given is null) return false;
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(_options.Token));
    }

    private static async Task WriteError(HttpContext http, int status, string message, TimeSpan? retryAfter = null)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        if (retryAfter is { } wait) http.Response.Headers.RetryAfter = Math.Ceiling(wait.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await http.Response.WriteAsync(new JsonObject { ["error"] = new JsonObject { ["status"] = status, ["message"] = message } }.ToJsonString());
    }

    private static Task WriteJson(HttpContext http, JsonNode body, int status = 200)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(body.ToJsonString());
    }

    private static readonly Lazy<byte[]> PageBytes = new(() =>
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Kaiyuan.Cli.Arena.arena.html")
            ?? throw new InvalidOperationException("the arena page is missing from the build");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    private static Task Page(HttpContext http)
    {
        http.Response.ContentType = "text/html; charset=utf-8";
        // The page is its own everything: no script, style or connection from elsewhere; no framing.
        http.Response.Headers.ContentSecurityPolicy = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
        http.Response.Headers.XContentTypeOptions = "nosniff";
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        return http.Response.Body.WriteAsync(PageBytes.Value).AsTask();
    }

    private Task Info(HttpContext http) => WriteJson(http, new JsonObject
    {
        ["models"] = _options.Models.Count,
        ["prompts"] = new JsonArray(_options.Prompts.Select(p => (JsonNode)JsonValue.Create(p)!).ToArray()),
        ["max_tokens"] = _options.MaxTokens,
        ["votes_per_minute"] = _options.VotesPerMinute,
    });

    private static async Task<JsonObject> ReadBody(HttpContext http)
    {
        try
        {
            var node = await JsonNode.ParseAsync(http.Request.Body, documentOptions: new JsonDocumentOptions { MaxDepth = 16 }, cancellationToken: http.RequestAborted);
            return node as JsonObject ?? throw new ArenaError(400, "the body must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ArenaError(400, $"the body is not valid JSON: {e.Message}");
        }
    }

    private static string? OptionalString(JsonObject body, string name) => body[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw new ArenaError(400, $"'{name}' must be a string"),
    };

    /// <summary>
    /// Starts a battle and streams it as NDJSON: {"battle_id"} first, then {"side":"a"|"b","text"} pieces as both models
    /// write (interleaved), {"side","error"} if one fails, and {"done":true,"votable"} last.
    /// </summary>
    private async Task Battle(HttpContext http)
    {
        var body = await ReadBody(http);
        string prompt = OptionalString(body, "prompt") ?? throw new ArenaError(400, "'prompt' is required");
        if (string.IsNullOrWhiteSpace(prompt)) throw new ArenaError(400, "'prompt' is empty");
        if (prompt.Length > _options.MaxPromptChars) throw new ArenaError(400, $"'prompt' is longer than {_options.MaxPromptChars} characters");
        string mode = OptionalString(body, "mode") ?? "text";
        if (mode is not ("text" or "code")) throw new ArenaError(400, "'mode' must be \"text\" or \"code\"");
        if (!await _battles.WaitAsync(0, http.RequestAborted)) throw new ArenaError(429, "the arena is busy answering other battles; try again in a moment", TimeSpan.FromSeconds(5));
        try
        {
            IEvalModel a, b;
            lock (_pick)
            {
                var random = _options.Random ?? Random.Shared;
                int i = random.Next(_options.Models.Count);
                int j = random.Next(_options.Models.Count - 1);
                if (j >= i) j++;
                (a, b) = (_options.Models[i], _options.Models[j]);
            }
            string id = Guid.NewGuid().ToString("N");
            _options.Store.AddBattle(id, a.Name, b.Name, prompt, mode);

            http.Response.ContentType = "application/x-ndjson; charset=utf-8";
            http.Response.Headers.CacheControl = "no-cache";
            http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            await WriteLine(http, new JsonObject { ["battle_id"] = id, ["mode"] = mode });

            var events = Channel.CreateUnbounded<JsonObject>();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
            var answers = new[] { new StringBuilder(), new StringBuilder() };
            var failed = new bool[2];
            async Task Run(IEvalModel model, int side)
            {
                string name = side == 0 ? "a" : "b";
                try
                {
                    await foreach (string text in model.StreamAsync(prompt, _options.MaxTokens, stop.Token))
                    {
                        answers[side].Append(text);
                        await events.Writer.WriteAsync(new JsonObject { ["side"] = name, ["text"] = text }, stop.Token);
                    }
                }
                catch (Exception) when (stop.IsCancellationRequested)
                {
                    // Stopped: the page went away.
                }
                catch (Exception e)
                {
                    failed[side] = true;
                    // The message names no model: the pair stays anonymous until the vote.
                    events.Writer.TryWrite(new JsonObject { ["side"] = name, ["error"] = "this model failed to answer" + (e is HttpRequestException ? " (its endpoint refused or dropped the request)" : "") });
                }
            }
            // Run catches everything, so this never faults; when both are done the stream of events ends.
            var both = Task.WhenAll(Run(a, 0), Run(b, 1)).ContinueWith(_ => events.Writer.TryComplete(), TaskScheduler.Default);
            try
            {
                await foreach (var e in events.Reader.ReadAllAsync(http.RequestAborted)) await WriteLine(http, e);
            }
            catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
            {
                // The page went away: stop both models; the battle stays unanswered and cannot be voted on.
            }
            finally
            {
                await stop.CancelAsync();
                await both;
            }
            if (http.RequestAborted.IsCancellationRequested) return;
            bool votable = !failed[0] && !failed[1];
            if (votable) _options.Store.SaveAnswers(id, answers[0].ToString(), answers[1].ToString());
            await WriteLine(http, new JsonObject { ["done"] = true, ["votable"] = votable });
        }
        finally
        {
            _battles.Release();
        }
    }

    private static async Task WriteLine(HttpContext http, JsonObject line)
    {
        await http.Response.WriteAsync(line.ToJsonString() + "\n", http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted);
    }

    private async Task Vote(HttpContext http)
    {
        string id = (string)http.Request.RouteValues["id"]!;
        var body = await ReadBody(http);
        string winner = OptionalString(body, "winner") switch
        {
            "a" => "model_a",
            "b" => "model_b",
            "tie" => "tie",
            "bothbad" => "tie (bothbad)",
            null => throw new ArenaError(400, "'winner' is required: \"a\", \"b\", \"tie\" or \"bothbad\""),
            var other => throw new ArenaError(400, $"'winner' must be \"a\", \"b\", \"tie\" or \"bothbad\", not \"{other}\""),
        };
        string voter = Voter(http);
        if (!_limiter.TryTake(voter, out var retry))
            throw new ArenaError(429, $"too many votes: at most {_options.VotesPerMinute} a minute", retry);
        var result = _options.Store.Vote(id, winner, voter);
        if (result != VoteResult.Recorded) _limiter.Refund(voter);
        switch (result)
        {
            case VoteResult.NotFound: throw new ArenaError(404, $"no battle {id}");
            case VoteResult.AlreadyVoted: throw new ArenaError(409, "this battle has been voted on already");
            case VoteResult.NotAnswered: throw new ArenaError(409, "this battle's answers are not complete, so it cannot be voted on");
        }
        var battle = _options.Store.Find(id)!;
        await WriteJson(http, new JsonObject { ["battle_id"] = id, ["winner"] = winner, ["model_a"] = battle.ModelA, ["model_b"] = battle.ModelB });
    }

    /// <summary>Who is voting: the page's random voter id (kept in its local storage) together with the client's address.</summary>
    private static string Voter(HttpContext http)
    {
        string? id = http.Request.Headers["X-Arena-Voter"].FirstOrDefault();
        if (id is { Length: > 64 }) id = id[..64];
        return $"{http.Connection.RemoteIpAddress}|{id}";
    }

    private Task LeaderboardJson(HttpContext http)
    {
        long count = _options.Store.CountBattles(votedOnly: true);
        var cached = _leaderboard;
        if (cached is not { } c || c.Count != count)
        {
            var board = ToJson(BradleyTerry.Compute(_options.Store.Outcomes(), _options.BootstrapRounds));
            _leaderboard = cached = (count, board);
        }
        return WriteJson(http, cached.Value.Board.DeepClone());
    }

    /// <summary>The leaderboard as JSON: ratings (the CLI's --json lines) plus the win-rate and battle-count matrices.</summary>
    public static JsonObject ToJson(Leaderboard board) => new()
    {
        ["battles"] = board.TotalBattles,
        ["ratings"] = RatingsJson(board),
        ["models"] = new JsonArray(board.Models.Select(m => (JsonNode)JsonValue.Create(m)!).ToArray()),
        ["win_rate"] = new JsonArray(Enumerable.Range(0, board.Models.Count).Select(i =>
            (JsonNode)new JsonArray(Enumerable.Range(0, board.Models.Count).Select(j => board.WinRate[i, j] is { } w ? (JsonNode)JsonValue.Create(Math.Round(w, 4)) : null).ToArray())).ToArray()),
        ["counts"] = new JsonArray(Enumerable.Range(0, board.Models.Count).Select(i =>
            (JsonNode)new JsonArray(Enumerable.Range(0, board.Models.Count).Select(j => (JsonNode)JsonValue.Create(board.Counts[i, j])).ToArray())).ToArray()),
    };

    /// <summary><c>kaiyuan arena leaderboard --json</c>'s contract: [{model, rating, ci95: [lo, hi], battles, rank, wins, ties, losses}], best first.</summary>
    public static JsonArray RatingsJson(Leaderboard board) => new(board.Ratings.Select(r => (JsonNode)new JsonObject
    {
        ["model"] = r.Model,
        ["rating"] = Math.Round(r.Rating, 2),
        ["ci95"] = new JsonArray(Math.Round(r.Low, 2), Math.Round(r.High, 2)),
        ["battles"] = r.Battles,
        ["rank"] = r.Rank,
        ["wins"] = r.Wins,
        ["ties"] = r.Ties,
        ["losses"] = r.Losses,
    }).ToArray());

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _battles.Dispose();
    }
}

/// <summary>A refusal the API answers as a JSON error with this status.</summary>
internal sealed class ArenaError(int status, string message, TimeSpan? retryAfter = null) : Exception(message)
{
    public int Status => status;
    public TimeSpan? RetryAfter => retryAfter;
}

/// <summary>A sliding window of at most <c>limit</c> votes per voter in <c>window</c>.</summary>
internal sealed class VoteLimiter(int limit, TimeSpan window, TimeProvider? clock = null)
{
    private readonly ConcurrentDictionary<string, Queue<DateTimeOffset>> _votes = new(StringComparer.Ordinal);
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;

    public bool TryTake(string voter, out TimeSpan retryAfter)
    {
        var now = _clock.GetUtcNow();
        // Voters who have not voted for a whole window are forgotten, so made-up voter ids cannot grow the table for ever.
        if (_votes.Count > 10_000)
        {
            foreach (var (key, queue) in _votes)
                lock (queue)
                    if (queue.Count == 0 || now - queue.Last() >= window) _votes.TryRemove(key, out _);
        }
        var times = _votes.GetOrAdd(voter, _ => new Queue<DateTimeOffset>());
        lock (times)
        {
            while (times.Count > 0 && now - times.Peek() >= window) times.Dequeue();
            if (times.Count >= limit)
            {
                retryAfter = window - (now - times.Peek());
                return false;
            }
            times.Enqueue(now);
            retryAfter = TimeSpan.Zero;
            return true;
        }
    }

    /// <summary>Gives back the last vote taken (it was refused for another reason).</summary>
    public void Refund(string voter)
    {
        if (!_votes.TryGetValue(voter, out var times)) return;
        lock (times)
        {
            // Queue has no "remove last": rebuild without the newest entry.
            var kept = times.ToArray();
            times.Clear();
            for (int i = 0; i < kept.Length - 1; i++) times.Enqueue(kept[i]);
        }
    }
}
