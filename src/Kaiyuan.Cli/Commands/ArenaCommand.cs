using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;
using Kaiyuan.Cli.Arena;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan arena</c>: a private arena — two anonymous models answer a prompt side by side, the user votes, the names
/// are revealed — and its Bradley–Terry leaderboard (<c>arena leaderboard</c>), with the battles kept in SQLite and
/// exchanged in the public arena-battle JSONL format (<c>arena import</c>, <c>arena export</c>).
/// </summary>
internal static class ArenaCommand
{
    /// <summary>Offered on the page when no --prompts file is given.</summary>
    internal static readonly string[] DefaultPrompts =
    [
        "Explain why the sky is blue to a ten-year-old.",
        "Write a haiku about a kettle.",
        "What are three good questions to ask in a job interview, and why?",
        "Write a Python function that returns the n-th Fibonacci number, iteratively.",
        "Summarise the plot of Romeo and Juliet in three sentences.",
        "A bat and a ball cost 1.10 in total. The bat costs 1.00 more than the ball. How much does the ball cost?",
    ];

    private static Option<string> Db() => new("--db") { Description = "The arena's SQLite database (default: arena.db in the model store folder)" };

    private static string DbPath(ParseResult p, Option<string> db) => p.GetValue(db) ?? Path.Combine(StoreCommands.StoreOf(p).Root, "arena.db");

    public static Command Create()
    {
        var models = new Option<string[]>("--models")
        {
            Description = "The contestants, comma-separated or repeated: GGUF paths, store references, or openai:BASE_URL#MODEL endpoints (at least two)",
            AllowMultipleArgumentsPerToken = true,
        };
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on (0: any free port)", DefaultValueFactory = _ => 8090 };
        var db = Db();
        var token = new Option<string>("--token") { Description = "The token voters need (default: KAIYUAN_ARENA_TOKEN, else a new random one, printed with the address)" };
        var prompts = new Option<string>("--prompts") { Description = "A prompt set to pick from on the page: a text file (one prompt a line) or JSONL with \"prompt\" (or MT-Bench's \"turns\")" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens an answer may have at most", DefaultValueFactory = _ => 512 };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Answers a local model decodes together (continuous batching)", DefaultValueFactory = _ => 4 };
        var votes = new Option<int>("--votes-per-minute") { Description = "Votes one voter may cast in a minute", DefaultValueFactory = _ => 10 };
        var apiKeyEnv = new Option<string>("--api-key-env") { Description = "Environment variable holding the API key for openai: models", DefaultValueFactory = _ => "OPENAI_API_KEY" };
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        Arguments.Range(port, 0, 65535, "must be between 0 and 65535");
        Arguments.Range(maxTokens, 1, 1 << 20, "must be a positive number of tokens");
        Arguments.Range(parallel, 1, 256, "must be between 1 and 256");
        Arguments.Range(votes, 1, 10_000, "must be between 1 and 10000");
        var command = new Command("arena", "A private arena: two anonymous models answer side by side, you vote, the names are revealed; with a Bradley–Terry leaderboard")
        {
            models, host, port, db, token, prompts, maxTokens, parallel, votes, apiKeyEnv, threads, ctxSize,
            Leaderboard(), Import(), Export(),
        };
        command.SetAction(async (p, cancel) =>
        {
            var specs = (p.GetValue(models) ?? []).SelectMany(m => m.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            if (specs.Count < 2) throw new ArgumentException("an arena needs at least two models: --models M1,M2[,…]");
            IReadOnlyList<string> promptSet = p.GetValue(prompts) is { } file ? ReadPrompts(file) : DefaultPrompts;
            var store = ArenaStore.Open(DbPath(p, db));
            string secret = p.GetValue(token) ?? Environment.GetEnvironmentVariable("KAIYUAN_ARENA_TOKEN") ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            var loaded = new List<IEvalModel>();
            try
            {
                foreach (string spec in specs)
                {
                    if (spec.StartsWith(OpenAiEvalModel.Prefix, StringComparison.Ordinal))
                    {
                        loaded.Add(new OpenAiEvalModel(spec, Environment.GetEnvironmentVariable(p.GetValue(apiKeyEnv)!)));
                        continue;
                    }
                    Console.Error.WriteLine($"kaiyuan: loading {spec}…");
                    loaded.Add(new LocalEvalModel(ModelRuntime.Load(new ModelOptions
                    {
                        ModelPath = StoreCommands.ResolveModel(p, spec),
                        Parallel = p.GetValue(parallel),
                        Threads = p.GetValue(threads),
                        ContextSize = p.GetValue(ctxSize),
                    })));
                }
                ArenaServer server;
                try
                {
                    server = await ArenaServer.StartAsync(new ArenaOptions
                    {
                        Models = loaded,
                        Store = store,
                        Token = secret,
                        Host = p.GetValue(host)!,
                        Port = p.GetValue(port),
                        Prompts = promptSet,
                        MaxTokens = p.GetValue(maxTokens),
                        VotesPerMinute = p.GetValue(votes),
                    }, cancel);
                }
                catch (IOException e)
                {
                    throw new IOException($"cannot listen: {e.Message}", e);
                }
                await using (server)
                {
                    Console.Error.WriteLine($"kaiyuan: arena of {loaded.Count} models, battles in {store.Path} ({store.CountBattles(votedOnly: true)} voted so far)");
                    Console.Error.WriteLine($"kaiyuan: open {server.Address}?token={secret}  — the token is needed once per browser; Ctrl-C stops");
                    await server.WaitForShutdownAsync(cancel);
                }
                return 0;
            }
            finally
            {
                foreach (var m in loaded) m.Dispose();
            }
        });
        return command;
    }

    /// <summary>A prompt set: one prompt a line, or JSONL objects with "prompt" (or "turns", MT-Bench's, whose first is taken).</summary>
    internal static List<string> ReadPrompts(string file)
    {
        var prompts = new List<string>();
        int number = 0;
        foreach (string raw in File.ReadLines(file))
        {
            number++;
            string line = raw.Trim();
            if (line.Length == 0) continue;
            if (!line.StartsWith('{'))
            {
                prompts.Add(line);
                continue;
            }
            try
            {
                var o = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not a JSON object");
                string? prompt = o["prompt"] is JsonValue v && v.TryGetValue(out string? s) ? s
                    : o["turns"] is JsonArray { Count: > 0 } turns && turns[0] is JsonValue t && t.TryGetValue(out string? first) ? first : null;
                prompts.Add(prompt ?? throw new FormatException("has neither \"prompt\" nor \"turns\""));
            }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                throw new InvalidDataException($"{file} line {number}: {e.Message}", e);
            }
        }
        if (prompts.Count == 0) throw new InvalidDataException($"{file}: no prompts");
        return prompts;
    }

