using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Quantization;

/// <summary><c>kaiyuan quantize</c> through the real command line.</summary>
[Collection("Console")]
public sealed class QuantizeCommandTests
{
    [Fact]
    public void WritesTheMixAndPrintsThePlan()
    {
        var input = Fixtures.ModelPath("llama", "llama-f32.gguf");
        var output = Path.Combine(Path.GetTempPath(), $"kaiyuan-quantize-cli-{Guid.NewGuid():N}.gguf");
        try
        {
            var r = ConsoleRunner.Run("quantize", input, output, "bf16", "--threads", "2");
            Assert.True(r.Code == 0, r.Err);
            Assert.Contains("BF16", r.Out);
            Assert.Equal(File.ReadAllBytes(Fixtures.ModelPath("llama", "llama-bf16.gguf")), File.ReadAllBytes(output));

            var plan = ConsoleRunner.Run("quantize", input, output, "q4_k_m", "--dry-run");
            Assert.Equal(0, plan.Code);
            Assert.Contains("blk.1.ffn_down.weight", plan.Out);
            Assert.Matches(@"blk\.1\.ffn_down\.weight\s+F32\s+-> Q6_K", plan.Out);

            var bad = ConsoleRunner.Run("quantize", input, output, "q9_z");
            Assert.Equal(1, bad.Code);
            Assert.Contains("unknown quantization type 'q9_z'", bad.Err);
        }
        finally
        {
            File.Delete(output);
        }
    }
}
