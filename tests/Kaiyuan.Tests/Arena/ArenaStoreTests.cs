using System.Diagnostics;
using System.Text.Json.Nodes;
using Kaiyuan.Cli.Arena;
using Kaiyuan.Tests.Hub;
using Microsoft.Data.Sqlite;

namespace Kaiyuan.Tests.Arena;

/// <summary>The arena's SQLite storage: migrations, votes, the public JSONL format both ways, and a kill mid-write.</summary>
[Collection("Console")]
public sealed class ArenaStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-arena-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string File_(string name) => Path.Combine(_dir, name);

    private static long Scalar(string db, string sql)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = db, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void Execute(string db, string sql)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = db, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static void WriteBattles(string path, IEnumerable<Outcome> outcomes, bool conversations = true)
    {
        using var writer = new StreamWriter(path);
        int n = 0;
        foreach (var o in outcomes)
        {
            var line = new JsonObject
            {
                ["question_id"] = $"q{n % 50}",
                ["model_a"] = o.ModelA,
                ["model_b"] = o.ModelB,
                ["winner"] = o.ScoreA switch { 1 => "model_a", 0 => "model_b", _ => n % 2 == 0 ? "tie" : "tie (bothbad)" },
                ["tstamp"] = 1_700_000_000.5 + n,
            };
            if (conversations)
            {
                line["conversation_a"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"question {n}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"answer a {n}" });
                line["conversation_b"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"question {n}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"answer b {n}" });
            }
            writer.WriteLine(line.ToJsonString());
            n++;
        }
    }

    [Fact]
    public void TheCommandRefusesFewerThanTwoModelsAndUnknownSubcommands()
    {
        var (code, _, error) = ConsoleRunner.Run("arena", "--models", "only-one.gguf", "--db", File_("y.db"));
        Assert.Equal(1, code);
        Assert.Contains("at least two models", error);
        (code, _, error) = ConsoleRunner.Run("arena", "leaderbord");
        Assert.Equal(2, code);
        Assert.Contains("unknown command 'leaderbord'", error);
        (code, _, error) = ConsoleRunner.Run("arena", "leaderboard", "--db", File_("missing.db"));
        Assert.Equal(1, code);
        Assert.Contains("no arena database", error);
    }

    [Fact]
    public void AVersionOneDatabaseIsMigratedKeepingItsBattles()
    {
        string db = File_("old.db");
        Execute(db, ArenaStore.Migrations[0] + "PRAGMA user_version = 1;" +
                    "INSERT INTO battles (battle_id, model_a, model_b, winner, tstamp) VALUES ('b1', 'x', 'y', 'model_a', 1.5);");
        var store = ArenaStore.Open(db);
        Assert.Equal(ArenaStore.SchemaVersion, Scalar(db, "PRAGMA user_version"));
        Assert.Equal(2, ArenaStore.SchemaVersion);
        var battle = store.Find("b1")!;
        Assert.Equal(("x", "y", "model_a", "text"), (battle.ModelA, battle.ModelB, battle.Winner, battle.Mode));
        Assert.Equal("wal", new SqliteConnection($"Data Source={db};Pooling=False").Let(c => { c.Open(); using var cmd = c.CreateCommand(); cmd.CommandText = "PRAGMA journal_mode"; return (string)cmd.ExecuteScalar()!; }));
        // Opening again changes nothing.
        ArenaStore.Open(db);
        Assert.Equal(1, store.CountBattles());
    }

    [Fact]
    public void ANewerOrForeignDatabaseIsRefusedClearly()
    {
        string newer = File_("newer.db");
        ArenaStore.Open(newer);
        Execute(newer, "PRAGMA user_version = 99");
        var e = Assert.Throws<InvalidDataException>(() => ArenaStore.Open(newer));
        Assert.Contains("newer", e.Message);
        string garbage = File_("garbage.db");
        File.WriteAllText(garbage, "this is not a database, just text that is long enough to be looked at by SQLite's header check.....");
        e = Assert.Throws<InvalidDataException>(() => ArenaStore.Open(garbage));
        Assert.Contains("not a usable arena database", e.Message);
    }

    [Fact]
    public void AVoteIsCastOnceAndOnlyOnAnsweredBattles()
    {
        var store = ArenaStore.Open(File_("votes.db"));
        store.AddBattle("b", "x", "y", "hello", "code");
        Assert.Equal(VoteResult.NotAnswered, store.Vote("b", "model_a", "v"));
        store.SaveAnswers("b", "A says", "B says");
        Assert.Equal(VoteResult.Recorded, store.Vote("b", "tie (bothbad)", "v"));
        Assert.Equal(VoteResult.AlreadyVoted, store.Vote("b", "model_a", "v"));
        Assert.Equal(VoteResult.NotFound, store.Vote("nope", "model_a", "v"));
        Assert.Throws<ArgumentException>(() => store.Vote("b", "model_c", "v"));
        var battle = store.Find("b")!;
        Assert.Equal(("tie (bothbad)", "hello", "A says", "B says", "code"), (battle.Winner, battle.Prompt, battle.AnswerA, battle.AnswerB, battle.Mode));
        Assert.Equal(new Outcome("x", "y", 0.5), Assert.Single(store.Outcomes()));
    }

    [Theory]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"model_a\"", "line 3: ")]
    [InlineData("[1,2]", "line 3: not a JSON object")]
    [InlineData("{\"model_a\":\"x\",\"winner\":\"model_a\"}", "line 3: model_b is missing")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":7,\"winner\":\"model_a\"}", "line 3: model_b is not a non-empty string")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"model_c\"}", "line 3: winner 'model_c' is not one of")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"x\",\"winner\":\"tie\"}", "line 3: model_a and model_b are the same model")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"tie\",\"tstamp\":\"noon\"}", "line 3: tstamp is not a number")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"tie\",\"conversation_a\":\"hi\"}", "line 3: conversation_a is not an array")]
    [InlineData("{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"tie\",\"conversation_a\":[{\"content\":\"hi\"}]}", "line 3: conversation_a: each message is an object with a role")]
    public void AMalformedLineIsNamedAndNothingIsImported(string bad, string expected)
    {
        string file = File_("bad.jsonl");
        File.WriteAllLines(file, ["{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"model_a\"}", "", bad, "{\"model_a\":\"y\",\"model_b\":\"x\",\"winner\":\"tie\"}"]);
        string db = File_("bad.db");
        var (code, _, error) = ConsoleRunner.Run("arena", "import", file, "--db", db);
        Assert.Equal(1, code);
        Assert.Contains($"bad.jsonl {expected}", error);
        Assert.Equal(0, ArenaStore.Open(db).CountBattles());
    }

    [Fact]
    public void AnExportedFileImportsToTheSameLeaderboard()
    {
        string file = File_("battles.jsonl");
        WriteBattles(file, BradleyTerryTests.Simulate([1200, 1100, 1000, 900], 2000, new Random(5)));
        string first = File_("first.db"), second = File_("second.db"), exported = File_("exported.jsonl");
        var (code, output, error) = ConsoleRunner.Run("arena", "import", file, "--db", first);
        Assert.True(code == 0, error);
        Assert.Contains("imported 2000 battles", output);
        (code, _, error) = ConsoleRunner.Run("arena", "export", "--db", first, "-o", exported);
        Assert.True(code == 0, error);
        (code, _, error) = ConsoleRunner.Run("arena", "import", exported, "--db", second);
        Assert.True(code == 0, error);

        var (c1, board1, e1) = ConsoleRunner.Run("arena", "leaderboard", "--db", first, "--json");
        var (c2, board2, e2) = ConsoleRunner.Run("arena", "leaderboard", "--db", second, "--json");
        Assert.True(c1 == 0 && c2 == 0, e1 + e2);
        Assert.Equal(board1, board2);
        // The contract: a JSON array of {model, rating, ci95: [lo, hi], battles, rank}, best first.
        var lines = JsonNode.Parse(board1)!.AsArray();
        Assert.Equal(new[] { "m0", "m1", "m2", "m3" }, lines.Select(l => (string)l!["model"]!));
        foreach (var line in lines)
        {
            double rating = (double)line!["rating"]!;
            var ci = line["ci95"]!.AsArray().Select(v => (double)v!).ToArray();
            Assert.True(ci.Length == 2 && ci[0] <= rating && rating <= ci[1], line.ToJsonString());
            Assert.True((int)line["battles"]! > 0 && (int)line["rank"]! >= 1);
        }
        Assert.Equal(2000 * 2, lines.Sum(l => (int)l!["battles"]!));

        // Every field the format carries comes back: question ids, timestamps, winners, both conversations.
        var original = ArenaStore.ReadBattles(file);
        var reimported = ArenaStore.Open(second).VotedBattles();
        Assert.Equal(original.Select(b => (b.QuestionId, b.ModelA, b.ModelB, b.Winner, b.Tstamp, b.Prompt, b.AnswerA, b.AnswerB)),
            reimported.Select(b => (b.QuestionId, b.ModelA, b.ModelB, b.Winner, b.Tstamp, b.Prompt, b.AnswerA, b.AnswerB)));

        // And the text table.
        (code, output, _) = ConsoleRunner.Run("arena", "leaderboard", "--db", second);
        Assert.Equal(0, code);
        Assert.Contains("m0", output);
        Assert.Contains("2000 voted battles", output);
    }

    [Fact]
    public void AnImportKilledMidWriteLeavesEveryCommittedBattle()
    {
        string db = File_("kill.db");
        string small = File_("small.jsonl"), big = File_("big.jsonl");
        WriteBattles(small, BradleyTerryTests.Simulate([1100, 1000], 100, new Random(1)));
        WriteBattles(big, BradleyTerryTests.Simulate([1100, 1000, 900], 60_000, new Random(2)));
        var (code, _, error) = ConsoleRunner.Run("arena", "import", small, "--db", db);
        Assert.True(code == 0, error);
        long committed = 100;
        int killed = 0;
        foreach (int ms in new[] { 0, 40, 120, 250, 500 })
        {
            var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "kaiyuan.dll"), "arena", "import", big, "--db", db }) psi.ArgumentList.Add(a);
            using var child = Process.Start(psi)!;
            _ = child.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            // The child says when it starts writing (the whole file has been read and checked); it is killed some time into the write.
            string? line;
            while ((line = child.StandardError.ReadLine()) is not null && !line.Contains("importing", StringComparison.Ordinal)) { }
            Thread.Sleep(ms);
            if (!child.HasExited)
            {
                child.Kill(entireProcessTree: true); // SIGKILL: no handler, no finally block runs
                killed++;
            }
            child.WaitForExit();
            bool finished = child.ExitCode == 0;
            // The database opens, passes SQLite's own check, and holds exactly what was committed: an import is all or
            // nothing. A child killed after its commit but before it exited has committed the whole file.
            Assert.Equal("ok", new SqliteConnection($"Data Source={db};Pooling=False").Let(c => { c.Open(); using var cmd = c.CreateCommand(); cmd.CommandText = "PRAGMA integrity_check"; return (string)cmd.ExecuteScalar()!; }));
            long count = ArenaStore.Open(db).CountBattles();
            Assert.True(count == committed || count == committed + 60_000, $"{count} battles after an import killed at {ms} ms: neither none nor all of its 60,000 beside {committed}");
            if (finished) Assert.Equal(committed + 60_000, count);
            committed = count;
        }
        Assert.True(killed >= 2, $"only {killed} of the imports were killed before they finished");
        // And the database goes on working: a whole import after the kills.
        (code, _, error) = ConsoleRunner.Run("arena", "import", small, "--db", db);
        Assert.True(code == 0, error);
        Assert.Equal(committed + 100, ArenaStore.Open(db).CountBattles(votedOnly: true));
    }
}

internal static class LetExtension
{
    public static TResult Let<T, TResult>(this T value, Func<T, TResult> body) where T : IDisposable
    {
        using (value) return body(value);
    }
}
