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
            using var scope = pool.Enter();
            var job = pool.Job<Job>();
            job.Set(w, act, actBytes, output, tokens);
            pool.Run(job, w.Rows, minChunk: 16);
        }
    }

    private sealed class Job : IParallelJob
    {
        private QuantMatrix _w;
        private byte* _act;
        private int _actBytes, _tokens;
        private float* _y;

        public void Set(QuantMatrix w, byte* act, int actBytes, float* y, int tokens)
        {
            _w = w;
            _act = act;
            _actBytes = actBytes;
            _y = y;
            _tokens = tokens;
        }

        public void Run(int start, int end, int worker)
        {
            var w = _w;
            for (int r = start; r < end; r++)
            {
                var row = w.Row(r);
                for (int t = 0; t < _tokens; t++)
                    _y[(long)t * w.Rows + r] = QuantizedDot.VecDot(w.Type, row, new ReadOnlySpan<byte>(_act + (long)t * _actBytes, _actBytes), w.Columns);
            }
        }
    }
}
