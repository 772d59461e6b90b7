using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>A projection y = W x (+ b) over a batch of rows; the weight stays in the mapped file.</summary>
internal sealed class Linear
{
    public Linear(GgufTensor weight, GgufTensor? bias = null)
    {
        Weight = QuantMatrix.Of(weight);
        Name = weight.Name;
        if (bias is not null)
        {
            if (bias.ElementCount != Weight.Rows) throw new InvalidDataException($"bias '{bias.Name}' has {bias.ElementCount} values for {Weight.Rows} outputs");
            Bias = Blocks.Vectors.ReadF32(bias);
        }
    }

    public string Name { get; }
    public QuantMatrix Weight { get; }
    public float[]? Bias { get; }
    public int InFeatures => Weight.Columns;
    public int OutFeatures => Weight.Rows;

    public void Forward(ReadOnlySpan<float> x, int tokens, Span<float> y, Workspace ws, WorkerPool pool)
    {
        if (x.Length < tokens * InFeatures || y.Length < tokens * OutFeatures) throw new ArgumentException($"{Name}: buffer sizes do not match");
        MatMul.Multiply(Weight, x, tokens, y, ws.Bytes(MatMul.ScratchBytes(Weight, tokens)), pool);
        if (Bias is not null)
            for (int t = 0; t < tokens; t++) VectorOps.Add(y.Slice(t * OutFeatures, OutFeatures), Bias);
    }
}
