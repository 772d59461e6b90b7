using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace Kaiyuan.Cli.Arena;

/// <summary>A battle as stored: its models, the prompt and both answers, and the vote (null until cast).</summary>
internal sealed record BattleRecord(string BattleId, string ModelA, string ModelB, string? Winner, double Tstamp, string? QuestionId,
    string? Prompt, string? AnswerA, string? AnswerB, string Mode);

/// <summary>What casting a vote came to.</summary>
internal enum VoteResult { Recorded, NotFound, AlreadyVoted, NotAnswered }

/// <summary>
/// The arena's battles and votes in SQLite. The file is in WAL mode with synchronous=FULL and every change is one
/// transaction, so a process killed mid-write leaves a database that opens and holds every committed battle (an
/// import is one transaction: all of a file or none of it). The schema version is SQLite's <c>PRAGMA user_version</c>:
/// opening a database runs, each in its own transaction, the migrations it has not had yet (<see cref="Migrations"/>,
/// append-only — a released step is never edited), and refuses a database written by a newer kaiyuan.
/// Winners are stored in the public arena-battle vocabulary: model_a, model_b, tie, "tie (bothbad)".
/// </summary>
internal sealed class ArenaStore
{
    public static readonly string[] Winners = ["model_a", "model_b", "tie", "tie (bothbad)"];

    /// <summary>Schema steps: index i takes user_version i to i + 1.</summary>
    internal static readonly string[] Migrations =
    [
        // 1: battles, with the prompt and both answers; winner null until voted.
        """
        CREATE TABLE battles (
            id INTEGER PRIMARY KEY,
            battle_id TEXT NOT NULL UNIQUE,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            winner TEXT CHECK (winner IS NULL OR winner IN ('model_a', 'model_b', 'tie', 'tie (bothbad)')),
            tstamp REAL NOT NULL,
            question_id TEXT,
            prompt TEXT,
            answer_a TEXT,
            answer_b TEXT,
            voter TEXT,
            source TEXT NOT NULL DEFAULT 'arena'
        );
        """,
        // 2: the page's mode (text or code), whether both answers are complete (a vote needs them), and an index for the leaderboard's query.
        """
        ALTER TABLE battles ADD COLUMN mode TEXT NOT NULL DEFAULT 'text';
        ALTER TABLE battles ADD COLUMN answered INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX battles_by_winner ON battles (winner);
        """,
    ];

    private readonly string _connectionString;

    public string Path { get; }

