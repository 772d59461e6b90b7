using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Kaiyuan.Scheduling;

namespace Kaiyuan.AspNetCore;

/// <summary>Counters and histograms exposed at <c>/metrics</c> in the Prometheus text format.</summary>
internal sealed class ServerMetrics : IGenerationMetrics
{
    private readonly ConcurrentDictionary<(string Route, int Status), long> _requests = new();
    private long _promptTokens, _generatedTokens;
    private readonly Histogram _ttft = new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
    private readonly Histogram _itl = new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);

    public void Request(string route, int status) => _requests.AddOrUpdate((route, status), 1, (_, n) => n + 1);
    public void PromptTokens(int n) => Interlocked.Add(ref _promptTokens, n);
    public void GeneratedToken() => Interlocked.Increment(ref _generatedTokens);
    public void TimeToFirstToken(double seconds) => _ttft.Observe(seconds);
    public void InterTokenLatency(double seconds) => _itl.Observe(seconds);

    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);

    public string Render(SchedulerLoad? load, KvCacheReport? cache = null, SpeculationReport? speculation = null, DecodeThreadsReport? threads = null)
    {
        var sb = new StringBuilder();
        sb.Append("# HELP kaiyuan_requests_total HTTP requests by route and status.\n# TYPE kaiyuan_requests_total counter\n");
        foreach (var ((route, status), n) in _requests.OrderBy(p => p.Key.Route, StringComparer.Ordinal).ThenBy(p => p.Key.Status))
            sb.Append(CultureInfo.InvariantCulture, $"kaiyuan_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n");
        Counter(sb, "kaiyuan_prompt_tokens_total", "Prompt tokens processed.", Interlocked.Read(ref _promptTokens));
        Counter(sb, "kaiyuan_generated_tokens_total", "Tokens generated.", GeneratedTokens);
        _ttft.Render(sb, "kaiyuan_time_to_first_token_seconds", "Time from request to first generated token.");
        _itl.Render(sb, "kaiyuan_inter_token_latency_seconds", "Time between consecutive generated tokens of a stream.");
        if (load is { } l)
        {
            Gauge(sb, "kaiyuan_queue_depth", "Requests waiting for a slot.", l.QueueDepth);
            Gauge(sb, "kaiyuan_busy_slots", "Slots generating or prefilling.", l.BusySlots);
            Gauge(sb, "kaiyuan_slots", "Slots (--parallel).", l.Slots);
        }
        if (cache is { } c)
        {
            sb.Append("# HELP kaiyuan_kv_blocks KV cache blocks: used by running requests, cached for reuse, free.\n# TYPE kaiyuan_kv_blocks gauge\n");
            sb.Append(CultureInfo.InvariantCulture, $"kaiyuan_kv_blocks{{state=\"used\"}} {c.UsedBlocks}\nkaiyuan_kv_blocks{{state=\"cached\"}} {c.CachedBlocks}\nkaiyuan_kv_blocks{{state=\"free\"}} {c.FreeBlocks}\n");
            Gauge(sb, "kaiyuan_kv_block_tokens", "Tokens per KV cache block.", c.BlockTokens);
            Gauge(sb, "kaiyuan_kv_bytes_resident", "KV cache memory allocated now.", c.ResidentBytes);
            Gauge(sb, "kaiyuan_kv_bytes_capacity", "KV cache memory the pool may grow to (--cache-ram).", (long)c.CapacityBlocks * c.BytesPerBlock);
            Counter(sb, "kaiyuan_prefix_cache_hit_tokens_total", "Prompt tokens taken from the prefix cache instead of computed.", c.HitTokens);
            Counter(sb, "kaiyuan_prefill_tokens_total", "Prompt tokens computed.", c.PrefillTokens);
            Counter(sb, "kaiyuan_prompt_cache_loaded_tokens_total", "Prompt tokens whose KV rows were read from the prompt cache on disk (--prompt-cache).", c.PromptCacheTokens);
            Counter(sb, "kaiyuan_kv_evictions_total", "Cached KV blocks evicted to make room.", c.Evictions);
            Counter(sb, "kaiyuan_preemptions_total", "Requests paused because KV memory ran out (they resume from the cache).", c.Preemptions);
        }
        if (speculation is { } d)
        {
            Counter(sb, "kaiyuan_draft_tokens_total", "Tokens proposed by speculative decoding (--lookup or --model-draft) and verified.", d.DraftedTokens);
            Counter(sb, "kaiyuan_draft_tokens_accepted_total", "Proposed tokens the model produced itself (each one a step saved).", d.AcceptedTokens);
        }
        if (threads is { } t)
        {
            sb.Append("# HELP kaiyuan_decode_passes_total Decode steps (forward passes of at most 16 tokens) by the threads they ran on: fewer than kaiyuan_threads where timing showed fewer faster, as beside another busy process.\n# TYPE kaiyuan_decode_passes_total counter\n");
            for (int n = 1; n < t.PassesByThreads.Count; n++)
                sb.Append(CultureInfo.InvariantCulture, $"kaiyuan_decode_passes_total{{threads=\"{n}\"}} {t.PassesByThreads[n]}\n");
            Gauge(sb, "kaiyuan_threads", "Worker threads the model was given (--threads).", t.Threads);
        }
        return sb.ToString();
    }

    private static void Counter(StringBuilder sb, string name, string help, long value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");

    private static void Gauge(StringBuilder sb, string name, string help, long value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");

    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] _counts = new long[bounds.Length + 1];
        private long _count;
        private double _sum;
        private readonly Lock _lock = new();

        public void Observe(double value)
        {
            lock (_lock)
            {
                int i = 0;
                while (i < bounds.Length && value > bounds[i]) i++;
                _counts[i]++;
                _count++;
                _sum += value;
            }
        }

        public void Render(StringBuilder sb, string name, string help)
        {
            lock (_lock)
            {
                sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
                long cumulative = 0;
                for (int i = 0; i < bounds.Length; i++)
                {
                    cumulative += _counts[i];
                    sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"{bounds[i]}\"}} {cumulative}\n");
                }
                sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"+Inf\"}} {_count}\n{name}_sum {_sum}\n{name}_count {_count}\n");
            }
        }
    }
}
