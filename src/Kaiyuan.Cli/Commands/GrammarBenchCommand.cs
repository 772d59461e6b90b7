using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Kaiyuan.Constraints;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench grammar -m TOKENIZER.gguf PATH...</c>: MaskBench (JSONSchemaBench's mask benchmark) over schema
/// files, single-threaded as its authors run it: one line per file, then a summary with mask-time percentiles.
/// </summary>
internal static class GrammarBenchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF file whose vocabulary to use (a vocab-only GGUF is enough)", Required = true };
        var paths = new Argument<string[]>("paths") { Description = "MaskBench files or folders of them", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "One JSON line per file, then a summary line" };
        var command = new Command("grammar", "Measure structured-output masks on MaskBench schema files") { model, paths, json };
        command.SetAction(parse => TokenizeCommand.Run(parse, () =>
            Run(StoreCommands.ResolveModel(parse, parse.GetValue(model)!), parse.GetValue(paths)!, parse.GetValue(json), parse.InvocationConfiguration.Output)));
        return command;
    }

    private static void Run(string modelPath, string[] paths, bool json, TextWriter output)
    {
        var files = MaskBenchmark.FindFiles(paths);
        var tokenizer = Tokenizer.FromGguf(modelPath);
        var results = new List<MaskBenchFileResult>(files.Count);
        var c = CultureInfo.InvariantCulture;
        if (!json)
            output.WriteLine($"{"file",-60} {"result",-12} {"ttfm µs",10} {"tokens",7} {"max mask µs",12}");
        foreach (string file in files)
        {
            var r = MaskBenchmark.RunFile(file, tokenizer);
            results.Add(r);
            if (json)
            {
                output.WriteLine(r.CompileError is { } error
                    ? JsonSerializer.Serialize(new Dictionary<string, object> { ["id"] = r.Id, ["compile_error"] = error })
                    : JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["id"] = r.Id,
                        ["ttfm_us"] = Math.Round(r.TtfmMicroseconds, 1),
                        ["accepted"] = r.Accepted,
                        ["tokens"] = r.Tokens,
                        ["mask_us_max"] = Math.Round(r.MaskMicrosecondsMax, 1),
                    }));
            }
            else
            {
                string verdict = r.CompileError is not null ? "compile error" : r.InvalidationError ? "INVALID OK" : r.ValidationError ? "valid refused" : "pass";
                output.WriteLine(string.Create(c, $"{Truncate(r.Id, 60),-60} {verdict,-12} {r.TtfmMicroseconds,10:F0} {r.Tokens,7} {r.MaskMicrosecondsMax,12:F0}"));
            }
        }

        var tbm = results.SelectMany(r => r.MaskMicroseconds).Order().ToArray();
        var ttfm = results.Where(r => r.CompileError is null).Select(r => r.TtfmMicroseconds).Order().ToArray();
        double P(double[] v, double q) => Math.Round(MaskBenchmark.Percentile(v, q), 1);
        int passing = results.Count(r => r.Passing), compileErrors = results.Count(r => r.CompileError is not null);
        int validationErrors = results.Count(r => r.ValidationError), invalidationErrors = results.Count(r => r.InvalidationError);
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["summary"] = new Dictionary<string, object>
                {
                    ["files"] = results.Count,
                    ["passing"] = passing,
                    ["compile_errors"] = compileErrors,
                    ["validation_errors"] = validationErrors,
                    ["invalidation_errors"] = invalidationErrors,
                    ["tbm_us"] = new Dictionary<string, double> { ["p50"] = P(tbm, 0.5), ["p75"] = P(tbm, 0.75), ["p90"] = P(tbm, 0.9), ["p99"] = P(tbm, 0.99), ["max"] = P(tbm, 1) },
                    ["ttfm_us"] = new Dictionary<string, double> { ["p50"] = P(ttfm, 0.5), ["p90"] = P(ttfm, 0.9), ["p99"] = P(ttfm, 0.99) },
                },
            }));
            return;
        }
        double pct(int n) => results.Count == 0 ? 0 : 100.0 * n / results.Count;
        output.WriteLine();
        output.WriteLine(string.Create(c, $"files: {results.Count}  passing: {passing} ({pct(passing):F1}%)  compile errors: {compileErrors}  validation errors: {validationErrors}  invalidation errors: {invalidationErrors}"));
        output.WriteLine(string.Create(c, $"mask time (TBM, µs): p50 {P(tbm, 0.5)}  p75 {P(tbm, 0.75)}  p90 {P(tbm, 0.9)}  p99 {P(tbm, 0.99)}  max {P(tbm, 1)}  over {tbm.Length} masks"));
        output.WriteLine(string.Create(c, $"time to first mask (TTFM, µs): p50 {P(ttfm, 0.5)}  p90 {P(ttfm, 0.9)}  p99 {P(ttfm, 0.99)}"));
    }

    private static string Truncate(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
