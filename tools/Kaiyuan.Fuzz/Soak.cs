using System.Diagnostics;
using System.Net;
using System.Text;

namespace Kaiyuan.Fuzz;

/// <summary>
/// Many mixed requests at once through a real server: streaming and not, across the OpenAI, Anthropic and Ollama
/// routes, with clients that cancel or disconnect at random points. Afterwards no slot, queue entry or KV block may
/// still be held, nothing may have answered 5xx, and the process's resident memory must be flat after warm-up.
/// </summary>
internal static class Soak
{
    public static async Task<bool> RunAsync(string fixtures, int requests, int concurrency, int seed)
    {
        // The prefix cache keeps finished requests' KV blocks up to --cache-ram by design: a small bound makes it fill during
        // warm-up, so growth after it is a leak.
        await using var server = await LoopbackServer.StartAsync(fixtures, parallel: 4, maxQueue: concurrency * 2, cacheRamMiB: 4);
        var statuses = new Dictionary<string, int>();
        var failures = new List<string>();
        int next = 0, done = 0;
        long warmRss = 0;
        var clock = Stopwatch.StartNew();

        async Task Client()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref next) - 1;
                if (i >= requests) return;
                string outcome;
                try
                {
                    outcome = await OneAsync(server.Http, new Random(seed * 1_000_003 + i));
                }
                catch (Exception e)
                {
                    outcome = "exception";
                    lock (failures) failures.Add($"request {i}: {e.GetType().Name}: {e.Message}");
                }
                lock (statuses)
                {
                    statuses[outcome] = statuses.GetValueOrDefault(outcome) + 1;
                    if (outcome.StartsWith('5') && outcome != "503") failures.Add($"request {i}: {outcome}");
                }
                int finished = Interlocked.Increment(ref done);
                if (finished == requests / 3) warmRss = Rss(); // warm: the JIT, the pools and the capped prefix cache have grown
                if (finished % Math.Max(1, requests / 10) == 0)
                    Console.WriteLine($"  {finished,7:N0} done: resident {Rss() >> 20} MiB, managed heap {GC.GetTotalMemory(false) >> 20} MiB, " +
                        $"KV {await server.MetricAsync("kaiyuan_kv_bytes_resident") / (1 << 20):F0} MiB");
            }
        }

        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(Client)));
        double seconds = clock.Elapsed.TotalSeconds;

        // Everything let go: slots, queue and KV blocks (a disconnected stream frees its slot at once, or soon after).
        double busy = 0, queued = 0, used = 0;
        for (int i = 0; i < 100; i++)
        {
            busy = await server.MetricAsync("kaiyuan_busy_slots");
            queued = await server.MetricAsync("kaiyuan_queue_depth");
            used = await server.MetricAsync("kaiyuan_kv_blocks{state=\"used\"}");
            if (busy == 0 && queued == 0 && used == 0) break;
            await Task.Delay(50);
        }
        if (busy != 0 || queued != 0 || used != 0) failures.Add($"held after the run: {busy} busy slots, {queued} queued, {used} KV blocks in use");
        long endRss = Rss();
        double growth = warmRss == 0 ? 0 : (double)(endRss - warmRss) / warmRss;
        if (growth > 0.10) failures.Add($"resident memory grew {growth:P1} after warm-up ({warmRss >> 20} -> {endRss >> 20} MiB)");

        Console.WriteLine($"soak: {requests:N0} requests at concurrency {concurrency} in {seconds:F1} s ({requests / seconds:N0}/s); " +
            string.Join(", ", statuses.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value:N0}")));
        Console.WriteLine($"soak: resident memory {warmRss >> 20} MiB after warm-up, {endRss >> 20} MiB at the end ({growth:+0.0%;-0.0%}); " +
            $"after the run {busy} busy slots, {queued} queued, {used} KV blocks in use");
        foreach (var f in failures.Take(20)) Console.WriteLine($"  failure: {f}");
        return failures.Count == 0;
    }

    private static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }

    /// <summary>One request of a random kind; returns its status, or "cancelled"/"disconnected" for the ones the client cut.</summary>
    private static async Task<string> OneAsync(HttpClient http, Random random)
    {
        int tokens = 1 + random.Next(48);
        string prompt = random.Next(4) switch { 0 => "Once upon a time", 1 => "In my dream", 2 => "The sky", _ => "I saw a" };
        var (route, body, stream) = random.Next(8) switch
        {
            0 or 1 => ("/v1/chat/completions", $$"""{"model":"m","messages":[{"role":"user","content":"{{prompt}}"}],"max_tokens":{{tokens}},"temperature":{{random.Next(3) * 0.5}},"seed":{{random.Next(100)}}}""", false),
            2 or 3 => ("/v1/chat/completions", $$$"""{"model":"m","messages":[{"role":"user","content":"{{{prompt}}}"}],"max_tokens":{{{tokens}}},"stream":true,"stream_options":{"include_usage":true}}""", true),
            4 => ("/v1/completions", $$"""{"model":"m","prompt":"{{prompt}}","max_tokens":{{tokens}},"logprobs":2}""", false),
            5 => ("/v1/embeddings", $$"""{"model":"m","input":["{{prompt}}","{{prompt}} again"]}""", false),
            6 => ("/api/chat", $$$"""{"model":"m","messages":[{"role":"user","content":"{{{prompt}}}"}],"options":{"num_predict":{{{tokens}}}}}""", true),
            _ => ("/v1/messages", $$"""{"model":"m","max_tokens":{{tokens}},"messages":[{"role":"user","content":"{{prompt}}"}],"stream":true}""", true),
        };
        // One in five clients gives up: a cancellation before or during the answer, or a stream dropped part way.
        int cut = random.Next(10);
        using var cancel = new CancellationTokenSource();
        if (cut == 0) cancel.CancelAfter(random.Next(1, 40));
        using var request = new HttpRequestMessage(HttpMethod.Post, route) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            string status = ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (response.StatusCode != HttpStatusCode.OK) return status;
            await using var content = await response.Content.ReadAsStreamAsync(cancel.Token);
            var buffer = new byte[256];
            int limit = stream && cut == 1 ? 1 + random.Next(6) : int.MaxValue;
            for (int reads = 0; reads < limit; reads++)
                if (await content.ReadAsync(buffer, cancel.Token) == 0) return status;
            return "disconnected"; // the response is disposed unread: the connection closes mid-stream
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            return "cancelled";
        }
    }
}
