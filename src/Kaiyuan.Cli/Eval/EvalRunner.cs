using System.Diagnostics;
using System.Text.Json;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// Runs a task's items through a model (in process, where <c>--concurrency</c> items run batched together in the
/// scheduler, or behind an endpoint, with that many requests in flight), saving each answer as soon as it is scored: a
/// run that is stopped goes on where it left off, and no answer is computed twice.
/// </summary>
internal sealed class EvalRunner(IEvalModel model, int concurrency)
{
    public async Task<EvalResult> RunAsync(IEvalTask task, string recordsPath, Action<int, int>? progress, CancellationToken cancel)
    {
        var saved = EvalRecord.ReadSaved(recordsPath);
        // Rewrite what was saved (dropping a line a kill cut short), then append.
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(recordsPath))!);
        string temp = recordsPath + ".tmp";
        File.WriteAllLines(temp, saved.Values.OrderBy(r => r.Index).ThenBy(r => r.Sample).Select(r => JsonSerializer.Serialize(r, EvalRecord.Json)));
        File.Move(temp, recordsPath, overwrite: true);

        var all = Enumerable.Range(0, task.Count).SelectMany(i => Enumerable.Range(0, task.SamplesPerItem).Select(s => (Index: i, Sample: s))).ToList();
        var pending = all.Where(k => !saved.ContainsKey(k)).ToList();
        // Time spent by the runs this one resumes (the latest wall time saved), so the total covers every answer.
        double earlier = saved.Count == 0 ? 0 : saved.Values.Max(r => r.WallSeconds);
        var clock = Stopwatch.StartNew();
        int done = all.Count - pending.Count;
        progress?.Invoke(done, all.Count);
        using (var writer = new StreamWriter(recordsPath, append: true))
        {
            var writeLock = new object();
            await Parallel.ForEachAsync(pending, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancel }, async (key, ct) =>
            {
                var request = task.Request(key.Index, key.Sample, model);
                EvalAnswer answer;
                while (true)
                {
                    try
                    {
                        answer = await model.GenerateAsync(request, ct);
                        break;
                    }
                    catch (PromptTooLongException) when (task.Shorten(key.Index, request) is { } shorter)
                    {
                        request = shorter;
                    }
                }
                var record = await task.ScoreAsync(Answered(key.Index, key.Sample, request, answer), answer, ct);
                lock (writeLock)
                {
                    record = record with { WallSeconds = earlier + clock.Elapsed.TotalSeconds };
                    writer.WriteLine(JsonSerializer.Serialize(record, EvalRecord.Json));
                    writer.Flush();
                    saved[key] = record;
                    progress?.Invoke(++done, all.Count);
                }
            });
        }
        var records = all.Select(k => saved[k]).ToList();
        return task.Summarize(model.Name, records, recordsPath) with { Speed = EvalSpeed.Of(records, clock.Elapsed + TimeSpan.FromSeconds(earlier)) };
    }

    /// <summary>An answer as a record, before the task's verdict.</summary>
    private static EvalRecord Answered(int index, int sample, EvalRequest request, EvalAnswer answer) => new()
    {
        Index = index,
        Sample = sample,
        Prompt = request.Prompt,
        Reference = "",
        Output = answer.Content,
        TokensIn = answer.TokensIn,
        TokensOut = answer.TokensOut,
        TtftMs = answer.TtftMs,
        GenerationSeconds = answer.GenerationSeconds,
        FinishReason = answer.FinishReason,
        ChoiceLogprobs = answer.ChoiceLogprobs?.ToDictionary(),
    };
}
