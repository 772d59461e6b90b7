using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Kernels;

/// <summary>
/// y[t] = W · x[t] for a batch of activation rows. Each activation row is converted once to the format the weight
/// type's dot product consumes (int8 blocks for quantized weights, as llama.cpp does), then output rows are split
/// across threads; every weight row is read once per batch. Batches of <see cref="PanelMinTokens"/> or more (prompts,
/// many sequences at once) run as a GEMM over weight rows repacked into panels.
/// </summary>
internal static unsafe class MatMul
{
    /// <summary>
    /// Batches of at least this many activation rows go through the panel GEMM; smaller ones would not repay the
    /// repacking. Measured (`bench matmul`, 4864 × 1024, 2 threads, interleaved with the tiles): at 8 rows panels
    /// already give Q8_0 32 → 42-47 GMAC/s, Q5_0 28-33 → 45, Q6_K 30 → 28-29; at 32 rows Q5_0 56-61, Q6_K 48-51.
    /// Since the K-quant scales are packed by vectors, 8 rows holds for Q4_K and Q6_K too, whose tiles run at any batch
    /// size what they run at four rows (768-4096 × 768-2048, 2 threads, Zen 5: panels at 8 rows 141-167 and 124-143
    /// GMAC/s, two at a time on AVX-512, tiles 120-135 and 110-122; with AVX-512 off 131-139 and 110-114 against 110-127
    /// and 86-91).
    /// </summary>
    internal const int PanelMinTokens = 8;

    /// <summary>How a batch is computed, and the bytes of side data it derives from each activation row.</summary>
    private static (Kernel Kernel, int SideBytes) Plan(QuantMatrix w, int tokens)
    {
        // Float panels pack eight columns at a time; quantized rows are whole blocks of 32 or 256 anyway.
        // TileMaxTokens is at least PanelMinTokens − 1: types whose tiles beat their panels keep larger batches.
        if (tokens > QuantizedDot.TileMaxTokens(w.Type) && w.Rows >= QuantizedDot.PanelRows && w.Columns % 8 == 0 && QuantizedDot.HasPanels(w.Type))
            return (Kernel.Panels, QuantizedDot.PanelSideBytes(w.Type, w.Columns));
        // The pair tiles read only their packed records (PackPairs), not the tiles' per-row side data.
        if (tokens is >= 2 and < PanelMinTokens && QuantizedDot.HasPairTiles(w.Type)) return (Kernel.Pairs, 0);
        return QuantizedDot.HasDot4(w.Type) ? (Kernel.Tiles, QuantizedDot.SideBytes(w.Type, w.Columns)) : (Kernel.Rows, 0);
    }

    private enum Kernel
    {
        /// <summary>One weight row against one activation row at a time.</summary>
        Rows,

        /// <summary>One weight row against 8, 4 or 1 activation rows (<see cref="QuantizedDot.Dot8"/>).</summary>
        Tiles,

        /// <summary>Eight repacked weight rows against four (quantized) or eight (float) activation rows at a time (<see cref="QuantizedDot.PanelMultiply"/>).</summary>
        Panels,

        /// <summary>Two weight rows against 2–7 activation rows packed in pairs, two per vector (<see cref="QuantizedDot.PairRows"/>).</summary>
        Pairs,
    }

    /// <summary>Bytes of scratch <see cref="Multiply"/> needs for a batch of <paramref name="tokens"/> rows.</summary>
    public static int ScratchBytes(QuantMatrix w, int tokens) =>
        tokens * ((int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(w.Type), w.Columns) + Plan(w, tokens).SideBytes) + PairBytes(w, tokens);

    /// <summary>
    /// Bytes of the pair-interleaved activations (<see cref="QuantizedDot.PackPairs"/>, with room to align them) a small
    /// batch of the 32-element block types takes on AVX-512; 0 where it takes the other kernels.
    /// </summary>
    private static int PairBytes(QuantMatrix w, int tokens) =>
        Plan(w, tokens).Kernel == Kernel.Pairs ? QuantizedDot.PairBytes(w.Type, w.Columns, tokens) + 64 : 0;

