using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Kaiyuan.AspNetCore;
using Kaiyuan.Kernels;
using Kaiyuan.Tensors;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan bench prefix</c>: what prefix caching saves, measured over loopback HTTP against an in-process server.
/// A: one request with a long prefix, then repeats that share it with other suffixes (TTFT first vs repeat).
/// B: a multi-turn chat that resends its whole history each turn (prompt, cached tokens and TTFT per turn).
/// Prefill work is Σ(prompt − cached) from the responses' usage, or the server's <c>kaiyuan_prefill_tokens_total</c>
/// when it has one; the KV figures come from <c>/metrics</c> at the end.
/// </summary>
internal static class PrefixBenchCommand
{
    private const int SharedMaxTokens = 8, ChatMaxTokens = 32, MinRepeats = 3, SystemPromptTokens = 300, Seed = 14;

    public static Command Create()
    {
        var model = Arguments.Model();
        var prefix = new Option<int>("--prefix") { Description = "Tokens of the shared prefix", DefaultValueFactory = _ => 4096 };
        var suffix = new Option<int>("--suffix") { Description = "Tokens each request adds after the prefix", DefaultValueFactory = _ => 64 };
        var turns = new Option<int>("--turns") { Description = "Turns of the multi-turn chat", DefaultValueFactory = _ => 8 };
        var streams = new Option<int>("--streams") { Description = "Repeat requests sent at once (also the server's slots)", DefaultValueFactory = _ => 1 };
        var longPrompt = new Option<int>("--long")
        {
            Description = "Also send a prompt of this many tokens while two streams decode, and measure their inter-token latency (0: skip)",
            DefaultValueFactory = _ => 0,
        };
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        ctxSize.Description = "Context size in tokens (default: enough for the runs)";
        var prefillPriority = Arguments.PrefillPriority();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        Arguments.Range(prefix, 1, 1 << 20, "the prefix must be 1 to 1048576 tokens");
        Arguments.Range(suffix, 1, 1 << 16, "the suffix must be 1 to 65536 tokens");
        Arguments.Range(turns, 1, 1000, "the chat must have 1 to 1000 turns");
        Arguments.Range(streams, 1, 256, "1 to 256 requests can be sent at once");
        Arguments.Range(longPrompt, 0, 1 << 20, "the long prompt must be 0 (none) to 1048576 tokens");
        var cmd = new Command("prefix", "Measure prefix caching: TTFT of repeats that share a long prefix, prefill work of a multi-turn chat")
        {
            model, prefix, suffix, turns, streams, longPrompt, threads, ctxSize, prefillPriority, json,
        };
        cmd.SetAction(p =>
        {
            var settings = new Settings(StoreCommands.ResolveModel(p, p.GetValue(model)!), p.GetValue(prefix), p.GetValue(suffix), p.GetValue(turns),
                p.GetValue(streams), p.GetValue(threads), p.GetValue(ctxSize), p.GetValue(longPrompt), p.GetValue(prefillPriority) == "low");
            return Run(settings, p.GetValue(json), p.InvocationConfiguration.Output).GetAwaiter().GetResult();
        });
        return cmd;
    }

    private sealed record Settings(string ModelPath, int Prefix, int Suffix, int Turns, int Streams, int Threads, int ContextSize, int Long, bool LowPriorityPrefill);

    private sealed record Turn(int PromptTokens, int CachedTokens, int CompletionTokens, double TtftMs);

    /// <summary>Prefill work of one part: from the server's counter when it has one, else from the usage the responses reported.</summary>
    private sealed record Work(int PromptTokens, int CachedTokens, long FromUsage, long? FromMetric)
    {
        public long Computed => FromMetric ?? FromUsage;
    }

