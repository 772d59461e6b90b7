using Kaiyuan.Hub;
using Kaiyuan.Store;

namespace Kaiyuan.Tests.Hub;

public sealed class ModelReferenceTests
{
    private static readonly ModelCatalog Catalog = ModelCatalog.BuiltIn();

    [Theory]
    [InlineData("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", null, "Q4_K_M", false)]
    [InlineData("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:q8_0", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", null, "Q8_0", true)]
    [InlineData("huggingface.co/bartowski/X-GGUF:latest", "bartowski/X-GGUF", null, "Q4_K_M", false)]
    [InlineData("hf.co/owner/repo/sub/model-Q5_K_M.gguf", "owner/repo", "sub/model-Q5_K_M.gguf", null, false)]
    [InlineData("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", null, "Q4_K_M", false)]
    [InlineData("qwen2.5:0.5b-q8_0", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", null, "Q8_0", true)]
    [InlineData("deepseek-r1:1.5b", "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF", null, "Q4_K_M", false)]
    public void Parses(string text, string repo, string? file, string? quant, bool explicitQuant)
    {
        var r = ModelReference.TryParse(text, Catalog);
        Assert.NotNull(r);
        Assert.Equal(repo, r.Repo);
        Assert.Equal(file, r.File);
        Assert.Equal(quant, r.Quant);
        Assert.Equal(explicitQuant, r.QuantExplicit);
    }

    [Theory]
    [InlineData("model.gguf")]
    [InlineData("hf.co/justowner")]
    [InlineData("hf.co/owner/repo/readme.md")]
    [InlineData("nosuchalias:7b")]
    public void RejectsNonReferences(string text) => Assert.Null(ModelReference.TryParse(text, Catalog));

    [Theory]
    [InlineData("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M")]
    [InlineData("Qwen3-0.6B-Q4_K_M.gguf", "Q4_K_M")]
    [InlineData("Qwen3-0.6B-UD-Q4_K_XL.gguf", "Q4_K_XL")]
    [InlineData("model.Q8_0.gguf", "Q8_0")]
    [InlineData("Llama-3.2-1B-Instruct-f16.gguf", "F16")]
    [InlineData("model.gguf", null)]
    public void QuantFromFileName(string file, string? quant) => Assert.Equal(quant, QuantNames.FromFileName(file));

    [Fact]
    public void QuantMatchingIsWholeToken()
    {
        Assert.False(QuantNames.Matches("x-Q4_K_M.gguf", "Q4_K"));
        Assert.True(QuantNames.Matches("x-q4_k_m.gguf", "Q4_K_M"));
        Assert.True(QuantNames.IsSplitPart("x-Q8_0-00001-of-00002.gguf"));
    }

    [Fact]
    public void AnExistingFilePathWins()
    {
        var path = Path.GetTempFileName();
        try
        {
            var store = new ModelStore(Path.Combine(Path.GetTempPath(), "kaiyuan-test-store-" + Guid.NewGuid().ToString("N")));
            Assert.Equal(Path.GetFullPath(path), ModelReference.Resolve(path, store));
            var e = Assert.Throws<FileNotFoundException>(() => ModelReference.Resolve(path + ".missing.gguf", store));
            Assert.Contains("file not found", e.Message);
            var notPulled = Assert.Throws<ModelNotFoundException>(() => ModelReference.Resolve("qwen2.5:0.5b", store));
            Assert.Contains("not in the local store", notPulled.Message);
            Assert.Contains("kaiyuan pull qwen2.5:0.5b", notPulled.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
