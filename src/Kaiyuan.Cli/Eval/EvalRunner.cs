using System.Diagnostics;
using System.Text.Json;

namespace Kaiyuan.Cli.Eval;

/// <summary>What one (task, model) run measured: the scores with their intervals, and the speed.</summary>
internal sealed record EvalSummary(string Task, string Model, int N, int StrictCorrect, int FlexibleCorrect, long TokensIn, long TokensOut,
    double TokensPerSecond, double TtftMsMedian, double WallSeconds)
{
    public double Score => N == 0 ? 0 : (double)StrictCorrect / N;
    public double FlexibleScore => N == 0 ? 0 : (double)FlexibleCorrect / N;
}

/// <summary>
/// Runs a task's items through a model (in process, where <c>--concurrency</c> items run batched together in the
/// scheduler, or behind an endpoint, with that many requests in flight), greedy, saving each answer as soon as it is scored: a run that is
/// stopped goes on where it left off, and no item is computed twice.
/// </summary>
internal sealed class EvalRunner(IEvalModel model, int concurrency, int maxTokens)
{
    public async Task<EvalSummary> RunGsm8kAsync(IReadOnlyList<Gsm8kItem> items, string recordsPath, Action<int, int>? progress, CancellationToken cancel)
    {
        var saved = EvalRecord.ReadSaved(recordsPath);
        // Rewrite what was saved (dropping a line a kill cut short), then append.
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(recordsPath))!);
        string temp = recordsPath + ".tmp";
        File.WriteAllLines(temp, saved.Values.OrderBy(r => r.Index).Select(r => JsonSerializer.Serialize(r, EvalRecord.Json)));
        File.Move(temp, recordsPath, overwrite: true);

        var pending = items.Where(i => !saved.ContainsKey(i.Index)).ToList();
        var clock = Stopwatch.StartNew();
        int done = items.Count - pending.Count;
        progress?.Invoke(done, items.Count);
        using var writer = new StreamWriter(recordsPath, append: true);
        var writeLock = new object();
        await Parallel.ForEachAsync(pending, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancel }, async (item, ct) =>
        {
            var record = await AnswerAsync(item, ct);
            lock (writeLock)
            {
                writer.WriteLine(JsonSerializer.Serialize(record, EvalRecord.Json));
                writer.Flush();
                saved[item.Index] = record;
                progress?.Invoke(++done, items.Count);
            }
        });

        var records = items.Select(i => saved[i.Index]).ToList();
        double generation = records.Sum(r => r.GenerationSeconds);
        var ttfts = records.Select(r => r.TtftMs).Order().ToList();
        return new EvalSummary(Gsm8kTask.Name, model.Name, records.Count, records.Count(r => r.StrictCorrect), records.Count(r => r.FlexibleCorrect),
            records.Sum(r => (long)r.TokensIn), records.Sum(r => (long)r.TokensOut), generation > 0 ? records.Sum(r => r.TokensOut) / generation : 0,
            ttfts.Count == 0 ? 0 : ttfts[ttfts.Count / 2], clock.Elapsed.TotalSeconds);
    }

    private async Task<EvalRecord> AnswerAsync(Gsm8kItem item, CancellationToken cancel)
    {
        string prompt = Gsm8kTask.Prompt(item);
        var answer = await model.AnswerAsync(prompt, maxTokens, cancel);
        string? strict = NumericAnswers.Strict(answer.Content), flexible = NumericAnswers.Flexible(answer.Content);
        return new EvalRecord
        {
            Index = item.Index,
            Prompt = prompt,
            Reference = item.Reference,
            Output = answer.Content,
            Strict = strict,
            Flexible = flexible,
            StrictCorrect = NumericAnswers.Same(strict, item.Reference),
            FlexibleCorrect = NumericAnswers.Same(flexible, item.Reference),
            TokensIn = answer.TokensIn,
            TokensOut = answer.TokensOut,
            TtftMs = answer.TtftMs,
            GenerationSeconds = answer.GenerationSeconds,
            FinishReason = answer.FinishReason,
        };
    }
}