    /// <summary>Packs a small batch's prepared activation rows in pairs after <paramref name="end"/> (64-byte aligned) when <see cref="PairBytes"/> asks for it; null otherwise.</summary>
    private static byte* PackPairs(QuantMatrix w, int tokens, byte* act, int actBytes, byte* end)
    {
        if (PairBytes(w, tokens) == 0) return null;
        byte* pairs = (byte*)(((nint)end + 63) & ~(nint)63);
        QuantizedDot.PackPairs(w.Type, act, actBytes, tokens, w.Columns, pairs);
        return pairs;
    }

    /// <summary>y = x · wᵀ for a batch: each of the <paramref name="tokens"/> activation rows against every weight row.</summary>
    /// <param name="w">The weight matrix, Rows × Columns in its quantized type.</param>
    /// <param name="x">tokens × Columns activations.</param>
    /// <param name="tokens">Activation rows in the batch.</param>
    /// <param name="y">tokens × Rows outputs.</param>
    /// <param name="scratch">at least <see cref="ScratchBytes"/> bytes.</param>
    /// <param name="pool">The worker threads the work is split across.</param>
    public static void Multiply(QuantMatrix w, ReadOnlySpan<float> x, int tokens, Span<float> y, Span<byte> scratch, WorkerPool pool) =>
        MultiplyShared(x, tokens, scratch, pool, w, y);

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> can share one input's prepared activations (<see cref="MultiplyShared"/>).</summary>
    public static bool CanShareInput(QuantMatrix a, QuantMatrix b, int tokens) => a.Type == b.Type && a.Columns == b.Columns && Plan(a, tokens) == Plan(b, tokens);

    /// <summary>
    /// <see cref="Multiply"/> of one input against two or three matrices of one type and width (q, k and v; gate and
    /// up): the activation rows are quantized once, not once per matrix, and each matrix's results are the same bits
    /// as its own <see cref="Multiply"/>.
    /// </summary>
    public static void MultiplyShared(ReadOnlySpan<float> x, int tokens, Span<byte> scratch, WorkerPool pool,
        QuantMatrix a, Span<float> ya, QuantMatrix? b = null, Span<float> yb = default, QuantMatrix? c = null, Span<float> yc = default)
    {
        QuantizedDot.CheckRows(a.Type, a.Columns);
        var actType = QuantizedDot.ActivationType(a.Type);
        int actBytes = (int)GgmlTypeInfo.RowBytes(actType, a.Columns);
        if (x.Length < tokens * a.Columns || scratch.Length < ScratchBytes(a, tokens))
            throw new ArgumentException("MatMul buffers are smaller than tokens × the matrix shape");
        if (b is { } bw && !CanShareInput(a, bw, tokens) || c is { } cw && !CanShareInput(a, cw, tokens))
            throw new ArgumentException("matrices that share an input must have one type, width and kernel");

        fixed (float* input = x)
        fixed (byte* act = scratch)
        {
            // What the kernels derive from each activation row (float scales, bias sums) is formed once per matrix.
            var (kernel, sideBytes) = Plan(a, tokens);
            byte* side = act + (long)tokens * actBytes;
            using var scope = pool.Enter();
            // A prompt's activation rows are converted in parallel too; one row is not worth waking the pool for.
            var prepare = pool.Job<PrepareJob>();
            prepare.Set(a.Type, actType, a.Columns, input, act, actBytes, kernel, side, sideBytes);
            if (tokens >= 4) pool.Run(prepare, tokens);
            else prepare.Run(0, tokens, 0);
            byte* pairs = PackPairs(a, tokens, act, actBytes, side + (long)tokens * sideBytes);

            RunPrepared(a, x, tokens, ya, act, actBytes, kernel, side, sideBytes, pairs, pool);
            if (b is { } second) RunPrepared(second, x, tokens, yb, act, actBytes, kernel, side, sideBytes, pairs, pool);
            if (c is { } third) RunPrepared(third, x, tokens, yc, act, actBytes, kernel, side, sideBytes, pairs, pool);
        }
    }

