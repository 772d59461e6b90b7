using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Models;

/// <summary>A model whose weights the loader copies into the kernels' layout (Q5_0's five-bit fields) computes what the file's layout does.</summary>
public class WeightCopyTests
{
    [Theory]
    [InlineData("llama", "q5_0")]
    [InlineData("qwen35", "q4_k_m")]
    public void CopiedWeightsGiveTheFileLayoutsLogitsToTheBit(string folder, string type)
    {
        if (!Q5Fields.Used) Assert.Skip("This machine has no AVX-512 VBMI; Q5_0 weights keep the file's layout here.");
        string path = Fixtures.ModelPath(folder, $"{folder}-{type}.gguf");
        using var pool = new WorkerPool(1);
        // Prefill (panels), then decode steps one token at a time and a three-token batch (tiles).
        int[] prompt = [1, 15, 320, 77, 9, 4, 501, 2, 33, 8, 100, 7];
        float[][] Run(bool copyWeights)
        {
            using var model = ModelLoader.Load(GgufFile.Open(path), copyWeights);
            var session = new InferenceSession(model, 64, pool);
            return [session.Evaluate(prompt).ToArray(), session.Evaluate([5]).ToArray(), session.Evaluate([6, 7, 8]).ToArray()];
        }
        var fileLayout = Run(copyWeights: false);
        var copied = Run(copyWeights: true);
        for (int step = 0; step < fileLayout.Length; step++)
            Assert.True(fileLayout[step].Select(BitConverter.SingleToInt32Bits).SequenceEqual(copied[step].Select(BitConverter.SingleToInt32Bits)),
                $"{folder}-{type}: step {step}'s logits differ");
    }

    [Fact]
    public void ForMultiplyRepacksQ5_0OnlyWhereAModelKeepsCopies()
    {
        if (!Q5Fields.Used) Assert.Skip("This machine has no AVX-512 VBMI; Q5_0 weights keep the file's layout here.");
        string path = Fixtures.ModelPath("llama", "llama-q5_0.gguf");
        using var file = GgufFile.Open(path);
        var tensor = file.Tensors.First(t => t.Type == GgmlType.Q5_0 && t.Dimensions.Length == 2);
        using var copies = new WeightCopies();
        Assert.Equal(Q5Fields.Type, QuantMatrix.ForMultiply(tensor, copies).Type);
        Assert.Equal(GgmlType.Q5_0, QuantMatrix.ForMultiply(tensor, copies: null).Type);
    }
}
