using System.CommandLine;
using System.Text.Json;
using Kaiyuan.Cli.Commands;

namespace Kaiyuan.Tests.Cli;

public class PrefixBenchCommandTests
{
    [Fact]
    public void JsonHasTheContractsFigures()
    {
        string model = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Kaiyuan.Cli.CommandLine.Build()
            .Parse(["bench", "prefix", "-m", model, "--prefix", "32", "--suffix", "4", "--turns", "2", "--streams", "2", "-t", "2", "--json"])
            .Invoke(new InvocationConfiguration { Output = output, Error = error });
        Assert.True(code == 0, error.ToString());
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        using var doc = JsonDocument.Parse(lines[0]);
        var root = doc.RootElement;

        foreach (string key in new[] { "ttft_first_ms", "ttft_repeat_ms", "ttft_ratio" })
            Assert.True(root.GetProperty(key).GetDouble() > 0, key);
        Assert.Equal(4, root.GetProperty("repeats").GetInt32());  // two rounds of two streams: at least 3 repeats
        long prompt = root.GetProperty("prompt_tokens_total").GetInt64();
        long computed = root.GetProperty("prefill_tokens_computed").GetInt64();
        Assert.InRange(computed, 0, prompt);
        Assert.True(prompt >= 5 * 36, $"prompt_tokens_total {prompt}: part A alone sends 5 prompts of 36 tokens");
        Assert.Equal(2, root.GetProperty("threads").GetInt32());
        Assert.Equal("llama", root.GetProperty("architecture").GetString());

        var chat = root.GetProperty("chat");
        var turns = chat.GetProperty("turns").EnumerateArray().ToArray();
        Assert.Equal(2, turns.Length);
        foreach (var turn in turns)
        {
            Assert.InRange(turn.GetProperty("cached_tokens").GetInt32(), 0, turn.GetProperty("prompt_tokens").GetInt32());
            Assert.True(turn.GetProperty("ttft_ms").GetDouble() > 0);
        }
        Assert.True(turns[1].GetProperty("prompt_tokens").GetInt32() > turns[0].GetProperty("prompt_tokens").GetInt32(), "the second turn resends the first");
        int distinct = chat.GetProperty("distinct_tokens").GetInt32();
        Assert.Equal(turns[1].GetProperty("prompt_tokens").GetInt32() + turns[1].GetProperty("completion_tokens").GetInt32(), distinct);
        long chatComputed = chat.GetProperty("prefill_tokens_computed").GetInt64();
        Assert.InRange(chatComputed, 0, computed);
        Assert.Equal(Math.Round((double)chatComputed / distinct, 4), chat.GetProperty("prefill_ratio").GetDouble(), 4);
        Assert.Equal(JsonValueKind.Object, root.GetProperty("kv").ValueKind);
    }

    [Fact]
    public void KvFiguresComeFromWhicheverMetricsTheServerHas()
    {
        var samples = PrometheusText.Parse("""
            # HELP kaiyuan_kv_blocks KV blocks by state.
            # TYPE kaiyuan_kv_blocks gauge
            kaiyuan_kv_blocks{state="used"} 12
            kaiyuan_kv_blocks{state="cached"} 30
            kaiyuan_kv_blocks{state="free"} 214
            kaiyuan_kv_bytes_resident 1.5e+07
            kaiyuan_kv_evictions_total 3
            kaiyuan_prefix_cache_hit_tokens_total 4096
            kaiyuan_prefill_tokens_total 5000 1700000000000
            kaiyuan_prompt_tokens_total 9096
            kaiyuan_time_to_first_token_seconds_bucket{le="0.005"} 0
            kaiyuan_requests_total{route="/v1/completions",status="200"} 4
            """);
        Assert.Equal(4, samples.Single(s => s.Name == "kaiyuan_requests_total").Value);
        Assert.Equal(5000, PrometheusText.Sum(samples, "kaiyuan_prefill_tokens_total"));
        Assert.Null(PrometheusText.Sum(samples, "kaiyuan_absent_total"));

        var kv = PrefixBenchCommand.KvFigures(samples);
        Assert.Equal(
            ["blocks_used", "blocks_cached", "blocks_free", "bytes_resident", "evictions_total", "prefix_cache_hit_tokens_total", "prefill_tokens_total"],
            kv.Keys);
        Assert.Equal(15_000_000L, kv["bytes_resident"]);
        Assert.Empty(PrefixBenchCommand.KvFigures(PrometheusText.Parse("kaiyuan_prompt_tokens_total 1\n")));
    }
}
