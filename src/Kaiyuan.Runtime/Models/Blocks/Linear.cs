using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>A projection y = W x (+ b) over a batch of rows; the weight stays in the mapped file, or in a copy in the kernels' layout (<see cref="QuantMatrix.ForMultiply"/>).</summary>
internal sealed class Linear
{
    public Linear(GgufTensor weight, GgufTensor? bias = null, WeightCopies? copies = null)
    {
        Weight = QuantMatrix.ForMultiply(weight, copies);
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
        CheckSizes(x, tokens, y);
        MatMul.Multiply(Weight, x, tokens, y, ws.Bytes(MatMul.ScratchBytes(Weight, tokens)), pool);
        AddBias(y, tokens);
    }

    /// <summary>
    /// Two or three projections of one input (q, k and v; gate and up). A few tokens (decode) take one parallel pass for
    /// all of them (<see cref="MatMul.Group"/>: the threads woken once, the input quantized once per weight type) with
    /// the same bits as one after another; a prompt takes them in turn through the panel kernels.
    /// </summary>
    public static unsafe void ForwardTogether(ReadOnlySpan<float> x, int tokens, Workspace ws, WorkerPool pool,
        Linear a, Span<float> ya, Linear b, Span<float> yb, Linear? c = null, Span<float> yc = default)
    {
        if (tokens >= MatMul.PanelMinTokens)
        {
            // Through the panels in turn, the input quantized once for those of the first one's type.
            bool shareB = MatMul.CanShareInput(a.Weight, b.Weight, tokens), shareC = c is not null && MatMul.CanShareInput(a.Weight, c.Weight, tokens);
            a.CheckSizes(x, tokens, ya);
            b.CheckSizes(x, tokens, yb);
            c?.CheckSizes(x, tokens, yc);
            MatMul.MultiplyShared(x, tokens, ws.Bytes(MatMul.ScratchBytes(a.Weight, tokens)), pool, a.Weight, ya,
                shareB ? b.Weight : null, shareB ? yb : default, shareC ? c!.Weight : null, shareC ? yc : default);
            a.AddBias(ya, tokens);
            if (shareB) b.AddBias(yb, tokens);
            else b.Forward(x, tokens, yb, ws, pool);
            if (shareC) c!.AddBias(yc, tokens);
            else c?.Forward(x, tokens, yc, ws, pool);
            return;
        }
        a.CheckSizes(x, tokens, ya);
        b.CheckSizes(x, tokens, yb);
        c?.CheckSizes(x, tokens, yc);
        using (pool.Enter())
            fixed (float* input = x, outA = ya, outB = yb, outC = yc)
            {
                var group = pool.Job<MatMul.Group>();
                group.Clear();
                group.Add(a.Weight, input, tokens, outA);
                group.Add(b.Weight, input, tokens, outB);
                if (c is not null) group.Add(c.Weight, input, tokens, outC);
                group.Run(ws.Bytes(group.ScratchBytes()), pool);
            }
        a.AddBias(ya, tokens);
        b.AddBias(yb, tokens);
        c?.AddBias(yc, tokens);
    }

    private void CheckSizes(ReadOnlySpan<float> x, int tokens, Span<float> y)
    {
        if (x.Length < tokens * InFeatures || y.Length < tokens * OutFeatures) throw new ArgumentException($"{Name}: buffer sizes do not match");
    }

    private void AddBias(Span<float> y, int tokens)
    {
        if (Bias is not null)
            for (int t = 0; t < tokens; t++) VectorOps.Add(y.Slice(t * OutFeatures, OutFeatures), Bias);
    }
}
