using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// <c>--out/summary.jsonl</c>: every (task, model) summary line a run printed, appended as it is made, so
/// <c>kaiyuan eval report</c> can rebuild the table and report.html later. A (task, model) run again replaces its earlier line.
/// </summary>
internal static class EvalSummaryLog
{
    public const string FileName = "summary.jsonl";

    public static string PathIn(string outDir) => Path.Combine(outDir, FileName);

    public static void Append(string outDir, JsonObject summary)
    {
        Directory.CreateDirectory(outDir);
        File.AppendAllText(PathIn(outDir), summary.ToJsonString(EvalRecord.Json) + "\n");
    }

    /// <summary>
    /// The summaries saved in <paramref name="outDir"/>, one per (task, model), the latest line winning, in the order each
    /// pair first appeared. A missing file is an error naming it; so is a line that is not a summary (except a last line a kill cut short).
    /// </summary>
    public static List<JsonObject> Read(string outDir)
    {
        string path = PathIn(outDir);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no summaries here (run kaiyuan eval with --out {outDir} first)");
        var latest = new Dictionary<(string, string), JsonObject>();
        var order = new List<(string, string)>();
        string[] lines = File.ReadAllLines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            JsonObject? line;
            try
            {
                line = JsonNode.Parse(lines[i]) as JsonObject;
            }
            catch (JsonException) when (i == lines.Length - 1)
            {
                continue; // a write interrupted mid-line
            }
            catch (JsonException e)
            {
                throw new FormatException($"{path}:{i + 1}: not JSON ({e.Message})");
            }
            if (line?["task"] is not JsonValue task || line["model"] is not JsonValue model || line["score"] is null)
                throw new FormatException($"{path}:{i + 1}: not an eval summary (task, model and score are required)");
            var key = (task.ToString(), model.ToString());
            if (!latest.ContainsKey(key)) order.Add(key);
            latest[key] = line;
        }
        return order.Select(k => latest[k]).ToList();
    }
}
