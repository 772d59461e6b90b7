using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Kaiyuan.Cli.Benchmarks;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench</c>, like llama-bench: prompt processing (one batch of -p tokens from an empty cache) and text
/// generation (-n single-token steps) in tokens/s, mean ± sample stdev over -r repetitions after one warm-up run; with
/// <c>--model-draft</c>, generation with that draft model too, each run right after a plain one.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(params Command[] subcommands)
    {
        var model = Arguments.Model();
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "Prompt tokens to process", DefaultValueFactory = _ => 512 };
        var gen = new Option<int>("--n-gen", "-n") { Description = "Tokens to generate", DefaultValueFactory = _ => 128 };
        var depth = new Option<int>("--n-depth", "-d") { Description = "Tokens already in the context before each test (as llama-bench's -d): decode and prompt speed deep in a long chat", DefaultValueFactory = _ => 0 };
        var randomDepth = new Option<bool>("--random-depth")
        {
            Description = "With -d: fill the depth with random KV rows instead of evaluating it (a deep context's prefill can take hours; decode cost does not depend on the cached values)",
        };
        var threads = Arguments.Threads();
        var reps = new Option<int>("--repetitions", "-r") { Description = "Repetitions", DefaultValueFactory = _ => 5 };
        var cacheType = Arguments.CacheType();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var noBandwidth = new Option<bool>("--no-bandwidth") { Description = "Skip measuring the memory read bandwidth (the ceiling decode is compared with)" };
        var draftModel = new Option<string>("--model-draft", "-md")
        {
            Description = "Also measure generation with speculative decoding by this draft model (same vocabulary), interleaved with plain generation: speed, tokens drafted and the share accepted",
        };
        var draftMax = new Option<int>("--draft-max") { Description = "With --model-draft, --lookup or --mtp: tokens proposed per step at most (at most 6 are used)", DefaultValueFactory = _ => 6 };
        Arguments.Range(draftMax, 1, 64, "must be between 1 and 64");
        var lookup = new Option<bool>("--lookup")
        {
            Description = "Also measure greedy generation with prompt-lookup speculation against plain greedy generation, run after run, from a prompt whose answer repeats it "
                + "(a code edit): speed, whether the outputs are the same, tokens drafted and the share accepted. Needs a model with a tokenizer",
        };
        var lookupPrompt = new Option<string>("--lookup-prompt")
        {
            Description = "With --lookup: a text file to use as the prompt (default: a request to rename a method in a short C# file, the file, and the answer's first line)",
        };
        var mtp = new Option<bool>("--mtp")
        {
            Description = "Also measure greedy generation with the model's multi-token-prediction (NextN) layer drafting against plain greedy generation, run after "
                + "run, from the --lookup prompt: speed, whether the outputs are the same, tokens drafted and the share accepted",
        };
        var cmd = new Command("bench", "Measure prompt-processing and generation speed (tokens/s)")
        {
            model, prompt, gen, depth, randomDepth, threads, reps, cacheType, json, noBandwidth, draftModel, draftMax, lookup, lookupPrompt, mtp,
        };
        cmd.Validators.Add(r =>
        {
            if (r.GetValue(lookup) && r.GetValue(draftModel) is not null) r.AddError("choose one of --lookup and --model-draft");
            if (r.GetValue(lookupPrompt) is not null && !r.GetValue(lookup) && !r.GetValue(mtp)) r.AddError("--lookup-prompt needs --lookup or --mtp");
        });
        foreach (var sub in subcommands) cmd.Subcommands.Add(sub);
        cmd.SetAction(p => Run(StoreCommands.ResolveModel(p, p.GetValue(model)!), p.GetValue(prompt), p.GetValue(gen), p.GetValue(depth), p.GetValue(threads), p.GetValue(reps),
            p.GetValue(json), Arguments.ParseCacheType(p.GetValue(cacheType)), p.GetValue(randomDepth), !p.GetValue(noBandwidth),
            p.GetValue(draftModel) is { } d ? StoreCommands.ResolveModel(p, d) : null, p.GetValue(draftMax),
            p.GetValue(lookup) ? p.GetValue(lookupPrompt) ?? "" : null, p.GetValue(mtp) ? p.GetValue(lookupPrompt) ?? "" : null));
        return cmd;
    }

    /// <param name="ModelBytes">Bytes of all the file's tensors.</param>
    /// <param name="DecodeBytesPerToken">Weight bytes one decode step reads (<see cref="DecodeWeightBytes"/>).</param>
    /// <param name="PeakRssBytes">The process's peak resident set after the runs (the runtime reads VmHWM on Linux).</param>
    /// <param name="KvCacheBytes">Bytes of the KV cache the runs allocated.</param>
    /// <param name="Draft">Generation with the draft model, when one was given.</param>
    /// <param name="DecodePasses">Timed decode steps (and speculative verifications).</param>
    /// <param name="FewerThreadPasses">Of those, the ones the session ran on fewer than <paramref name="Threads"/> threads because timing showed them faster.</param>
    public sealed record Result(double PpTps, double PpStd, double TgTps, double TgStd, int Threads, long ModelBytes, long DecodeBytesPerToken, long PeakRssBytes, long KvCacheBytes,
        DraftResult? Draft = null, long DecodePasses = 0, long FewerThreadPasses = 0);

    /// <summary>Speculative generation's speed and how much of the draft was accepted (all repetitions together).</summary>
    public sealed record DraftResult(double TgTps, double TgStd, long Drafted, long Accepted)
    {
        public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    }

    private static int Run(string path, int nPrompt, int nGen, int nDepth, int threads, int reps, bool json, Kaiyuan.Gguf.GgmlType cacheType, bool randomDepth, bool bandwidth,
        string? draftPath, int draftMax, string? lookupPromptFile = null, string? mtpPromptFile = null)
    {
        if (nPrompt < 0 || nGen < 0 || nDepth < 0 || reps < 1) throw new ArgumentException("-p, -n and -d must be ≥ 0 and -r ≥ 1");
        using var model = ModelLoader.Load(path);
        using var draftModel = draftPath is null ? null : ModelLoader.Load(draftPath);
        var draft = draftModel is null ? null : new Speculative.DraftModel(draftModel, model, draftMax);
        int[]? lookupPrompt = lookupPromptFile is null ? null : LookupPromptIds(model, path, lookupPromptFile);
        var r = Measure(model, nPrompt, nGen, reps, threads, cacheType, nDepth, randomDepth, draft);
        var lookup = lookupPrompt is null ? null : LookupBenchmark.Measure(model, lookupPrompt, nGen, reps, threads, cacheType, draftMax);
        if (mtpPromptFile is not null && !model.HasMultiTokenPrediction)
            throw new ArgumentException($"--mtp: {Path.GetFileName(path)} has no multi-token-prediction (NextN) layer (synth --nextn writes one)");
        var mtp = mtpPromptFile is null ? null
            : LookupBenchmark.Measure(model, LookupPromptIds(model, path, mtpPromptFile), nGen, reps, threads, cacheType, draftMax, multiTokenPrediction: true);
        var resident = ResidentMemory.Read(path);
        // Measured after the runs with as many threads, so decode is compared with the ceiling it could have reached here.
        var ceiling = bandwidth && nGen > 0 ? KernelBenchmarks.ReadBandwidth(r.Threads) : null;
        double decodeGbps = r.DecodeBytesPerToken * r.TgTps / 1e9;
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["pp_tps"] = Math.Round(r.PpTps, 3),
                ["pp_std"] = Math.Round(r.PpStd, 3),
                ["tg_tps"] = Math.Round(r.TgTps, 3),
                ["tg_std"] = Math.Round(r.TgStd, 3),
                ["n_depth"] = nDepth,
                ["random_depth"] = randomDepth,
                ["threads"] = r.Threads,
                ["decode_passes"] = r.DecodePasses,
                ["decode_passes_fewer_threads"] = r.FewerThreadPasses,
                ["model_bytes"] = r.ModelBytes,
                ["decode_bytes_per_token"] = r.DecodeBytesPerToken,
                ["decode_read_gb_s"] = Math.Round(decodeGbps, 3),
                ["bandwidth_gb_s"] = ceiling is null ? null : Math.Round(ceiling.BestGbPerSecond, 3),
                ["bandwidth_share"] = ceiling is null ? null : Math.Round(decodeGbps / ceiling.BestGbPerSecond, 4),
                ["peak_rss_bytes"] = r.PeakRssBytes,
                ["rss_file_bytes"] = resident?.FileBytes,
                ["rss_anon_bytes"] = resident?.AnonymousBytes,
                ["kv_cache_bytes"] = r.KvCacheBytes,
                ["kernels"] = KernelBenchmarks.Tier,
                ["draft_model"] = draftPath is null ? null : Path.GetFileName(draftPath),
                ["tg_draft_tps"] = r.Draft is { } dj ? Math.Round(dj.TgTps, 3) : null,
                ["tg_draft_std"] = r.Draft is { } ds ? Math.Round(ds.TgStd, 3) : null,
                ["draft_tokens"] = r.Draft?.Drafted,
                ["draft_tokens_accepted"] = r.Draft?.Accepted,
                ["draft_acceptance_rate"] = r.Draft is { } da ? Math.Round(da.AcceptanceRate, 4) : null,
                ["lookup_prompt_tokens"] = lookup?.PromptTokens,
                ["tg_lookup_baseline_tps"] = lookup is null ? null : Math.Round(lookup.PlainTps, 3),
                ["tg_lookup_baseline_std"] = lookup is null ? null : Math.Round(lookup.PlainStd, 3),
                ["tg_lookup_tps"] = lookup is null ? null : Math.Round(lookup.LookupTps, 3),
                ["tg_lookup_std"] = lookup is null ? null : Math.Round(lookup.LookupStd, 3),
                ["lookup_speedup"] = lookup is null ? null : Math.Round(lookup.Speedup, 4),
                ["lookup_tokens"] = lookup?.Drafted,
                ["lookup_tokens_accepted"] = lookup?.Accepted,
                ["lookup_acceptance_rate"] = lookup is null ? null : Math.Round(lookup.AcceptanceRate, 4),
                ["lookup_output_identical"] = lookup?.Identical,
                ["tg_mtp_baseline_tps"] = mtp is null ? null : Math.Round(mtp.PlainTps, 3),
                ["tg_mtp_baseline_std"] = mtp is null ? null : Math.Round(mtp.PlainStd, 3),
                ["tg_mtp_tps"] = mtp is null ? null : Math.Round(mtp.LookupTps, 3),
                ["tg_mtp_std"] = mtp is null ? null : Math.Round(mtp.LookupStd, 3),
                ["mtp_speedup"] = mtp is null ? null : Math.Round(mtp.Speedup, 4),
                ["mtp_tokens"] = mtp?.Drafted,
                ["mtp_tokens_accepted"] = mtp?.Accepted,
                ["mtp_acceptance_rate"] = mtp is null ? null : Math.Round(mtp.AcceptanceRate, 4),
                ["mtp_output_identical"] = mtp?.Identical,
            }));
            return 0;
        }
        Console.WriteLine($"model: {Path.GetFileName(path)} ({model.Architecture}, {InfoCommand.Size(r.ModelBytes)}), threads: {threads}, repetitions: {reps}, kernels: {KernelBenchmarks.Tier}");
        string at = nDepth > 0 ? $" @ d{nDepth}{(randomDepth ? " (random rows)" : "")}" : "";
        if (nPrompt > 0) Console.WriteLine($"pp{nPrompt}{at}: {r.PpTps,10:F2} ± {r.PpStd:F2} tokens/s");
        if (nGen > 0)
        {
            Console.WriteLine($"tg{nGen}{at}: {r.TgTps,10:F2} ± {r.TgStd:F2} tokens/s   (weights read per token {InfoCommand.Size(r.DecodeBytesPerToken)} × rate = {decodeGbps:F2} GB/s"
                + (ceiling is null ? ")" : $", {decodeGbps / ceiling.BestGbPerSecond:P0} of this machine's {ceiling.BestGbPerSecond:F1} GB/s read bandwidth with {ceiling.Threads} threads)"));
            if (r.FewerThreadPasses > 0)
                Console.WriteLine($"decode ran {r.FewerThreadPasses} of {r.DecodePasses} steps on fewer than {r.Threads} threads: probes, and steps where fewer timed faster (as when another busy process takes a core)");
            if (r.Draft is { } d)
                Console.WriteLine($"tg{nGen}{at} with draft {Path.GetFileName(draftPath)}: {d.TgTps,10:F2} ± {d.TgStd:F2} tokens/s   ({d.TgTps / Math.Max(1e-9, r.TgTps):F2}× plain; " +
                                  $"{d.Accepted} of {d.Drafted} drafted tokens accepted = {d.AcceptanceRate:P1})");
        }
        if (mtp is { } mt)
            Console.WriteLine($"tg{nGen} after a {mt.PromptTokens}-token prompt: plain {mt.PlainTps,8:F2} ± {mt.PlainStd:F2}, multi-token prediction {mt.LookupTps,8:F2} ± {mt.LookupStd:F2} tokens/s   " +
                              $"({mt.Speedup:F2}× plain; {mt.Accepted} of {mt.Drafted} drafted tokens accepted = {mt.AcceptanceRate:P1}; outputs {(mt.Identical ? "identical" : "DIFFER")})");
        if (lookup is { } l)
            Console.WriteLine($"tg{nGen} after a {l.PromptTokens}-token prompt: plain {l.PlainTps,8:F2} ± {l.PlainStd:F2}, prompt lookup {l.LookupTps,8:F2} ± {l.LookupStd:F2} tokens/s   " +
                              $"({l.Speedup:F2}× plain; {l.Accepted} of {l.Drafted} drafted tokens accepted = {l.AcceptanceRate:P1}; outputs {(l.Identical ? "identical" : "DIFFER")})");
        // The mapped file counts only where its pages were touched, so the peak is split by what is resident now rather
        // than by subtracting the file's size from it.
        if (r.PeakRssBytes > 0)
            Console.WriteLine($"peak RSS: {InfoCommand.Size(r.PeakRssBytes)}" + (resident is { } m
                ? $"; resident now: model file pages {InfoCommand.Size(m.FileBytes)} of {InfoCommand.Size(r.ModelBytes)}, anonymous {InfoCommand.Size(m.AnonymousBytes)} (KV cache {InfoCommand.Size(r.KvCacheBytes)})"
                : $" (KV cache {InfoCommand.Size(r.KvCacheBytes)})"));
        return 0;
    }

    /// <summary>
    /// Weight bytes one decode step reads: every tensor of the layers that run, but of a mixture-of-experts layer's
    /// stacked experts only the share that is active (used / count), of the token embeddings one row (all of it when
    /// the output projection is tied to it), and nothing of multi-token-prediction layers, which are loaded, not run.
    /// </summary>
    public static long DecodeWeightBytes(TransformerModel model)
    {
        var shape = model.Shape;
        bool tied = !model.File.Tensors.Any(t => t.Name == "output.weight");
        double bytes = 0;
        foreach (var t in model.File.Tensors)
        {
            if (t.Name.StartsWith("blk.", StringComparison.Ordinal)
                && int.TryParse(t.Name.AsSpan(4, t.Name.IndexOf('.', 4) - 4), out int layer) && layer >= shape.Layers)
                continue;
            if (t.Name == "token_embd.weight" && !tied) bytes += t.ByteSize / Math.Max(1, model.VocabSize);
            else if (t.Name.Contains("_exps.", StringComparison.Ordinal) && shape.ExpertCount > 0)
                bytes += (double)t.ByteSize * shape.ExpertUsedCount / shape.ExpertCount;
            else bytes += t.ByteSize;
        }
        return (long)bytes;
    }

    /// <param name="nDepth">Tokens evaluated once, untimed, before the runs; each run starts from them (llama-bench's -d).</param>
    public static Result Measure(TransformerModel model, int nPrompt, int nGen, int reps, int threads, Kaiyuan.Gguf.GgmlType cacheType = Kaiyuan.Gguf.GgmlType.F32,
        int nDepth = 0, bool randomDepth = false, Speculative.DraftModel? draft = null)
    {
        using var session = new InferenceSession(model, Math.Max(16, nDepth + nPrompt + nGen + 1), threads, cacheType,
            maxBatch: Math.Max(1, Math.Max(nPrompt, Math.Min(nDepth, 512))));
        var random = new Random(42);
        int[] tokens = Enumerable.Range(0, Math.Max(nPrompt, 1)).Select(_ => random.Next(model.VocabSize)).ToArray();
        if (randomDepth) session.AdvanceWithRandomRows(nDepth);
        else if (nDepth > 0) session.Evaluate(Enumerable.Range(0, nDepth).Select(_ => random.Next(model.VocabSize)).ToArray());
        var pp = new List<double>();
        var tg = new List<double>();
        var tgDraft = new List<double>();
        var warm = new SpeculationReport(0, 0);
        var speculative = new GenerationOptions { MaxTokens = nGen, IgnoreEndOfGeneration = true, Draft = draft };
        var greedy = new Sampler(SamplerOptions.Greedy);
        Span<int> one = stackalloc int[1];
        long[] passesBefore = [];
        for (int rep = 0; rep <= reps; rep++) // the first run warms up caches and the JIT
        {
            if (rep == 1) passesBefore = [.. session.DecodeThreads.PassesByThreads];
            session.Truncate(nDepth);
            if (nPrompt > 0)
            {
                long start = Stopwatch.GetTimestamp();
                session.Evaluate(tokens);
                if (rep > 0) pp.Add(nPrompt / Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            if (nGen > 0)
            {
                session.Truncate(nDepth);
                one[0] = tokens[0];
                long start = Stopwatch.GetTimestamp();
                // Beside a draft, through the same generator and sampler, so the two differ only by the speculation.
                if (draft is not null) foreach (var _ in Generator.Generate(session, [tokens[0]], greedy, speculative with { Draft = null })) { }
                else for (int i = 0; i < nGen; i++) one[0] = ArgMax(session.Evaluate(one));
                if (rep > 0) tg.Add(nGen / Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            // Right after each plain run, on the same tokens and depth, so both see the same machine (interleaved).
            if (nGen > 0 && draft is not null)
            {
                session.Truncate(nDepth);
                long start = Stopwatch.GetTimestamp();
                foreach (var _ in Generator.Generate(session, [tokens[0]], greedy, speculative)) { }
                if (rep > 0) tgDraft.Add(nGen / Stopwatch.GetElapsedTime(start).TotalSeconds);
                else warm = draft.Speculation;
            }
        }
        long bytes = model.File.Tensors.Sum(t => t.ByteSize);
        var counted = draft?.Speculation;
        var draftResult = draft is null || nGen == 0 ? null
            : new DraftResult(Stats.Mean(tgDraft), Stats.Std(tgDraft), counted!.DraftedTokens - warm.DraftedTokens, counted.AcceptedTokens - warm.AcceptedTokens);
        var passes = session.DecodeThreads.PassesByThreads;
        long decodePasses = 0, fewer = 0;
        for (int t = 1; t < passes.Count; t++)
        {
            long timed = passes[t] - (passesBefore.Length > t ? passesBefore[t] : 0);
            decodePasses += timed;
            if (t < session.Threads) fewer += timed;
        }
        return new Result(Stats.Mean(pp), Stats.Std(pp), Stats.Mean(tg), Stats.Std(tg), session.Threads, bytes, DecodeWeightBytes(model), Process.GetCurrentProcess().PeakWorkingSet64, session.KvCacheBytes,
            draftResult, decodePasses, fewer);
    }

    /// <summary>The lookup benchmark's prompt: the file's text, or the built-in code edit for an empty name, tokenized by the model.</summary>
    private static int[] LookupPromptIds(TransformerModel model, string path, string file)
    {
        if (!model.File.Metadata.Contains("tokenizer.ggml.model"))
            throw new NotSupportedException($"--lookup: {Path.GetFileName(path)} has no tokenizer (synth --vocab gives one)");
        if (file.Length > 0 && !File.Exists(file)) throw new FileNotFoundException($"--lookup-prompt: file not found: {file}");
        string text = file.Length > 0 ? File.ReadAllText(file) : LookupBenchmark.CodeEditPrompt;
        var ids = Kaiyuan.Tokenizers.Tokenizer.FromGguf(model.File.Metadata).Encode(text, addSpecial: true, parseSpecial: false);
        if (ids.Length == 0) throw new ArgumentException("--lookup-prompt: the prompt is empty");
        return ids;
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

}