    /// <summary>One matrix against activation rows already prepared for its type.</summary>
    private static void RunPrepared(QuantMatrix w, ReadOnlySpan<float> x, int tokens, Span<float> y, byte* act, int actBytes, Kernel kernel, byte* side, int sideBytes, byte* pairs,
        WorkerPool pool)
    {
        if (y.Length < tokens * w.Rows) throw new ArgumentException("MatMul buffers are smaller than tokens × the matrix shape");
        if (ActivationTap.Observer is { } observer && w.Name is not null) observer.Observe(w, x, tokens);
        fixed (float* output = y)
        {
            if (kernel == Kernel.Panels)
            {
                var panels = pool.Job<PanelJob>();
                panels.Set(w, act, actBytes, output, tokens, side, sideBytes, pool.Threads);
                pool.Run(panels, w.Rows / QuantizedDot.PanelRows, minChunk: QuantizedDot.HasPanelPairs(w.Type) ? 2 : 1);
                // Rows past the last whole panel (no model in use has any) take the plain dot.
                for (int r = w.Rows / QuantizedDot.PanelRows * QuantizedDot.PanelRows; r < w.Rows; r++)
                    for (int t = 0; t < tokens; t++)
                        output[(long)t * w.Rows + r] = QuantizedDot.DotUnchecked(w.Type, w.Data + (long)r * w.RowBytes, w.RowBytes, act + (long)t * actBytes, actBytes, w.Columns);
                return;
            }

            var job = pool.Job<Job>();
            job.Set(w, act, actBytes, output, tokens, kernel == Kernel.Tiles, side, sideBytes, pairs);
            pool.Run(job, Units(w, tokens), minChunk: 16);
        }
    }

    /// <summary>Quantizes activation rows into the weight type's companion format and derives their side data.</summary>
    private sealed class PrepareJob : IParallelJob
    {
        private GgmlType _weightType, _actType;
        private int _columns, _actBytes, _sideBytes;
        private float* _x;
        private byte* _act, _side;
        private Kernel _kernel;

        public void Set(GgmlType weightType, GgmlType actType, int columns, float* x, byte* act, int actBytes, Kernel kernel, byte* side, int sideBytes)
        {
            _weightType = weightType;
            _actType = actType;
            _columns = columns;
            _x = x;
            _act = act;
            _actBytes = actBytes;
            _kernel = kernel;
            _side = side;
            _sideBytes = sideBytes;
        }

