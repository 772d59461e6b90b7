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
        tokens * ((int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(w.Type), w.Columns) + QuantizedDot.SideBytes(w.Type, w.Columns));

    /// <param name="x">tokens × Columns activations.</param>
    /// <param name="y">tokens × Rows outputs.</param>
    /// <param name="scratch">at least <see cref="ScratchBytes"/> bytes.</param>
    public static void Multiply(QuantMatrix w, ReadOnlySpan<float> x, int tokens, Span<float> y, Span<byte> scratch, WorkerPool pool)
    {
        QuantizedDot.CheckRows(w.Type, w.Columns);
        var actType = QuantizedDot.ActivationType(w.Type);
        int actBytes = (int)GgmlTypeInfo.RowBytes(actType, w.Columns);
        if (x.Length < tokens * w.Columns || y.Length < tokens * w.Rows || scratch.Length < ScratchBytes(w, tokens))
            throw new ArgumentException("MatMul buffers are smaller than tokens × the matrix shape");

        fixed (float* input = x)
        fixed (byte* act = scratch)
        fixed (float* output = y)
        {
            // What the tiled kernels derive from each activation row (float scales, bias sums) is formed once per matrix.
            bool tiled = QuantizedDot.HasDot4(w.Type);
            int sideBytes = QuantizedDot.SideBytes(w.Type, w.Columns);
            byte* side = act + (long)tokens * actBytes;
            using var scope = pool.Enter();
            // A prompt's activation rows are converted in parallel too; one row is not worth waking the pool for.
            var prepare = pool.Job<PrepareJob>();
            prepare.Set(w.Type, actType, w.Columns, input, act, actBytes, tiled, side, sideBytes);
            if (tokens >= 4) pool.Run(prepare, tokens);
            else prepare.Run(0, tokens, 0);

            var job = pool.Job<Job>();
            job.Set(w, act, actBytes, output, tokens, tiled, side, sideBytes);
            pool.Run(job, w.Rows, minChunk: 16);
        }
    }

    /// <summary>Quantizes activation rows into the weight type's companion format and derives their side data.</summary>
    private sealed class PrepareJob : IParallelJob
    {
        private GgmlType _weightType, _actType;
        private int _columns, _actBytes, _sideBytes;
        private float* _x;
        private byte* _act, _side;
        private bool _tiled;

        public void Set(GgmlType weightType, GgmlType actType, int columns, float* x, byte* act, int actBytes, bool tiled, byte* side, int sideBytes)
        {
            _weightType = weightType;
            _actType = actType;
            _columns = columns;
            _x = x;
            _act = act;
            _actBytes = actBytes;
            _tiled = tiled;
            _side = side;
            _sideBytes = sideBytes;
        }

        public void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                byte* row = _act + (long)t * _actBytes;
                QuantizedDot.QuantizeActivations(_actType, new ReadOnlySpan<float>(_x + (long)t * _columns, _columns), new Span<byte>(row, _actBytes));
                if (_tiled) QuantizedDot.PrepareSide(_weightType, row, _columns, _side + (long)t * _sideBytes);
            }
        }
    }

    private sealed class Job : IParallelJob
    {
        private QuantMatrix _w;
        private byte* _act;
        private int _actBytes, _tokens, _sideBytes;
        private float* _y;
        private byte* _side;
        private bool _tiled;

        public void Set(QuantMatrix w, byte* act, int actBytes, float* y, int tokens, bool tiled, byte* side, int sideBytes)
        {
            _tiled = tiled;
            _side = side;
            _sideBytes = sideBytes;
            _w = w;
            _act = act;
            _actBytes = actBytes;
            _y = y;
            _tokens = tokens;
        }

        public void Run(int start, int end, int worker)
        {
            var w = _w;
            var type = w.Type;
            int n = w.Columns, rowBytes = w.RowBytes, actBytes = _actBytes, tokens = _tokens, sideBytes = _sideBytes;
            long rows = w.Rows;
            bool tiled = _tiled;
            int t8 = tiled && QuantizedDot.HasDot8(type) ? tokens & ~7 : 0;
            int t4 = tiled ? t8 + ((tokens - t8) & ~3) : 0;
            // A block of weight rows stays in cache while every group of eight or four activation rows passes over it.
            for (int r0 = start; r0 < end; r0 += RowBlock)
            {
                int r1 = Math.Min(end, r0 + RowBlock);
                for (int t = 0; t < t8; t += 8)
                {
                    byte* act = _act + (long)t * actBytes;
                    for (int r = r0; r < r1; r++)
                        QuantizedDot.Dot8(type, w.Data + (long)r * rowBytes, act, _side + (long)t * sideBytes, actBytes, sideBytes, n, _y + t * rows + r, rows);
                }
                for (int t = t8; t < t4; t += 4)
                {
                    byte* act = _act + (long)t * actBytes;
                    for (int r = r0; r < r1; r++)
                        QuantizedDot.Dot4(type, w.Data + (long)r * rowBytes, act, _side + (long)t * sideBytes, actBytes, sideBytes, n, _y + t * rows + r, rows);
                }
                for (int t = t4; t < tokens; t++)
                {
                    byte* act = _act + (long)t * actBytes;
                    if (tiled)
                    {
                        byte* side = _side + (long)t * sideBytes;
                        for (int r = r0; r < r1; r++)
                            _y[t * rows + r] = QuantizedDot.Dot1(type, w.Data + (long)r * rowBytes, act, side, n);
                        continue;
                    }
                    for (int r = r0; r < r1; r++)
                        _y[t * rows + r] = QuantizedDot.DotUnchecked(type, w.Data + (long)r * rowBytes, rowBytes, act, actBytes, n);
                }
            }
        }

        private const int RowBlock = 16;
    }
}