    private ArenaStore(string path)
    {
        Path = path;
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false, DefaultTimeout = 30 }.ToString();
    }

    /// <summary>Opens (creating it if needed) and migrates the database at <paramref name="path"/>.</summary>
    public static ArenaStore Open(string path)
    {
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        var store = new ArenaStore(path);
        try
        {
            using var connection = store.Connect();
            store.Migrate(connection);
        }
        catch (SqliteException e)
        {
            throw new InvalidDataException($"{path}: not a usable arena database ({e.Message})", e);
        }
        return store;
    }

    /// <summary>The schema version this build writes.</summary>
    public static int SchemaVersion => Migrations.Length;

    private SqliteConnection Connect()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        Execute(connection, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;");
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql, SqliteTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    private void Migrate(SqliteConnection connection)
    {
        while (true)
        {
            using var transaction = connection.BeginTransaction(System.Data.IsolationLevel.Serializable);
            using var read = connection.CreateCommand();
            read.Transaction = transaction;
            read.CommandText = "PRAGMA user_version";
            int version = Convert.ToInt32(read.ExecuteScalar(), CultureInfo.InvariantCulture);
            if (version > Migrations.Length)
                throw new InvalidDataException($"{Path}: arena database schema {version} is newer than this kaiyuan's ({Migrations.Length}); upgrade kaiyuan");
            if (version == Migrations.Length) return;
            Execute(connection, Migrations[version], transaction);
            Execute(connection, $"PRAGMA user_version = {version + 1}", transaction);
            transaction.Commit();
        }
    }

    /// <summary>Records a new battle before its answers stream (so a crash mid-answer leaves it, unvoted).</summary>
    public void AddBattle(string battleId, string modelA, string modelB, string prompt, string mode)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO battles (battle_id, model_a, model_b, tstamp, prompt, mode, answered, source)
            VALUES ($id, $a, $b, $t, $prompt, $mode, 0, 'arena')
            """;
        command.Parameters.AddWithValue("$id", battleId);
        command.Parameters.AddWithValue("$a", modelA);
        command.Parameters.AddWithValue("$b", modelB);
        command.Parameters.AddWithValue("$t", Now());
        command.Parameters.AddWithValue("$prompt", prompt);
        command.Parameters.AddWithValue("$mode", mode);
        command.ExecuteNonQuery();
    }

    /// <summary>Saves both finished answers; the battle can then be voted on.</summary>
    public void SaveAnswers(string battleId, string answerA, string answerB)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE battles SET answer_a = $a, answer_b = $b, answered = 1 WHERE battle_id = $id";
        command.Parameters.AddWithValue("$id", battleId);
        command.Parameters.AddWithValue("$a", answerA);
        command.Parameters.AddWithValue("$b", answerB);
        command.ExecuteNonQuery();
    }

    /// <summary>Casts the vote on a battle, once.</summary>
    public VoteResult Vote(string battleId, string winner, string? voter)
    {
        if (!Winners.Contains(winner)) throw new ArgumentException($"winner '{winner}' is not one of {string.Join(", ", Winners)}");
        using var connection = Connect();
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT winner, answered FROM battles WHERE battle_id = $id";
        command.Parameters.AddWithValue("$id", battleId);
        using (var reader = command.ExecuteReader())
        {
            if (!reader.Read()) return VoteResult.NotFound;
            if (!reader.IsDBNull(0)) return VoteResult.AlreadyVoted;
            if (reader.GetInt64(1) == 0) return VoteResult.NotAnswered;
        }
        command.CommandText = "UPDATE battles SET winner = $w, voter = $v WHERE battle_id = $id";
        command.Parameters.AddWithValue("$w", winner);
        command.Parameters.AddWithValue("$v", (object?)voter ?? DBNull.Value);
        command.ExecuteNonQuery();
        transaction.Commit();
        return VoteResult.Recorded;
    }

    /// <summary>One battle, or null.</summary>
    public BattleRecord? Find(string battleId)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = $"{Select} WHERE battle_id = $id";
        command.Parameters.AddWithValue("$id", battleId);
        using var reader = command.ExecuteReader();
        return reader.Read() ? ReadBattle(reader) : null;
    }

    /// <summary>Every voted battle, oldest first.</summary>
    public List<BattleRecord> VotedBattles()
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = $"{Select} WHERE winner IS NOT NULL ORDER BY id";
        using var reader = command.ExecuteReader();
        var battles = new List<BattleRecord>();
        while (reader.Read()) battles.Add(ReadBattle(reader));
        return battles;
    }

    /// <summary>How many battles are stored (voted or not).</summary>
    public long CountBattles(bool votedOnly = false)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = votedOnly ? "SELECT count(*) FROM battles WHERE winner IS NOT NULL" : "SELECT count(*) FROM battles";
        return (long)command.ExecuteScalar()!;
    }

    /// <summary>The voted battles as the leaderboard's outcomes (both kinds of tie are half a win each way).</summary>
    public List<Outcome> Outcomes() => VotedBattles().Select(ToOutcome).ToList();

    public static Outcome ToOutcome(BattleRecord b) => new(b.ModelA, b.ModelB, b.Winner switch { "model_a" => 1, "model_b" => 0, _ => 0.5 });

    private const string Select = "SELECT battle_id, model_a, model_b, winner, tstamp, question_id, prompt, answer_a, answer_b, mode FROM battles";

    private static BattleRecord ReadBattle(SqliteDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3),
        r.GetDouble(4), r.IsDBNull(5) ? null : r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6), r.IsDBNull(7) ? null : r.GetString(7),
        r.IsDBNull(8) ? null : r.GetString(8), r.GetString(9));

    private static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>
    /// Writes every voted battle as one line of the public arena-battle format: question_id, model_a, model_b, winner,
    /// tstamp, turn, anony, category ("text" or "code"), and conversation_a/b when the prompt and answers are known.
    /// </summary>
    public int Export(TextWriter output)
    {
        int n = 0;
        foreach (var b in VotedBattles())
        {
            var line = new JsonObject
            {
                ["question_id"] = b.QuestionId ?? b.BattleId,
                ["model_a"] = b.ModelA,
                ["model_b"] = b.ModelB,
                ["winner"] = b.Winner,
                ["tstamp"] = b.Tstamp,
                ["turn"] = 1,
                ["anony"] = true,
                ["category"] = b.Mode,
            };
            if (b.Prompt is not null)
            {
                line["conversation_a"] = Conversation(b.Prompt, b.AnswerA);
                line["conversation_b"] = Conversation(b.Prompt, b.AnswerB);
            }
            output.Write(line.ToJsonString());
            output.Write('\n');
            n++;
        }
        return n;
    }

    private static JsonArray Conversation(string prompt, string? answer)
    {
        var conversation = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt });
        if (answer is not null) conversation.Add(new JsonObject { ["role"] = "assistant", ["content"] = answer });
        return conversation;
    }

    /// <summary>
    /// Reads battles in the public arena-battle format, one JSON object a line (blank lines skipped), naming the line of
    /// the first malformed one; nothing is stored unless the whole file reads. Then stores them all in one transaction.
    /// <paramref name="starting"/> is told the count just before the write begins.
    /// </summary>
    public int Import(string file, Action<int>? starting = null)
    {
        var battles = ReadBattles(file);
        starting?.Invoke(battles.Count);
        using var connection = Connect();
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO battles (battle_id, model_a, model_b, winner, tstamp, question_id, prompt, answer_a, answer_b, mode, answered, source)
            VALUES ($id, $a, $b, $w, $t, $q, $prompt, $answerA, $answerB, $mode, 1, 'import')
            """;
        var p = new[] { "$id", "$a", "$b", "$w", "$t", "$q", "$prompt", "$answerA", "$answerB", "$mode" }.Select(name => command.Parameters.Add(name, name == "$t" ? SqliteType.Real : SqliteType.Text)).ToArray();
        command.Prepare();
        foreach (var b in battles)
        {
            p[0].Value = b.BattleId;
            p[1].Value = b.ModelA;
            p[2].Value = b.ModelB;
            p[3].Value = b.Winner;
            p[4].Value = b.Tstamp;
            p[5].Value = (object?)b.QuestionId ?? DBNull.Value;
            p[6].Value = (object?)b.Prompt ?? DBNull.Value;
            p[7].Value = (object?)b.AnswerA ?? DBNull.Value;
            p[8].Value = (object?)b.AnswerB ?? DBNull.Value;
            p[9].Value = b.Mode;
            command.ExecuteNonQuery();
        }
        transaction.Commit();
        return battles.Count;
    }

    /// <summary>Parses a battles file (see <see cref="Import"/>); a malformed line is an <see cref="InvalidDataException"/> naming it.</summary>
    public static List<BattleRecord> ReadBattles(string file)
    {
        var battles = new List<BattleRecord>();
        int number = 0;
        foreach (string line in File.ReadLines(file))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                battles.Add(ParseBattle(line));
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{file} line {number}: {e.Message}", e);
            }
        }
        return battles;
    }

    private static BattleRecord ParseBattle(string line)
    {
        var node = JsonNode.Parse(line, documentOptions: new JsonDocumentOptions { MaxDepth = 64 });
        if (node is not JsonObject o) throw new FormatException("not a JSON object");
        string a = RequiredString(o, "model_a");
        string b = RequiredString(o, "model_b");
        if (a == b) throw new FormatException($"model_a and model_b are the same model ('{a}')");
        string winner = RequiredString(o, "winner");
        if (!Winners.Contains(winner)) throw new FormatException($"winner '{winner}' is not one of model_a, model_b, tie, tie (bothbad)");
        double tstamp = o["tstamp"] switch
        {
            null => Now(),
            JsonValue v when v.TryGetValue(out double t) && double.IsFinite(t) => t,
            _ => throw new FormatException("tstamp is not a number (seconds since 1970)"),
        };
        string? question = o["question_id"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            JsonValue v when v.TryGetValue(out long id) => id.ToString(CultureInfo.InvariantCulture),
            _ => throw new FormatException("question_id is neither a string nor an integer"),
        };
        var (prompt, answerA) = ReadConversation(o, "conversation_a");
        var (promptB, answerB) = ReadConversation(o, "conversation_b");
        string mode = o["category"] is JsonValue c && c.TryGetValue(out string? category) && category == "code" ? "code" : "text";
        return new BattleRecord(Guid.NewGuid().ToString("N"), a, b, winner, tstamp, question, prompt ?? promptB, answerA, answerB, mode);
    }

    private static string RequiredString(JsonObject o, string name) => o[name] switch
    {
        null => throw new FormatException($"{name} is missing"),
        JsonValue v when v.TryGetValue(out string? s) && s.Length > 0 => s,
        _ => throw new FormatException($"{name} is not a non-empty string"),
    };

    /// <summary>A conversation's first user message and last assistant message (multi-turn battles keep those two).</summary>
    private static (string? Prompt, string? Answer) ReadConversation(JsonObject o, string name)
    {
        if (o[name] is null) return (null, null);
        if (o[name] is not JsonArray turns) throw new FormatException($"{name} is not an array of messages");
        string? prompt = null, answer = null;
        foreach (var turn in turns)
        {
            if (turn is not JsonObject message || message["role"] is not JsonValue r || !r.TryGetValue(out string? role))
                throw new FormatException($"{name}: each message is an object with a role");
            string? content = message["content"] switch
            {
                null => null,
                JsonValue v when v.TryGetValue(out string? s) => s,
                var other => other.ToJsonString(),
            };
            if (role == "user") prompt ??= content;
            else if (role == "assistant") answer = content;
        }
        return (prompt, answer);
    }
}
