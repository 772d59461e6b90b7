using Kaiyuan.Chat;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Kaiyuan.AspNetCore;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan serve</c>: an OpenAI-, Anthropic- and Ollama-compatible HTTP server with continuous batching; and
/// <c>kaiyuan bench serve</c>: aggregate generation speed at 1, 4 and 8 concurrent streams against that server.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string[]>("--model", "-m")
        {
            Description = "Model: a GGUF file path or a store reference (hf.co/OWNER/REPO[:QUANT], an alias such as qwen2.5:0.5b); repeat it to serve several (the first is the default)",
        };
        var allModels = new Option<bool>("--models") { Description = "Serve every model in the local store too (a request's \"model\" picks one; each loads on demand)" };
        var maxModels = new Option<int>("--max-models") { Description = "Models loaded at once at most; loading one more unloads the least recently used idle one (0: no limit)" };
        var keepAlive = new Option<string>("--keep-alive")
        {
            Description = "How long a model stays loaded after its last request (\"5m\", \"1h\", seconds; negative: forever), unless a request's keep_alive says (default: forever with one model, 5m with several)",
        };
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var alias = new Option<string>("--alias", "-a") { Description = "Model name in the API (default: the file name)" };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Sequences decoded together (slots)", DefaultValueFactory = _ => 4 };
        var ctxSize = Arguments.ContextSize();
        var threads = Arguments.Threads();
        var apiKey = new Option<string>("--api-key") { Description = "Require this key as 'Authorization: Bearer KEY' (or Anthropic's 'x-api-key: KEY'; default: KAIYUAN_API_KEY)" };
        var template = new Option<string>("--chat-template-file") { Description = "Chat template to use instead of the model's" };
        var cors = new Option<string[]>("--cors") { Description = "Allow these browser origins (\"*\" for any)", AllowMultipleArgumentsPerToken = true };
        var maxBody = new Option<long>("--max-body") { Description = "Largest request body in bytes", DefaultValueFactory = _ => 8 * 1024 * 1024 };
        var queue = new Option<int>("--queue") { Description = "Requests waiting for a slot at most (more get 429)", DefaultValueFactory = _ => 64 };
        var cacheType = Arguments.CacheType();
        var cacheRam = new Option<long>("--cache-ram")
        {
            Description = "MiB the KV memory (running requests and cached prompt prefixes) may grow to; 0 turns prefix caching off (default: a quarter of free memory, at most 8 GiB)",
            DefaultValueFactory = _ => -1,
        };
        var promptCache = Arguments.PromptCache();
        var promptCacheMax = Arguments.PromptCacheMax();
        var prefillPriority = Arguments.PrefillPriority();
        var cmd = new Command("serve", "Serve a model over HTTP: OpenAI-, Anthropic- and Ollama-compatible API, continuous batching, chat page at /")
        {
            model, allModels, maxModels, keepAlive, host, port, alias, parallel, ctxSize, threads, apiKey, template, cors, maxBody, queue, cacheType, cacheRam, promptCache, promptCacheMax, prefillPriority,
        };
        var speculation = new SpeculationArguments();
        speculation.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var models = Models(p, p.GetValue(model) ?? [], p.GetValue(allModels), p.GetValue(alias));
            string? draftPath = speculation.DraftModelPath(p);
            // A draft shares one model's vocabulary; the others would refuse it as they load.
            if (draftPath is not null && models.Count > 1) throw new ArgumentException("--model-draft drafts for one model: serve a single -m");
            var options = new ServerOptions
            {
                ModelPath = models[0].Path,
                Models = models,
                MaxModels = p.GetValue(maxModels),
                KeepAlive = p.GetValue(keepAlive) is { } given ? ParseKeepAlive(given) : null,
                Host = p.GetValue(host)!,
                Port = p.GetValue(port),
                Alias = models[0].Name,
                Parallel = p.GetValue(parallel),
                ContextSize = p.GetValue(ctxSize),
                Threads = p.GetValue(threads),
                ApiKey = p.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("KAIYUAN_API_KEY"),
                ChatTemplateFile = p.GetValue(template),
                CorsOrigins = p.GetValue(cors) ?? [],
                MaxRequestBodyBytes = p.GetValue(maxBody),
                MaxQueue = p.GetValue(queue),
                CacheType = Arguments.ParseCacheType(p.GetValue(cacheType)),
                CacheRamMiB = p.GetValue(cacheRam),
                PromptCacheDir = p.GetValue(promptCache),
                PromptCacheMaxMiB = p.GetValue(promptCacheMax),
                LookupDraftTokens = speculation.Read(p),
                DraftModelPath = draftPath,
                DraftModelTokens = p.GetValue(speculation.DraftMax),
                MtpDraftTokens = speculation.ReadMtp(p),
                LowPriorityPrefill = p.GetValue(prefillPriority) == "low",
                StoreRoot = StoreCommands.StoreOf(p).Root,
            };
            return Serve(options).GetAwaiter().GetResult();
        });
        return cmd;
    }

    /// <summary>
    /// The models to serve: each <c>-m</c> (a file named by its file name, a store reference by what was typed; <c>--alias</c>
    /// names the first), then with <c>--models</c> every model in the store not already named (by its catalog alias, else its reference).
    /// </summary>
    private static List<ServedModel> Models(ParseResult p, string[] given, bool all, string? alias)
    {
        var models = new List<ServedModel>();
        foreach (var text in given)
        {
            string path = StoreCommands.ResolveModel(p, text);
            models.Add(File.Exists(text) ? ServedModel.ForFile(path) : new ServedModel(text, path));
        }
        if (all)
        {
            var store = StoreCommands.StoreOf(p);
            foreach (var m in store.List())
            {
                string path = store.BlobPath(m.Sha256);
                if (!File.Exists(path) || models.Any(s => s.Path == path)) continue;
                models.Add(new ServedModel(m.Aliases.FirstOrDefault() ?? m.Reference, path) { Aliases = [m.Reference, .. m.Aliases] });
            }
            if (models.Count == 0) throw new ArgumentException($"--models: the store ({store.Root}) holds no models; run `kaiyuan pull MODEL`, or pass -m");
        }
        if (models.Count == 0) throw new ArgumentException("no model given: pass -m MODEL (repeat it to serve several), or --models to serve the local store's");
        if (alias is not null) models[0] = models[0] with { Name = alias, Aliases = [.. models[0].Aliases, models[0].Name] };
        return models;
    }

    private static TimeSpan ParseKeepAlive(string text)
    {
        try
        {
            return KeepAlive.Parse(text);
        }
        catch (RequestException e)
        {
            throw new ArgumentException($"--keep-alive: {e.Message}", e);
        }
    }

    private static async Task<int> Serve(ServerOptions options)
    {
        if (options.MaxModels < 0) throw new ArgumentException("--max-models must be 0 (no limit) or more");
        if (options.Parallel < 1 || options.Parallel > 256) throw new ArgumentException("--parallel must be between 1 and 256");
        if (options.Port is < 0 or > 65535) throw new ArgumentException("--port must be between 0 and 65535");
        if (options.CacheRamMiB is < -1 or > 1L << 30) throw new ArgumentException("--cache-ram must be a size in MiB (0: no prefix caching)");
        if (options.ChatTemplateFile is { } file && !File.Exists(file)) throw new FileNotFoundException($"--chat-template-file: file not found: {file}");
        foreach (var m in options.Models.Count > 0 ? options.Models : [ServedModel.ForFile(options.ModelPath)])
            if (!File.Exists(m.Path)) throw new FileNotFoundException($"file not found: {m.Path}");
        try
        {
            KaiyuanServer.ListenHost(options.Host);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"--host: {e.Message}", e);
        }
        KaiyuanServer server;
        try
        {
            server = await KaiyuanServer.StartAsync(options);
        }
        catch (IOException e)
        {
            // Kestrel's bind failure ("address already in use") carries the address and port.
            throw new IOException($"cannot listen: {e.Message}", e);
        }
        await using var _ = server;
        if (server.Models.Count > 1)
        {
            string limit = options.MaxModels > 0 ? $", at most {options.MaxModels} loaded at once" : "";
            string keep = server.DefaultKeepAlive == KeepAlive.Forever ? "until stopped" : $"{server.DefaultKeepAlive.TotalSeconds:0} s after their last request";
            Console.Error.WriteLine($"kaiyuan: serving {server.Models.Count} models at {server.Address}: {string.Join(", ", server.Models.Select(m => m.Name))} " +
                                    $"(the first is the default; each loads on demand and stays {keep}{limit}) — Ctrl-C stops");
            await server.WaitForShutdownAsync();
            Console.Error.WriteLine("kaiyuan: stopping (letting running requests finish)…");
            await server.StopAsync();
            return 0;
        }
        Console.Error.WriteLine($"kaiyuan: serving {Path.GetFileName(options.ModelPath)} at {server.Address} (loading…)");
        try
        {
            await server.WaitReadyAsync();
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"cannot load {options.ModelPath}: {e.Message}", e);
        }
        var runtime = server.Runtime;
        string kv = runtime.Cache is { } pool
            ? $", KV memory up to {InfoCommand.Size((long)pool.CapacityBlocks * pool.BytesPerBlock)} as used{(pool.CachingEnabled ? " with prefix caching" : "")}"
            : "";
        Console.Error.WriteLine($"kaiyuan: model '{runtime.Name}' ready ({runtime.Description.Architecture}, {runtime.ChatFormat} chat format, " +
                                $"{options.Parallel} slots × {runtime.ContextLength} tokens{kv}) — open {server.Address} or use {server.Address}v1; Ctrl-C stops");
        await server.WaitForShutdownAsync();
        Console.Error.WriteLine("kaiyuan: stopping (letting running requests finish)…");
        await server.StopAsync();
        return 0;
    }

    /// <summary><c>kaiyuan bench serve</c>: aggregate tokens/s at 1, 4 and 8 concurrent streams over loopback HTTP.</summary>
    public static Command CreateBench()
    {
        var model = Arguments.Model();
        var gen = new Option<int>("--n-gen", "-n") { Description = "Tokens each stream generates", DefaultValueFactory = _ => 64 };
        var threads = Arguments.Threads();
        var streams = new Option<int[]>("--streams") { Description = "Concurrency levels", DefaultValueFactory = _ => [1, 4, 8], AllowMultipleArgumentsPerToken = true };
        var reps = new Option<int>("--repetitions", "-r") { Description = "Runs per level (the median is reported)", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("serve", "Measure the server's aggregate generation speed at 1, 4 and 8 concurrent streams") { model, gen, threads, streams, reps, json };
        cmd.SetAction(p => BenchServe(StoreCommands.ResolveModel(p, p.GetValue(model)!), p.GetValue(gen), p.GetValue(threads), p.GetValue(streams)!,
            p.GetValue(reps), p.GetValue(json)).GetAwaiter().GetResult());
        return cmd;
    }

    private static async Task<int> BenchServe(string path, int nGen, int threads, int[] levels, int reps, bool json)
    {
        if (nGen < 1 || reps < 1 || levels.Length == 0 || levels.Any(l => l < 1)) throw new ArgumentException("-n, -r and --streams must be ≥ 1");
        var options = new ServerOptions
        {
            ModelPath = path,
            Port = 0,
            Parallel = levels.Max(),
            Threads = threads,
            RequestLogging = false,
            MaxQueue = 1024,
        };
        await using var server = await KaiyuanServer.StartAsync(options);
        await server.WaitReadyAsync();
        int ctx = server.Runtime.ContextLength;
        nGen = Math.Min(nGen, ctx / 2);
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(10) };
        await Run(http, 1, Math.Min(nGen, 8));  // warm-up
        var results = new List<(int Streams, double Tps, int Tokens, double Seconds)>();
        foreach (int n in levels)
        {
            var runs = new List<(int Streams, double Tps, int Tokens, double Seconds)>();
            for (int r = 0; r < reps; r++)
            {
                var clock = Stopwatch.StartNew();
                int tokens = await Run(http, n, nGen);
                double seconds = clock.Elapsed.TotalSeconds;
                runs.Add((n, tokens / seconds, tokens, seconds));
            }
            results.Add(runs.OrderBy(x => x.Tps).ElementAt(runs.Count / 2));
        }
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(results.Select(r => new Dictionary<string, object>
            {
                ["streams"] = r.Streams,
                ["tokens"] = r.Tokens,
                ["seconds"] = Math.Round(r.Seconds, 3),
                ["tps"] = Math.Round(r.Tps, 2),
            })));
            return 0;
        }
        Console.WriteLine($"model: {Path.GetFileName(path)}, {nGen} tokens per stream, threads: {threads}, slots: {options.Parallel}, median of {reps} runs");
        foreach (var r in results)
            Console.WriteLine($"{r.Streams,3} stream(s): {r.Tps,10:F1} tokens/s aggregate ({r.Tokens} tokens in {r.Seconds:F2} s) ×{r.Tps / results[0].Tps:F2}");
        return 0;
    }

    /// <summary>Runs <paramref name="streams"/> streaming completions at once; returns the tokens generated.</summary>
    private static async Task<int> Run(HttpClient http, int streams, int nGen)
    {
        var tasks = Enumerable.Range(0, streams).Select(i => StreamingCompletion.PostAsync(http, "v1/completions", new Dictionary<string, object>
        {
            ["prompt"] = $"Once upon a time, story number {i} began",
            ["max_tokens"] = nGen,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
        }));
        return (await Task.WhenAll(tasks)).Sum(r => r.Usage.CompletionTokens);
    }
}