    private static Command Leaderboard()
    {
        var db = Db();
        var json = new Option<bool>("--json") { Description = "Print a JSON array of {model, rating, ci95: [lo, hi], battles, rank, wins, ties, losses}, best first" };
        var rounds = new Option<int>("--bootstrap") { Description = "Bootstrap resamples for the 95% intervals (fixed seed: the same battles give the same table)", DefaultValueFactory = _ => 200 };
        Arguments.Range(rounds, 0, 100_000, "must be between 0 and 100000");
        var command = new Command("leaderboard", "Bradley–Terry ratings of the arena's models with 95% bootstrap intervals and ranks") { db, json, rounds };
        command.SetAction(p =>
        {
            string path = DbPath(p, db);
            if (!File.Exists(path)) throw new FileNotFoundException($"no arena database at {path} (run kaiyuan arena, or import battles, first)");
            var board = BradleyTerry.Compute(ArenaStore.Open(path).Outcomes(), p.GetValue(rounds));
            var output = p.InvocationConfiguration.Output;
            if (p.GetValue(json))
            {
                output.WriteLine(ArenaServer.RatingsJson(board).ToJsonString());
                return 0;
            }
            WriteTable(output, board);
            return 0;
        });
        return command;
    }

    internal static void WriteTable(TextWriter output, Leaderboard board)
    {
        var c = CultureInfo.InvariantCulture;
        if (board.Ratings.Count == 0)
        {
            output.WriteLine("no voted battles yet");
            return;
        }
        int width = Math.Max(5, board.Ratings.Max(r => r.Model.Length));
        output.WriteLine(string.Create(c, $"{"rank",4}  {"model".PadRight(width)}  {"rating",7}  {"95% CI",-15}  {"battles",7}  W / T / L"));
        foreach (var r in board.Ratings)
            output.WriteLine(string.Create(c, $"{r.Rank,4}  {r.Model.PadRight(width)}  {r.Rating,7:F1}  {$"{r.Low:F0} – {r.High:F0}",-15}  {r.Battles,7}  {r.Wins} / {r.Ties} / {r.Losses}"));
        output.WriteLine(string.Create(c, $"{board.TotalBattles} voted battles; 400 points = 10:1 odds, mean 1000; ties count half a win each way"));
    }

    private static Command Import()
    {
        var db = Db();
        var file = new Argument<string>("BATTLES.jsonl") { Description = "Battles in the public arena-battle format: one JSON object a line with model_a, model_b, winner (model_a, model_b, tie, tie (bothbad)), optional tstamp, question_id, conversation_a/b" };
        var command = new Command("import", "Add battles from a JSONL file in the public arena-battle format (all of the file or, on a malformed line, none of it)") { file, db };
        command.SetAction(p =>
        {
            string input = p.GetValue(file)!;
            if (!File.Exists(input)) throw new FileNotFoundException($"file not found: {input}");
            var store = ArenaStore.Open(DbPath(p, db));
            int n = store.Import(input, count => Console.Error.WriteLine($"kaiyuan: importing {count} battles into {store.Path}…"));
            p.InvocationConfiguration.Output.WriteLine($"imported {n} battles ({store.CountBattles(votedOnly: true)} voted battles in {store.Path})");
            return 0;
        });
        return command;
    }

    private static Command Export()
    {
        var db = Db();
        var output = new Option<string>("--output", "-o") { Description = "File to write (default: standard output)" };
        var command = new Command("export", "Write every voted battle as JSONL in the public arena-battle format") { db, output };
        command.SetAction(p =>
        {
            string path = DbPath(p, db);
            if (!File.Exists(path)) throw new FileNotFoundException($"no arena database at {path}");
            var store = ArenaStore.Open(path);
            if (p.GetValue(output) is { } target)
            {
                // Written beside the target and renamed into place: a killed export leaves no half file under its name.
                string temporary = target + ".partial";
                int n;
                using (var writer = new StreamWriter(temporary, false, new System.Text.UTF8Encoding(false)))
                    n = store.Export(writer);
                File.Move(temporary, target, overwrite: true);
                Console.Error.WriteLine($"kaiyuan: exported {n} battles to {target}");
            }
            else
            {
                store.Export(p.InvocationConfiguration.Output);
            }
            return 0;
        });
        return command;
    }
}
