using Kaiyuan.Tensors;

namespace Kaiyuan.Kernels;

/// <summary>
/// y[t] = W · x[t] for a batch of activation rows. Each activation row is converted once to the format the weight
/// type's dot product consumes (int8 blocks for quantized weights, as llama.cpp does), then output rows are split
/// across threads; every weight row is read once per batch.
/// </summary>
public static unsafe class MatMul
{
    /// <summary>Bytes of scratch <see cref="Multiply"/> needs for a batch of <paramref name="tokens"/> rows.</summary>
    public static int ScratchBytes(QuantMatrix w, int tokens) =>
        tokens * (int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(w.Type), w.Columns);

    /// <param name="x">tokens × Columns activations.</param>
    /// <param name="y">tokens × Rows outputs.</param>
    /// <param name="scratch">at least <see cref="ScratchBytes"/> bytes.</param>
    public static void Multiply(QuantMatrix w, ReadOnlySpan<float> x, int tokens, Span<float> y, Span<byte> scratch, WorkerPool pool)
    {
        var actType = QuantizedDot.ActivationType(w.Type);
        int actBytes = (int)GgmlTypeInfo.RowBytes(actType, w.Columns);
        for (int t = 0; t < tokens; t++)
            QuantizedDot.QuantizeActivations(actType, x.Slice(t * w.Columns, w.Columns), scratch.Slice(t * actBytes, actBytes));

        fixed (byte* act = scratch)
        fixed (float* output = y)
        {
            var job = new Job(w, act, actBytes, output, tokens);
            pool.For(w.Rows, job.Run, minChunk: 16);
        }
    }

    private sealed class Job(QuantMatrix w, byte* act, int actBytes, float* y, int tokens)
    {
        public void Run(int start, int end)
        {
            for (int r = start; r < end; r++)
            {
                var row = w.Row(r);
                for (int t = 0; t < tokens; t++)
                    y[(long)t * w.Rows + r] = QuantizedDot.VecDot(w.Type, row, new ReadOnlySpan<byte>(act + (long)t * actBytes, actBytes), w.Columns);
            }
        }
    }
}
