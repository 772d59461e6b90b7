using System.Text.Json;
using Kaiyuan.Tests.Models;

namespace Kaiyuan.Tests.Cli;

public class CliTests
{
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    [InlineData("qwen3moe")]
    [InlineData("deepseek2")]
    [InlineData("glm4")]
    [InlineData("glm4moe")]
    [InlineData("minimax-m2")]
    public void GenerateJsonReproducesGoldens(string folder)
    {
        var model = Fixtures.ModelPath(folder, $"{folder}-f32.gguf");
        var golden = Goldens.Load(folder, "f32")[1];
        var r = KaiyuanProcess.Run("generate", "-m", model, "--prompt-ids", string.Join(",", golden.PromptIds),
            "-n", golden.Ids.Length.ToString(), "--temp", "0", "--ignore-eos", "--json", "--logits", "-t", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines); // exactly one JSON object on stdout
        using var doc = JsonDocument.Parse(lines[0]);
        var root = doc.RootElement;
        Assert.Equal(golden.PromptIds, root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(golden.Ids, root.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(root.TryGetProperty("text", out _));
        var logits = root.GetProperty("logits").EnumerateArray().ToArray();
        Assert.Equal(golden.Ids.Length, logits.Length);
        for (int i = 0; i < logits.Length; i++)
        {
            var row = logits[i].EnumerateArray().Select(e => e.GetSingle()).ToArray();
            Assert.True(Goldens.MaxAbsDiff(row, golden.Logits[i]) <= 1e-3f, $"step {i}");
        }
    }

    [Fact]
    public void InfoNamesArchitectureAndMlaHyperParameters()
    {
        var r = KaiyuanProcess.Run("info", Fixtures.ModelPath("deepseek2", "deepseek2-q4_k_m.gguf"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("architecture:  deepseek2", r.Stdout);
        Assert.Contains("8 experts, 2 active, 1 shared", r.Stdout);
        Assert.Contains("q_lora_rank 256, kv_lora_rank 256", r.Stdout);
        // MLA caches the latent (256) and the rotary key (32) per layer: 2 layers × 288 floats × 4 bytes.
        Assert.Contains("2,304 bytes per token", r.Stdout);
        Assert.Contains("blk.1.ffn_gate_exps.weight", r.Stdout);
    }

    [Fact]
    public void InfoShowsAHybridModelsLayerPatternAndStateBytes()
    {
        var r = KaiyuanProcess.Run("info", Fixtures.ModelPath("qwen35", "qwen35-q8_0.gguf"), "--no-tensors");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("layer pattern: LLLA", r.Stdout);
        // One full-attention layer caches K and V (2 heads × 64 each); three linear layers keep a 3-row window of 256
        // channels and 4 heads' 32 × 32 states.
        Assert.Contains("1,024 bytes per token", r.Stdout);
        Assert.Contains("58,368 bytes per sequence", r.Stdout);
    }

    [Fact]
    public void BadArgumentsGiveOneLineAndNonZeroExit()
    {
        var missing = KaiyuanProcess.Run("generate", "-m", "/nonexistent/model.gguf", "--prompt-ids", "1,2");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Single(missing.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("/nonexistent/model.gguf", missing.Stderr);

        var both = KaiyuanProcess.Run("generate", "-m", "x.gguf");
        Assert.NotEqual(0, both.ExitCode);
        Assert.Contains("--prompt", both.Stderr);

        var unknown = KaiyuanProcess.Run("frobnicate");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Single(unknown.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void DamagedModelFileIsAOneLineError()
    {
        var path = Path.GetTempFileName();
        try
        {
            var bytes = File.ReadAllBytes(Fixtures.ModelPath("llama", "llama-q4_0.gguf"));
            File.WriteAllBytes(path, bytes[..5000]);
            var r = KaiyuanProcess.Run("info", path);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.DoesNotContain("   at ", r.Stderr);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void BenchJsonHasTheContractFields()
    {
        var r = KaiyuanProcess.Run("bench", "-m", Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf"), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json", "--no-bandwidth");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        foreach (var key in new[] { "pp_tps", "pp_std", "tg_tps", "tg_std", "threads", "model_bytes", "decode_bytes_per_token", "peak_rss_bytes", "rss_file_bytes", "rss_anon_bytes", "kv_cache_bytes", "kernels" })
            Assert.True(doc.RootElement.TryGetProperty(key, out _), key);
        Assert.Contains(doc.RootElement.GetProperty("kernels").GetString(), new[] { "avx512", "avx-vnni", "avx2", "arm64-neon-dot", "scalar" });
        Assert.True(doc.RootElement.GetProperty("tg_tps").GetDouble() > 0);
        // The runtime alone is tens of MB; the tiny model and its cache are far smaller than that.
        Assert.True(doc.RootElement.GetProperty("peak_rss_bytes").GetInt64() > 10_000_000);
        Assert.True(doc.RootElement.GetProperty("kv_cache_bytes").GetInt64() > 0);
        // The resident part of the mapped file is the file's pages that were read: all of them after decoding, no more.
        long fileBytes = doc.RootElement.GetProperty("rss_file_bytes").GetInt64(), modelBytes = doc.RootElement.GetProperty("model_bytes").GetInt64();
        Assert.InRange(fileBytes, modelBytes / 2, new FileInfo(Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf")).Length + 4096);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("bandwidth_gb_s").ValueKind);
    }

    /// <summary>
    /// <c>bench --lookup</c>: plain and prompt-lookup generation from the built-in code-edit prompt, with the same
    /// output (a random-weight model copies little, so few drafts are taken, but every field is there).
    /// </summary>
    [Fact]
    public void BenchLookupComparesPlainAndLookupGeneration()
    {
        var r = KaiyuanProcess.Run("bench", "-m", Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf"), "-p", "0", "-n", "24", "-r", "1", "-t", "1", "--json", "--no-bandwidth", "--lookup");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("lookup_prompt_tokens").GetInt32() > 300);
        Assert.True(root.GetProperty("tg_lookup_tps").GetDouble() > 0 && root.GetProperty("tg_lookup_baseline_tps").GetDouble() > 0);
        Assert.True(root.GetProperty("lookup_output_identical").GetBoolean());
        long drafted = root.GetProperty("lookup_tokens").GetInt64(), accepted = root.GetProperty("lookup_tokens_accepted").GetInt64();
        Assert.InRange(accepted, 0, drafted);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("tg_draft_tps").ValueKind);

        var refused = KaiyuanProcess.Run("bench", "-m", Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf"), "--lookup-prompt", "x.txt");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("--lookup-prompt needs --lookup", refused.Stderr);
    }

    /// <summary>
    /// <c>synth --nextn</c> then <c>bench --mtp</c> and <c>generate --mtp</c>: the NextN layer drafts (a copying one, whose
    /// drafts are taken) with the same output; a file without the layer, or two kinds of speculation at once, are refused.
    /// </summary>
    [Fact]
    public void MultiTokenPredictionFromSynthToBenchAndGenerate()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-cli-mtp-{Guid.NewGuid():N}.gguf");
        try
        {
            var synth = KaiyuanProcess.Run("synth", "--like", "tiny", "--copying", "--nextn", "--type", "q8_0", "-t", "2",
                "--vocab", Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"), "-o", path);
            Assert.True(synth.ExitCode == 0, synth.Stderr);
            var info = KaiyuanProcess.Run("info", path);
            Assert.Contains("1 NextN layer(s) after the main stack (--mtp drafts with it)", info.Stdout);

            var r = KaiyuanProcess.Run("bench", "-m", path, "-p", "0", "-n", "32", "-r", "1", "-t", "1", "--json", "--no-bandwidth", "--mtp");
            Assert.True(r.ExitCode == 0, r.Stderr);
            using var doc = JsonDocument.Parse(r.Stdout);
            var root = doc.RootElement;
            Assert.True(root.GetProperty("tg_mtp_tps").GetDouble() > 0 && root.GetProperty("tg_mtp_baseline_tps").GetDouble() > 0);
            Assert.True(root.GetProperty("mtp_speedup").GetDouble() > 0);
            Assert.True(root.GetProperty("mtp_output_identical").GetBoolean());
            long drafted = root.GetProperty("mtp_tokens").GetInt64(), accepted = root.GetProperty("mtp_tokens_accepted").GetInt64();
            Assert.True(drafted > 0 && accepted > drafted / 2, $"{accepted} of {drafted}");
            Assert.InRange(root.GetProperty("mtp_acceptance_rate").GetDouble(), 0.5, 1);
            Assert.Equal(JsonValueKind.Null, root.GetProperty("tg_lookup_tps").ValueKind);

            var generated = KaiyuanProcess.Run("generate", "-m", path, "--prompt-ids", "5,6,7,8,9,5,6,7", "-n", "12", "--temp", "0", "-t", "1", "--mtp");
            Assert.True(generated.ExitCode == 0, generated.Stderr);
            Assert.Contains("drafts:", generated.Stderr);

            var both = KaiyuanProcess.Run("generate", "-m", path, "--prompt-ids", "5,6", "--mtp", "--lookup");
            Assert.NotEqual(0, both.ExitCode);
            Assert.Contains("choose one of --lookup, --model-draft and --mtp", both.Stderr);
            var without = KaiyuanProcess.Run("generate", "-m", Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf"), "--prompt-ids", "5,6", "-n", "4", "--mtp");
            Assert.NotEqual(0, without.ExitCode);
            Assert.Contains("no multi-token-prediction (NextN) layer", without.Stderr);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MemoryBenchMeasuresAReadRate()
    {
        var r = KaiyuanProcess.Run("bench", "memory", "--size", "64", "-r", "2", "-t", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("threads").GetInt32());
        Assert.Equal(64L << 20, doc.RootElement.GetProperty("bytes").GetInt64());
        double median = doc.RootElement.GetProperty("median_gb_s").GetDouble(), best = doc.RootElement.GetProperty("best_gb_s").GetDouble();
        Assert.True(median > 0.1 && best >= median, $"{median} / {best}");
    }

    /// <summary>
    /// A decode step reads a mixture-of-experts layer's active experts only (2 of qwen3moe's 8) and one row of the
    /// token embeddings: the per-token bytes the bandwidth share is computed from, spelled out from the file's tensors.
    /// </summary>
    [Fact]
    public void DecodeBytesCountOnlyTheActiveExperts()
    {
        using var model = Kaiyuan.Models.ModelLoader.Load(Fixtures.ModelPath("qwen3moe", "qwen3moe-q4_k_m.gguf"));
        var tensors = model.File.Tensors;
        long experts = tensors.Where(t => t.Name.EndsWith("_exps.weight", StringComparison.Ordinal)).Sum(t => t.ByteSize);
        long embeddings = tensors.Single(t => t.Name == "token_embd.weight").ByteSize;
        long rest = tensors.Sum(t => t.ByteSize) - experts - embeddings;
        Assert.True(experts > 0 && tensors.Any(t => t.Name == "output.weight"));
        Assert.Equal((8, 2), (model.Shape.ExpertCount, model.Shape.ExpertUsedCount));
        long expected = rest + experts * 2 / 8 + embeddings / model.VocabSize;
        Assert.InRange(Kaiyuan.Cli.Commands.BenchCommand.DecodeWeightBytes(model), expected - 1, expected + 1);
    }
}

public class BenchMatMulCliTests
{
    [Fact]
    public void MatMulBenchReportsEveryTypeAndTokenCount()
    {
        var r = KaiyuanProcess.Run("bench", "matmul", "--types", "q8_0,q4_k", "--rows", "64", "--cols", "256", "--tokens", "1,8", "-r", "1", "-t", "1", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(["q8_0:1", "q8_0:8", "q4_k:1", "q4_k:8"], rows.Select(e => $"{e.GetProperty("type").GetString()}:{e.GetProperty("tokens").GetInt32()}"));
        Assert.All(rows, e => Assert.True(e.GetProperty("gmac_s").GetDouble() > 0 && e.GetProperty("weight_gb_s").GetDouble() > 0));
    }

    /// <summary>--cold: each multiply reads its own copy of the matrix (256 MiB of copies in all), and the JSON says so.</summary>
    [Fact]
    public void MatMulBenchReadsFromMemoryWhenCold()
    {
        var r = KaiyuanProcess.Run("bench", "matmul", "--types", "q5_0", "--rows", "96", "--cols", "896", "--tokens", "1", "-r", "3", "-t", "2", "--cold", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var row = Assert.Single(doc.RootElement.EnumerateArray());
        Assert.True(row.GetProperty("cold").GetBoolean());
        Assert.Equal("q5_0", row.GetProperty("type").GetString());
        Assert.True(row.GetProperty("gmac_s").GetDouble() > 0 && row.GetProperty("weight_gb_s").GetDouble() > 0);
    }

    [Fact]
    public void MatMulBenchNamesAColumnCountTheTypeCannotHold()
    {
        var r = KaiyuanProcess.Run("bench", "matmul", "--types", "q6_k", "--cols", "100");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("block size 256", r.Stderr);
    }
}

public class CliTextTests
{
    /// <summary>The README's newcomer command: aidreams260K writes its dream text, token-identical to llama.cpp.</summary>
    [Fact]
    public void GenerateFromTextMatchesLlamaCppGreedyText()
    {
        var golden = Goldens.Load("aidreams260K", "f32").First(c => c.Prompt == "text:In my dream");
        var r = KaiyuanProcess.Run("generate", "-m", Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"),
            "-p", "In my dream", "--temp", "0", "-n", golden.Ids.Length.ToString(), "--ignore-eos", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.Equal(golden.PromptIds, doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(golden.Ids, doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(golden.Text, doc.RootElement.GetProperty("text").GetString());

        var streamed = KaiyuanProcess.Run("generate", "-m", Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"),
            "-p", "In my dream", "--temp", "0", "-n", golden.Ids.Length.ToString(), "--ignore-eos");
        Assert.Equal(golden.Text, streamed.Stdout.TrimEnd('\n'));
        Assert.Contains("tokens/s", streamed.Stderr);
    }
}