    private static async Task<int> Run(Settings s, bool json, TextWriter output)
    {
        if (!File.Exists(s.ModelPath)) throw new FileNotFoundException($"file not found: {s.ModelPath}");
        int ctx = s.ContextSize > 0 ? s.ContextSize : DefaultContext(s);
        if (s.Prefix + s.Suffix + SharedMaxTokens > ctx)
            throw new ArgumentException($"--prefix {s.Prefix} + --suffix {s.Suffix} + {SharedMaxTokens} generated tokens do not fit --ctx-size {ctx}");
        if (s.Long + 1 >= ctx) throw new ArgumentException($"--long {s.Long} does not fit --ctx-size {ctx}");
        var options = new ServerOptions
        {
            ModelPath = s.ModelPath,
            Port = 0,
            // Part C needs a slot for the long prompt beside its two streams.
            Parallel = Math.Max(s.Streams, s.Long > 0 ? 3 : 2),
            Threads = s.Threads,
            ContextSize = ctx,
            RequestLogging = false,
            MaxQueue = Math.Max(64, 2 * s.Streams),
            LowPriorityPrefill = s.LowPriorityPrefill,
        };
        await using var server = await KaiyuanServer.StartAsync(options);
        try
        {
            await server.WaitReadyAsync();
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"cannot load {s.ModelPath}: {e.Message}", e);
        }
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromHours(1) };
        var random = new Random(Seed);
        int[] vocabulary = await OrdinaryTokensAsync(http);
        int[] prefix = Draw(random, vocabulary, s.Prefix);
        await WarmUpAsync(http, vocabulary, prefix[0]);

        var before = await MetricsAsync(http);
        var (first, repeats) = await SharedPrefixAsync(http, random, vocabulary, prefix, s.Suffix, s.Streams);
        var middle = await MetricsAsync(http);
        var turns = await ChatAsync(http, random, s.Turns);
        var after = await MetricsAsync(http);
        var longPrompt = s.Long > 0 ? await LongPromptProbe.RunAsync(http, random, vocabulary, s.Long, ctx) : null;

        var sharedWork = WorkOf([first.Usage, .. repeats.Select(r => r.Usage)], before, middle);
        var chatWork = WorkOf(turns.Select(t => new TokenUsage(t.PromptTokens, t.CompletionTokens, t.CachedTokens)).ToList(), middle, after);
        var runtime = server.Runtime;
        double repeatTtft = Median(repeats.Select(r => r.TtftMs));
        double ratio = first.TtftMs > 0 ? repeatTtft / first.TtftMs : 0;
        var last = turns[^1];
        int distinct = last.PromptTokens + last.CompletionTokens;
        double chatRatio = distinct > 0 ? (double)chatWork.Computed / distinct : 0;
        var kv = KvFigures(after);
        // What a fixed slab per slot would reserve, against what the paged pool holds (at the end of parts A and B).
        var pool = runtime.Cache;
        long slab = pool is null ? 0 : (long)options.Parallel * runtime.ContextLength * pool.BytesPerBlock / pool.BlockTokens;
        Dictionary<string, object>? longFigures = longPrompt is null ? null : new()
        {
            ["prompt_tokens"] = longPrompt.PromptTokens,
            ["first_byte_ms"] = Math.Round(longPrompt.FirstByteMs, 2),
            ["ttft_ms"] = Math.Round(longPrompt.TtftMs, 2),
            ["itl_idle_p50_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.IdleItl, 0.5), 2),
            ["itl_idle_p95_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.IdleItl, 0.95), 2),
            ["itl_loaded_p50_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.LoadedItl, 0.5), 2),
            ["itl_loaded_p95_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.LoadedItl, 0.95), 2),
            ["itl_p95_over_idle_p50"] = Math.Round(LongPromptProbe.Percentile(longPrompt.LoadedItl, 0.95) / LongPromptProbe.Percentile(longPrompt.IdleItl, 0.5), 3),
            ["itl_idle_after_p50_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.IdleAfterItl, 0.5), 2),
            ["itl_idle_after_p95_ms"] = Math.Round(LongPromptProbe.Percentile(longPrompt.IdleAfterItl, 0.95), 2),
            ["loaded_gaps"] = longPrompt.LoadedItl.Length,
            ["prefill_priority"] = s.LowPriorityPrefill ? "low" : "normal",
        };

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = Path.GetFileName(s.ModelPath),
                ["architecture"] = runtime.Description.Architecture,
                ["file_type"] = runtime.Description.FileType,
                ["model_bytes"] = runtime.Description.FileSize,
                ["parameters"] = runtime.Description.ParameterCount,
                ["cpu"] = CpuName(),
                ["cores"] = Environment.ProcessorCount,
                ["threads"] = s.Threads,
                ["kernels"] = KernelBenchmarks.Tier,
                ["slots"] = options.Parallel,
                ["ctx_size"] = runtime.ContextLength,
                ["prefix_tokens"] = s.Prefix,
                ["suffix_tokens"] = s.Suffix,
                ["streams"] = s.Streams,
                ["repeats"] = repeats.Count,
                ["ttft_first_ms"] = Math.Round(first.TtftMs, 2),
                ["ttft_repeat_ms"] = Math.Round(repeatTtft, 2),
                ["ttft_ratio"] = Math.Round(ratio, 4),
                ["ttft_repeats_ms"] = repeats.Select(r => Math.Round(r.TtftMs, 2)).ToArray(),
                ["cached_tokens_first"] = first.Usage.CachedTokens,
                ["cached_tokens_repeat"] = Median(repeats.Select(r => (double)r.Usage.CachedTokens)),
                ["shared_prefill_tokens_computed"] = sharedWork.Computed,
                ["prefill_tokens_computed"] = sharedWork.Computed + chatWork.Computed,
                ["prefill_tokens_from_usage"] = sharedWork.FromUsage + chatWork.FromUsage,
                ["prefill_tokens_source"] = sharedWork.FromMetric is null ? "usage" : "metric",
                ["prompt_tokens_total"] = sharedWork.PromptTokens + chatWork.PromptTokens,
                ["cached_tokens_total"] = sharedWork.CachedTokens + chatWork.CachedTokens,
                ["chat"] = new Dictionary<string, object>
                {
                    ["turns"] = turns.Select(t => new Dictionary<string, object>
                    {
                        ["prompt_tokens"] = t.PromptTokens,
                        ["cached_tokens"] = t.CachedTokens,
                        ["completion_tokens"] = t.CompletionTokens,
                        ["ttft_ms"] = Math.Round(t.TtftMs, 2),
                    }).ToArray(),
                    ["prefill_tokens_computed"] = chatWork.Computed,
                    ["distinct_tokens"] = distinct,
                    ["prefill_ratio"] = Math.Round(chatRatio, 4),
                },
                ["kv"] = kv,
                ["kv_bytes_fixed_slabs"] = slab,
                ["long"] = longFigures!,
            }));
            return 0;
        }

        var c = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(c, $"model: {Path.GetFileName(s.ModelPath)} ({runtime.Description.Architecture}, {runtime.Description.FileType}, {InfoCommand.Size(runtime.Description.FileSize)}), " +
                                          $"threads: {s.Threads} of {Environment.ProcessorCount} cores ({CpuName()}, kernels: {KernelBenchmarks.Tier}), slots: {options.Parallel}, context: {runtime.ContextLength}"));
        output.WriteLine(string.Create(c, $"shared prefix: {s.Prefix} + {s.Suffix} tokens, {repeats.Count} repeats, {s.Streams} at a time, {SharedMaxTokens} tokens generated each"));
        output.WriteLine(string.Create(c, $"  first   TTFT {first.TtftMs,10:F1} ms   cached {first.Usage.CachedTokens} of {first.Usage.PromptTokens}"));
        output.WriteLine(string.Create(c, $"  repeat  TTFT {repeatTtft,10:F1} ms   cached {Median(repeats.Select(r => (double)r.Usage.CachedTokens))} of {repeats[0].Usage.PromptTokens} (medians)   ×{ratio:F3} of the first"));
        output.WriteLine(string.Create(c, $"chat: {s.Turns} turns, up to {ChatMaxTokens} tokens each"));
        output.WriteLine($"  {"turn",4} {"prompt",7} {"cached",7} {"TTFT ms",10}");
        for (int i = 0; i < turns.Count; i++)
            output.WriteLine(string.Create(c, $"  {i + 1,4} {turns[i].PromptTokens,7} {turns[i].CachedTokens,7} {turns[i].TtftMs,10:F1}"));
        output.WriteLine(string.Create(c, $"  prefill: {chatWork.Computed} tokens computed for a {distinct}-token conversation (×{chatRatio:F2})"));
        output.WriteLine(string.Create(c, $"all: {sharedWork.Computed + chatWork.Computed} of {sharedWork.PromptTokens + chatWork.PromptTokens} prompt tokens prefilled " +
                                          $"({(sharedWork.FromMetric is null ? "from usage" : "kaiyuan_prefill_tokens_total")})"));
        if (kv.Count > 0) output.WriteLine("kv: " + string.Join(", ", kv.Select(p => string.Create(c, $"{p.Key} {p.Value}"))));
        if (pool is not null)
            output.WriteLine(string.Create(c, $"kv memory: {InfoCommand.Size(pool.ResidentBytes)} resident; fixed slabs for {options.Parallel} slots × {runtime.ContextLength} tokens would be {InfoCommand.Size(slab)}"));
        if (longFigures is not null)
            output.WriteLine(string.Create(c, $"long prompt: {longPrompt!.PromptTokens} tokens, first byte {longFigures["first_byte_ms"]} ms, TTFT {longFigures["ttft_ms"]} ms; " +
                                              $"two streams' inter-token latency p50/p95 {longFigures["itl_idle_p50_ms"]}/{longFigures["itl_idle_p95_ms"]} ms idle, " +
                                              $"{longFigures["itl_loaded_p50_ms"]}/{longFigures["itl_loaded_p95_ms"]} ms while it prefilled ({longPrompt.LoadedItl.Length} gaps; p95 ×{longFigures["itl_p95_over_idle_p50"]} of idle p50), " +
                                              $"{longFigures["itl_idle_after_p50_ms"]}/{longFigures["itl_idle_after_p95_ms"]} ms idle again at their new depth"));
        return 0;
    }

    /// <summary>
    /// Enough context for part A (prompt and its generated tokens) and for the chat, whose length is estimated
    /// generously: the system prompt, then per turn a user message (~100 tokens on a small vocabulary), a reply of
    /// <see cref="ChatMaxTokens"/> (more once retokenized) and the template's markers.
    /// </summary>
    private static int DefaultContext(Settings s)
    {
        int shared = s.Prefix + s.Suffix + SharedMaxTokens;
        int chat = SystemPromptTokens + 64 + s.Turns * 160;
        return (Math.Max(Math.Max(shared, chat), s.Long + 256) + 255) / 256 * 256;
    }

    /// <summary>Part A: the first request with the prefix, then rounds of <paramref name="streams"/> concurrent repeats with other suffixes.</summary>
    private static async Task<(StreamedCompletion First, List<StreamedCompletion> Repeats)> SharedPrefixAsync(HttpClient http, Random random,
        int[] vocabulary, int[] prefix, int suffixLength, int streams)
    {
        // Suffixes start with different tokens (while the vocabulary allows), so no two requests share more than the prefix.
        var starts = new HashSet<int>();
        int[] Prompt()
        {
            int[] suffix = Draw(random, vocabulary, suffixLength);
            while (!starts.Add(suffix[0]) && starts.Count < vocabulary.Length) suffix[0] = vocabulary[random.Next(vocabulary.Length)];
            return [.. prefix, .. suffix];
        }
        var first = await CompleteAsync(http, Prompt());
        var repeats = new List<StreamedCompletion>();
        for (int round = 0; round < (MinRepeats + streams - 1) / streams; round++)
        {
            var prompts = Enumerable.Range(0, streams).Select(_ => Prompt()).ToList();
            repeats.AddRange(await Task.WhenAll(prompts.Select(p => CompleteAsync(http, p))));
        }
        return (first, repeats);
    }

    private static Task<StreamedCompletion> CompleteAsync(HttpClient http, int[] prompt, int maxTokens = SharedMaxTokens) =>
        StreamingCompletion.PostAsync(http, "v1/completions", new Dictionary<string, object>
        {
            ["prompt"] = prompt,
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
        });

    /// <summary>Part B: each turn sends the whole conversation so far (the replies as the server gave them) plus a new user message.</summary>
    private static async Task<List<Turn>> ChatAsync(HttpClient http, Random random, int turns)
    {
        var messages = new List<Dictionary<string, string>> { Message("system", await SystemPromptAsync(http, random)) };
        var results = new List<Turn>();
        for (int turn = 1; turn <= turns; turn++)
        {
            messages.Add(Message("user", $"Question {turn}: {Sentence(random)} {Sentence(random)[..^1]}?"));
            StreamedCompletion reply;
            try
            {
                reply = await StreamingCompletion.PostAsync(http, "v1/chat/completions", new Dictionary<string, object>
                {
                    ["messages"] = messages,
                    ["max_tokens"] = ChatMaxTokens,
                    ["temperature"] = 0,
                }, collectText: true);
            }
            catch (HttpRequestException e)
            {
                throw new InvalidOperationException($"chat turn {turn}: {e.Message}", e);
            }
            results.Add(new Turn(reply.Usage.PromptTokens, reply.Usage.CachedTokens, reply.Usage.CompletionTokens, reply.TtftMs));
            messages.Add(Message("assistant", reply.Text));
        }
        return results;
    }

    private static Dictionary<string, string> Message(string role, string content) => new() { ["role"] = role, ["content"] = content };

    /// <summary>About <see cref="SystemPromptTokens"/> tokens of seeded prose: sentences, cut to that many tokens by the server's tokenizer.</summary>
    private static async Task<string> SystemPromptAsync(HttpClient http, Random random)
    {
        var text = new StringBuilder("You are a helpful assistant. Keep these notes in mind:");
        while (text.Length < SystemPromptTokens * 8) text.Append(' ').Append(Sentence(random));
        int[] ids = await TokenizeAsync(http, text.ToString());
        if (ids.Length <= SystemPromptTokens) return text.ToString();
        using var response = await PostJsonAsync(http, "detokenize", new Dictionary<string, object> { ["tokens"] = ids[..SystemPromptTokens] });
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("content").GetString()!;
    }

    /// <summary>Token ids of ordinary words (no control tokens), from the server's tokenizer.</summary>
    private static async Task<int[]> OrdinaryTokensAsync(HttpClient http)
    {
        int[] ids = (await TokenizeAsync(http, " " + string.Join(' ', Words))).Distinct().ToArray();
        return ids.Length >= 2 ? ids : throw new InvalidOperationException("the model's tokenizer gives fewer than 2 distinct tokens for plain English words");
    }

    /// <summary>A short request unlike the measured ones, so the first measured request does not pay for the JIT.</summary>
    private static async Task WarmUpAsync(HttpClient http, int[] vocabulary, int avoidFirst)
    {
        var prompt = Enumerable.Range(0, 32).Select(i => vocabulary[(i * 7 + 1) % vocabulary.Length]).ToArray();
        if (prompt[0] == avoidFirst) prompt[0] = vocabulary[0] == avoidFirst ? vocabulary[1] : vocabulary[0];
        await CompleteAsync(http, prompt, 2);
        await StreamingCompletion.PostAsync(http, "v1/chat/completions", new Dictionary<string, object>
        {
            ["messages"] = new[] { Message("user", "Hello.") },
            ["max_tokens"] = 2,
            ["temperature"] = 0,
        });
    }

    private static async Task<int[]> TokenizeAsync(HttpClient http, string text)
    {
        using var response = await PostJsonAsync(http, "tokenize", new Dictionary<string, object> { ["content"] = text, ["add_special"] = false });
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    private static async Task<HttpResponseMessage> PostJsonAsync(HttpClient http, string path, Dictionary<string, object> body)
    {
        var response = await http.PostAsJsonAsync(path, body);
        if (response.IsSuccessStatusCode) return response;
        using (response)
            throw new HttpRequestException($"/{path}: {(int)response.StatusCode} {StreamingCompletion.ErrorMessage(await response.Content.ReadAsStringAsync())}");
    }

    private static async Task<List<MetricSample>> MetricsAsync(HttpClient http) => PrometheusText.Parse(await http.GetStringAsync("metrics"));

    private static Work WorkOf(IReadOnlyList<TokenUsage> usages, List<MetricSample> before, List<MetricSample> after)
    {
        const string counter = "kaiyuan_prefill_tokens_total";
        long? metric = PrometheusText.Sum(before, counter) is { } b && PrometheusText.Sum(after, counter) is { } a ? (long)(a - b) : null;
        return new Work(usages.Sum(u => u.PromptTokens), usages.Sum(u => u.CachedTokens), usages.Sum(u => (long)u.PromptTokens - u.CachedTokens), metric);
    }

    /// <summary>
    /// The server's KV and prefix-cache figures, whichever it has: <c>kaiyuan_kv_*</c>, <c>kaiyuan_prefix_cache_*</c> and
    /// <c>kaiyuan_prefill_tokens_total</c>, named without the <c>kaiyuan_</c> (<c>kaiyuan_kv_</c>) prefix and with their label
    /// values appended: <c>kaiyuan_kv_blocks{state="used"}</c> is <c>blocks_used</c>.
    /// </summary>
    internal static Dictionary<string, object> KvFigures(IEnumerable<MetricSample> samples)
    {
        var figures = new Dictionary<string, object>();
        foreach (var sample in samples)
        {
            string? key = sample.Name switch
            {
                _ when sample.Name.EndsWith("_bucket", StringComparison.Ordinal) => null,
                _ when sample.Name.StartsWith("kaiyuan_kv_", StringComparison.Ordinal) => sample.Name["kaiyuan_kv_".Length..],
                _ when sample.Name.StartsWith("kaiyuan_prefix_cache_", StringComparison.Ordinal) || sample.Name == "kaiyuan_prefill_tokens_total" =>
                    sample.Name["kaiyuan_".Length..],
                _ => null,
            };
            if (key is null) continue;
            key = string.Join('_', [key, .. sample.Labels.Select(l => l.Value)]);
            figures[key] = double.IsFinite(sample.Value) && sample.Value == Math.Floor(sample.Value) && Math.Abs(sample.Value) < 1e15
                ? (long)sample.Value
                : double.IsFinite(sample.Value) ? Math.Round(sample.Value, 4) : sample.Value.ToString(CultureInfo.InvariantCulture);
        }
        return figures;
    }

    private static int[] Draw(Random random, int[] vocabulary, int count)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++) ids[i] = vocabulary[random.Next(vocabulary.Length)];
        return ids;
    }

    private static string Sentence(Random random)
    {
        var words = Enumerable.Range(0, random.Next(6, 15)).Select(_ => Words[random.Next(Words.Length)]).ToArray();
        words[0] = char.ToUpperInvariant(words[0][0]) + words[0][1..];
        return string.Join(' ', words) + ".";
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return 0;
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>The processor's name (Linux: /proc/cpuinfo), else its architecture.</summary>
    private static string CpuName()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is >= 0 and var colon)
                        return line[(colon + 1)..].Trim();
        }
        catch (IOException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
    }

    private static readonly string[] Words =
    [
        "the", "a", "small", "large", "quiet", "bright", "old", "new", "river", "city", "garden", "market", "window", "road", "house",
        "teacher", "student", "friend", "doctor", "farmer", "child", "family", "morning", "evening", "winter", "summer", "story", "letter",
        "book", "table", "chair", "light", "water", "bread", "music", "paper", "question", "answer", "idea", "plan", "problem", "reason",
        "walks", "reads", "writes", "builds", "finds", "keeps", "opens", "closes", "carries", "watches", "learns", "explains", "remembers",
        "near", "under", "over", "after", "before", "with", "without", "between", "through", "during", "about", "because", "while",
        "and", "but", "or", "so", "then", "always", "often", "sometimes", "never", "slowly", "carefully", "together", "again", "today",
        "green", "blue", "warm", "cold", "early", "late", "simple", "careful", "useful", "different", "important", "every", "many", "few",
        "people", "work", "time", "year", "day", "place", "world", "school", "country", "number", "part", "point", "group", "system",
    ];
}