        public void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                byte* row = _act + (long)t * _actBytes;
                QuantizedDot.QuantizeActivations(_actType, new ReadOnlySpan<float>(_x + (long)t * _columns, _columns), new Span<byte>(row, _actBytes));
                if (_kernel == Kernel.Tiles) QuantizedDot.PrepareSide(_weightType, row, _columns, _side + (long)t * _sideBytes);
                else if (_kernel == Kernel.Panels) QuantizedDot.PreparePanelSide(_weightType, row, _columns, _side + (long)t * _sideBytes);
            }
        }
    }

    /// <summary>One matrix's share of a row-kernel multiply: its weights, prepared activation rows and outputs.</summary>
    private struct RowWork
    {
        public QuantMatrix W;
        public byte* Act, Side;
        /// <summary>The activation rows packed in pairs (<see cref="PackPairs"/>), or null.</summary>
        public byte* Pairs;
        public int ActBytes, Tokens, SideBytes;
        public float* Y;
        public bool Tiled;
    }

    private sealed class Job : IParallelJob
    {
        private RowWork _work;

        public void Set(QuantMatrix w, byte* act, int actBytes, float* y, int tokens, bool tiled, byte* side, int sideBytes, byte* pairs) =>
            _work = new RowWork { W = w, Act = act, ActBytes = actBytes, Y = y, Tokens = tokens, Tiled = tiled, Side = side, SideBytes = sideBytes, Pairs = pairs };

        public void Run(int start, int end, int worker) => RunRows(in _work, start, end);
    }

    /// <summary>What <see cref="RunRows"/> counts in a matrix: its rows, or for one token on the two-row kernels its pairs of rows.</summary>
    private static int Units(QuantMatrix w, int tokens) => tokens == 1 && QuantizedDot.HasDot1Rows2(w.Type) ? (w.Rows + 1) / 2 : w.Rows;

    /// <summary>Units [start, end) of one matrix (<see cref="Units"/>) against all its activation rows, with the widest tiles that fit.</summary>
    private static void RunRows(in RowWork work, int start, int end)
    {
        var w = work.W;
        var type = w.Type;
        int n = w.Columns, rowBytes = w.RowBytes, actBytes = work.ActBytes, tokens = work.Tokens, sideBytes = work.SideBytes;
        long rows = w.Rows;
        bool tiled = work.Tiled;
        byte* actBase = work.Act, sideBase = work.Side;
        float* y = work.Y;
        // Tiled or not: the two-row kernels of untiled types (Q5_K) read no side data.
        if (tokens == 1 && QuantizedDot.HasDot1Rows2(type))
        {
            // [start, end) counts pairs (Units): pair p is rows p and p + half, so a range's rows are two runs, each read
            // front to back as the prefetchers expect, which the thread's next range continues.
            int half = (int)((rows + 1) / 2), full = (int)Math.Min(end, rows / 2);
            long stride = (long)half * rowBytes;
            int r = start;
            // Two adjacent rows of each run at once where a type has four independent accumulation chains to gain.
            if (QuantizedDot.HasDot1Rows4(type))
                for (; r + 1 < full; r += 2)
                    QuantizedDot.Dot1Rows4(type, w.Data + (long)r * rowBytes, rowBytes, stride, actBase, sideBase, n, y + r, half);
            for (; r < full; r++)
                QuantizedDot.Dot1Rows2(type, w.Data + (long)r * rowBytes, stride, actBase, sideBase, n, y + r, half);
            // An odd row count's middle row has no partner.
            if (end > rows / 2) y[rows / 2] = QuantizedDot.Dot1(type, w.Data + rows / 2 * rowBytes, actBase, sideBase, n);
            return;
        }
        if (work.Pairs != null)
        {
            QuantizedDot.PairRows(type, tokens, w.Data + (long)start * rowBytes, rowBytes, end - start, work.Pairs, n, y + start, rows);
            return;
        }
        // Tiled or not, as for one token: the small-batch tiles of untiled types (Q2_K, Q3_K, Q5_K) read no side data.
        if (tokens >= 2 && tokens <= QuantizedDot.TileMaxTokens(type) && QuantizedDot.HasDotRows(type))
        {
            // Up to the type's largest tile, the whole range in one tile: each weight block decoded once, not once per 4-,
            // 3- or 2-row tile. A larger batch goes in tiles as even as they come, over blocks of weight rows that stay in
            // cache while every tile passes over them.
            int maxRows = MaxTileRows(type), tiles = (tokens + maxRows - 1) / maxRows, rowBlock = tiles == 1 ? end - start : RowBlock;
            for (int r0 = start; r0 < end; r0 += rowBlock)
            {
                int r1 = Math.Min(end, r0 + rowBlock);
                for (int k = 0, t0 = 0; k < tiles; k++)
                {
                    int t1 = tokens * (k + 1) / tiles;
                    QuantizedDot.DotRows(type, t1 - t0, w.Data + (long)r0 * rowBytes, rowBytes, r1 - r0, actBase + (long)t0 * actBytes, sideBase + (long)t0 * sideBytes,
                        actBytes, sideBytes, n, y + (long)t0 * rows + r0, rows);
                    t0 = t1;
                }
            }
            return;
        }
        int t8 = tiled && QuantizedDot.HasDot8(type) ? tokens & ~7 : 0;
        int t4 = tiled ? t8 + ((tokens - t8) & ~3) : 0;
        // Three rows left: one three-row tile; two: a two-row one; one: the single-row dot.
        int t3 = tiled && tokens - t4 == 3 ? tokens : t4;
        int t2 = tiled ? t3 + ((tokens - t3) & ~1) : 0;
        // A block of weight rows stays in cache while every group of eight or four activation rows passes over it.
        for (int r0 = start; r0 < end; r0 += RowBlock)
        {
            int r1 = Math.Min(end, r0 + RowBlock);
            for (int t = 0; t < t8; t += 8)
            {
                byte* act = actBase + (long)t * actBytes;
                for (int r = r0; r < r1; r++)
                    QuantizedDot.Dot8(type, w.Data + (long)r * rowBytes, act, sideBase + (long)t * sideBytes, actBytes, sideBytes, n, y + t * rows + r, rows);
            }
            for (int t = t8; t < t4; t += 4)
            {
                byte* act = actBase + (long)t * actBytes;
                for (int r = r0; r < r1; r++)
                    QuantizedDot.Dot4(type, w.Data + (long)r * rowBytes, act, sideBase + (long)t * sideBytes, actBytes, sideBytes, n, y + t * rows + r, rows);
            }
            if (t3 > t4)
            {
                byte* act = actBase + (long)t4 * actBytes;
                for (int r = r0; r < r1; r++)
                    QuantizedDot.Dot3(type, w.Data + (long)r * rowBytes, act, sideBase + (long)t4 * sideBytes, actBytes, sideBytes, n, y + t4 * rows + r, rows);
            }
            for (int t = t3; t < t2; t += 2)
            {
                byte* act = actBase + (long)t * actBytes;
                for (int r = r0; r < r1; r++)
                    QuantizedDot.Dot2(type, w.Data + (long)r * rowBytes, act, sideBase + (long)t * sideBytes, actBytes, sideBytes, n, y + t * rows + r, rows);
            }
            for (int t = t2; t < tokens; t++)
            {
                byte* act = actBase + (long)t * actBytes;
                if (tiled)
                {
                    byte* side = sideBase + (long)t * sideBytes;
                    for (int r = r0; r < r1; r++)
                        y[t * rows + r] = QuantizedDot.Dot1(type, w.Data + (long)r * rowBytes, act, side, n);
                    continue;
                }
                for (int r = r0; r < r1; r++)
                    y[t * rows + r] = QuantizedDot.DotUnchecked(type, w.Data + (long)r * rowBytes, rowBytes, act, actBytes, n);
            }
        }
    }

    private const int RowBlock = 16;

    /// <summary>
    /// The most activation rows one small-batch tile takes (<see cref="QuantizedDot.DotRows"/>): seven, and five for
    /// Q6_K, whose six- and seven-row tiles (a row pointer and a pair-bias pointer per row) ran slower per row than two
    /// smaller ones. `bench matmul` 4864 × 4096, -t 2, Zen 5: 6 tokens 0.87–0.92 → 0.79–0.81 ms, 7 tokens 1.18 →
    /// 0.82–0.92 ms; 896 × 4864: 0.22–0.23 → 0.19, 0.28–0.29 → 0.22–0.23 ms (the same with AVX-512 off). Each activation
    /// row's arithmetic is the same in any tile, so the results are the same bits.
    /// </summary>
    internal static int MaxTileRows(GgmlType type) => type == GgmlType.Q6_K ? 5 : 7;

    /// <summary>
    /// Several small multiplies as one parallel pass: a mixture-of-experts layer's active experts at decode are a dozen
    /// matrices of a few hundred rows each, and one operation per matrix spent more on waking and waiting for the
    /// threads than on the rows. Each part is computed exactly as <see cref="Multiply"/> computes it (the same row
    /// kernels, so the same bits); parts that read the same activation rows with the same weight type share their
    /// quantized form. Batches of <see cref="PanelMinTokens"/> rows or more belong to <see cref="Multiply"/>.
    /// Take the pool (<see cref="WorkerPool.Enter"/>) around <see cref="WorkerPool.Job{T}"/>, the parts and <see cref="Run"/>.
    /// </summary>
    internal sealed class Group : IParallelJob
    {
        private RowWork[] _parts = new RowWork[16];
        private nint[] _inputs = new nint[16];
        // Where each part's units (Units) start, laid end to end.
        private int[] _firstUnit = new int[17];
        private int _count;

        public void Clear() => _count = 0;

        /// <summary>Adds <paramref name="tokens"/> activation rows at <paramref name="x"/> against <paramref name="w"/>, into <paramref name="y"/> (tokens × rows).</summary>
        public void Add(QuantMatrix w, float* x, int tokens, float* y)
        {
            if (tokens >= PanelMinTokens) throw new ArgumentOutOfRangeException(nameof(tokens), "a batch this large goes through MatMul.Multiply");
            QuantizedDot.CheckRows(w.Type, w.Columns);
            if (_count == _parts.Length)
            {
                Array.Resize(ref _parts, _count * 2);
                Array.Resize(ref _inputs, _count * 2);
                Array.Resize(ref _firstUnit, _count * 2 + 1);
            }
            var (kernel, sideBytes) = Plan(w, tokens);
            _parts[_count] = new RowWork
            {
                W = w,
                Tokens = tokens,
                Y = y,
                Tiled = kernel == Kernel.Tiles,
                SideBytes = sideBytes,
                ActBytes = (int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(w.Type), w.Columns),
            };
            _inputs[_count] = (nint)x;
            _firstUnit[_count + 1] = _firstUnit[_count] + Units(w, tokens);
            _count++;
        }

        /// <summary>True when part <paramref name="i"/> can read part <paramref name="i"/> − 1's prepared activations.</summary>
        private bool SharesInput(int i) => i > 0 && _inputs[i] == _inputs[i - 1] && _parts[i].Tokens == _parts[i - 1].Tokens
            && _parts[i].W.Type == _parts[i - 1].W.Type && _parts[i].W.Columns == _parts[i - 1].W.Columns;

        /// <summary>Bytes of scratch <see cref="Run"/> needs for the parts added.</summary>
        public int ScratchBytes()
        {
            int bytes = 0;
            for (int i = 0; i < _count; i++)
                if (!SharesInput(i)) bytes += _parts[i].Tokens * (_parts[i].ActBytes + _parts[i].SideBytes) + PairBytes(_parts[i].W, _parts[i].Tokens);
            return bytes;
        }

        /// <summary>Prepares every part's activations (on this thread: a few rows), then runs all their rows in one pass.</summary>
        public void Run(Span<byte> scratch, WorkerPool pool)
        {
            if (scratch.Length < ScratchBytes()) throw new ArgumentException("MatMul.Group scratch is smaller than ScratchBytes()");
            fixed (byte* start = scratch)
            {
                byte* next = start;
                for (int i = 0; i < _count; i++)
                {
                    ref var part = ref _parts[i];
                    var w = part.W;
                    if (ActivationTap.Observer is { } observer && w.Name is not null)
                        observer.Observe(w, new ReadOnlySpan<float>((float*)_inputs[i], part.Tokens * w.Columns), part.Tokens);
                    if (SharesInput(i))
                    {
                        part.Act = _parts[i - 1].Act;
                        part.Side = _parts[i - 1].Side;
                        part.Pairs = _parts[i - 1].Pairs;
                        continue;
                    }
                    part.Act = next;
                    part.Side = next + (long)part.Tokens * part.ActBytes;
                    next = part.Side + (long)part.Tokens * part.SideBytes;
                    var actType = QuantizedDot.ActivationType(w.Type);
                    for (int t = 0; t < part.Tokens; t++)
                    {
                        byte* row = part.Act + (long)t * part.ActBytes;
                        QuantizedDot.QuantizeActivations(actType, new ReadOnlySpan<float>((float*)_inputs[i] + (long)t * w.Columns, w.Columns), new Span<byte>(row, part.ActBytes));
                        if (part.Tiled) QuantizedDot.PrepareSide(w.Type, row, w.Columns, part.Side + (long)t * part.SideBytes);
                    }
                    part.Pairs = PackPairs(w, part.Tokens, part.Act, part.ActBytes, next);
                    if (part.Pairs != null) next = part.Pairs + QuantizedDot.PairBytes(w.Type, w.Columns, part.Tokens);
                }
                pool.Run(this, _firstUnit[_count], minChunk: 16);
            }
        }

        /// <summary>Units [start, end) of the parts laid end to end.</summary>
        void IParallelJob.Run(int start, int end, int worker)
        {
            int i = 0;
            while (_firstUnit[i + 1] <= start) i++;
            for (; start < end; i++)
            {
                int partEnd = Math.Min(end, _firstUnit[i + 1]);
                RunRows(in _parts[i], start - _firstUnit[i], partEnd - _firstUnit[i]);
                start = partEnd;
            }
        }
    }

    /// <summary>
    /// Repacks eight weight rows at a time into the worker's buffer, then runs every activation row over the panel
    /// a few at a time, one column range after another: each range of the panel
    /// (<see cref="QuantizedDot.PanelColumns"/>) stays in L1 while all activation tiles pass over it.
    /// </summary>
    private sealed class PanelJob : IParallelJob
    {
        private byte[]?[] _buffers = [];
        private QuantMatrix _w;
        private byte* _act, _side;
        private int _actBytes, _tokens, _sideBytes;
        private float* _y;

        public void Set(QuantMatrix w, byte* act, int actBytes, float* y, int tokens, byte* side, int sideBytes, int workers)
        {
            _w = w;
            _act = act;
            _actBytes = actBytes;
            _y = y;
            _tokens = tokens;
            _side = side;
            _sideBytes = sideBytes;
            if (_buffers.Length < 2 * workers) Array.Resize(ref _buffers, 2 * workers);
        }

        public void Run(int start, int end, int worker)
        {
            var w = _w;
            int n = w.Columns, tokens = _tokens;
            byte* panel = Buffer(2 * worker, QuantizedDot.PanelBytes(w.Type, n));
            int step = ColumnStep(w.Type, n);
            int p = start;
            if (QuantizedDot.HasPanelPairs(w.Type))
            {
                // Two panels at a time where the kernels take sixteen rows; a range's odd last panel takes the 8-row kernel.
                byte* second = Buffer(2 * worker + 1, QuantizedDot.PanelBytes(w.Type, n));
                for (; p + 1 < end; p += 2)
                {
                    QuantizedDot.PackPanel(w.Type, w.Data + (long)p * QuantizedDot.PanelRows * w.RowBytes, w.RowBytes, n, panel);
                    QuantizedDot.PackPanel(w.Type, w.Data + (long)(p + 1) * QuantizedDot.PanelRows * w.RowBytes, w.RowBytes, n, second);
                    float* output = _y + p * QuantizedDot.PanelRows;
                    for (int c0 = 0; c0 < n; c0 += step)
                        QuantizedDot.PanelPairMultiply(w.Type, panel, second, n, c0, Math.Min(step, n - c0), _act, _actBytes, _side, _sideBytes, tokens, accumulate: c0 > 0, output, w.Rows);
                }
            }
            for (; p < end; p++)
            {
                QuantizedDot.PackPanel(w.Type, w.Data + (long)p * QuantizedDot.PanelRows * w.RowBytes, w.RowBytes, n, panel);
                float* output = _y + p * QuantizedDot.PanelRows;
                for (int c0 = 0; c0 < n; c0 += step)
                    QuantizedDot.PanelMultiply(w.Type, panel, n, c0, Math.Min(step, n - c0), _act, _actBytes, _side, _sideBytes, tokens, accumulate: c0 > 0, output, w.Rows);
            }
        }

        /// <summary>Columns per range: the row split into equal whole-block ranges of at most <see cref="QuantizedDot.PanelColumns"/>.</summary>
        private static int ColumnStep(GgmlType type, int n)
        {
            int block = GgmlTypeInfo.Geometry(Q5Fields.FileType(type)).BlockSize, widest = QuantizedDot.PanelColumns(type), ranges = (n + widest - 1) / widest;
            return (n / block + ranges - 1) / ranges * block;
        }

        /// <summary>Panel buffer <paramref name="index"/> (two per worker), 64-byte aligned, grown (once per shape seen) to <paramref name="bytes"/>.</summary>
        private byte* Buffer(int index, int bytes)
        {
            ref byte[]? buffer = ref _buffers[index];
            if (buffer is null || buffer.Length < bytes + 64) buffer = GC.AllocateUninitializedArray<byte>(bytes + 64, pinned: true);
            byte* start = (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(buffer));
            return (byte*)(((nint)start + 63) & ~(nint)63);
        }
    }
}
