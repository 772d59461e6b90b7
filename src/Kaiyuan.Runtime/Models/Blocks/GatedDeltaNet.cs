using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Gated DeltaNet linear attention (Qwen3.5's recurrent layers): the mixed q/k/v projection goes through a causal
/// depthwise convolution and SiLU; q and k (per key head) are L2-normalised; each value head decays its state by
/// softplus(α·x + dt_bias) × A and writes with strength sigmoid(β·x) by the gated delta rule (<see cref="DeltaRule"/>);
/// the read-out is RMS-normed per head, times SiLU(gate·x), and projected back. Value head h uses key head
/// h mod (key heads), as llama.cpp's converter lays the heads out.
/// </summary>
/// <remarks>
/// What the layer remembers is constant-size, per sequence: the last kernel−1 projected rows (the convolution's window)
/// and a key × value matrix per head, kept in the cache's <see cref="RecurrentState"/>. A prompt runs through the rule
/// in chunks; a decode step is a single update.
/// </remarks>
internal sealed class GatedDeltaNet : IAttentionBlock
{
    private readonly Linear _mixed, _gate, _alpha, _beta, _out;
    private readonly float[] _convByTap, _dtBias, _a, _norm;
    private readonly int _kernel, _keyHeads, _valueHeads, _dimK, _dimV, _channels;
    private readonly float _eps;

    public GatedDeltaNet(ModelConfig c, Linear mixed, Linear gate, Linear alpha, Linear beta, Linear output,
        float[] conv, float[] dtBias, float[] a, float[] norm)
    {
        (_mixed, _gate, _alpha, _beta, _out, _dtBias, _a, _norm) = (mixed, gate, alpha, beta, output, dtBias, a, norm);
        _kernel = c.SsmConvKernel;
        _keyHeads = c.SsmGroupCount;
        _valueHeads = c.SsmTimeStepRank;
        _dimK = c.SsmStateSize;
        _dimV = _valueHeads > 0 ? c.SsmInnerSize / _valueHeads : 0;
        _channels = 2 * _keyHeads * _dimK + _valueHeads * _dimV;
        _eps = c.RmsEpsilon;
        Shapes.Parameter(_kernel is >= 1 and <= 64, $"ssm.conv_kernel is {_kernel}; expected 1…64");
        Shapes.Parameter(_keyHeads >= 1 && _valueHeads >= 1 && _valueHeads % _keyHeads == 0,
            $"ssm.time_step_rank {_valueHeads} (value heads) must be a multiple of ssm.group_count {_keyHeads} (key heads)");
        Shapes.Parameter(_dimK is >= 1 and <= 1024 && _dimV == _dimK && _valueHeads * _dimV == c.SsmInnerSize,
            $"ssm.inner_size {c.SsmInnerSize} must be ssm.time_step_rank {_valueHeads} × ssm.state_size {_dimK}");
        Shapes.Require(conv.Length == _kernel * _channels, "ssm_conv1d.weight", $"has {conv.Length} values, expected {_kernel} × {_channels}");
        // Stored per channel (taps contiguous); kept per tap so a token's convolution is a few vector multiply-adds.
        _convByTap = new float[conv.Length];
        for (int ch = 0; ch < _channels; ch++)
            for (int j = 0; j < _kernel; j++) _convByTap[j * _channels + ch] = conv[ch * _kernel + j];
    }

    public int CacheRowWidth => 0;

    public int StateWidth => (_kernel - 1) * _channels + _valueHeads * _dimV * _dimK;

    public void CheckShapes(int embedding)
    {
        Shapes.Input(_mixed, embedding);
        Shapes.Output(_mixed, _channels);
        Shapes.Input(_gate, embedding);
        Shapes.Output(_gate, _valueHeads * _dimV);
        Shapes.Input(_alpha, embedding);
        Shapes.Output(_alpha, _valueHeads);
        Shapes.Input(_beta, embedding);
        Shapes.Output(_beta, _valueHeads);
        Shapes.Input(_out, _valueHeads * _dimV);
        Shapes.Output(_out, embedding);
        Shapes.Vector(_dtBias, _valueHeads, "ssm_dt.bias");
        Shapes.Vector(_a, _valueHeads, "ssm_a");
        Shapes.Vector(_norm, _dimV, "ssm_norm");
    }

    public void Forward(ForwardContext ctx, int layer, ReadOnlySpan<float> x, Span<float> output)
    {
        var (batch, cache, ws, pool) = ctx;
        var state = cache.Recurrent ?? throw new InvalidOperationException("a recurrent layer needs a cache with recurrent state");
        int n = batch.Count, c = _channels, vDim = _valueHeads * _dimV;
        var mixed = ws.Floats(Buf.SsmMixed, n * c);
        var gate = ws.Floats(Buf.SsmGate, n * vDim);
        var decay = ws.Floats(Buf.SsmDecay, n * _valueHeads);
        var write = ws.Floats(Buf.SsmWrite, n * _valueHeads);
        _mixed.Forward(x, n, mixed, ws, pool);
        _gate.Forward(x, n, gate, ws, pool);
        _alpha.Forward(x, n, decay, ws, pool);
        _beta.Forward(x, n, write, ws, pool);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < _valueHeads; h++)
            {
                int i = t * _valueHeads + h;
                float a = decay[i] + _dtBias[h];
                decay[i] = (a > 20f ? a : MathF.Log(1f + MathF.Exp(a))) * _a[h];
            }
        VectorOps.Sigmoid(write);

        // Runs: a sequence's consecutive tokens (the model checked they continue its state).
        var runs = ws.IntArray(IntBuf.SequenceRuns, n + 1);
        int count = 0;
        for (int t = 0; t < n; t++)
            if (t == 0 || batch.Slots[t] != batch.Slots[t - 1]) runs[count++] = t;
        runs[count] = n;

        var conv = ws.Array(Buf.SsmConv, n * c);
        for (int r = 0; r < count; r++) Convolve(state.Layer(batch.Slots[runs[r]], layer), mixed, conv, runs[r], runs[r + 1]);
        NormalizeQueriesAndKeys(conv, n);

        var read = ws.Array(Buf.SsmOut, n * vDim);
        var scratch = ws.Array(Buf.SsmScratch, pool.Threads * DeltaRule.ScratchFloats(_dimK, _dimV));
        using (pool.Enter())
        {
            var job = pool.Job<Job>();
            job.Set(this, state, layer, batch.Slots, runs, conv, ws.Array(Buf.SsmDecay, n * _valueHeads), ws.Array(Buf.SsmWrite, n * _valueHeads), read, scratch);
            pool.Run(job, count * _valueHeads);
        }

        // Gated RMS norm per head: SiLU(gate) ⊙ norm(o), written over the gate.
        for (int i = 0; i < n * _valueHeads; i++)
        {
            var o = read.AsSpan(i * _dimV, _dimV);
            VectorOps.RmsNorm(o, _norm, o, _eps);
        }
        VectorOps.SwiGlu(gate, read.AsSpan(0, n * vDim));
        _out.Forward(gate, n, output, ws, pool);
    }

    /// <summary>
    /// The causal depthwise convolution (then SiLU) of tokens [start, end) of one sequence: each output sees the kernel's
    /// last inputs, the earliest from the sequence's window, which then moves on to the run's last inputs.
    /// </summary>
    private void Convolve(float[] layerState, Span<float> mixed, float[] conv, int start, int end)
    {
        int c = _channels, taps = _kernel - 1;
        var window = layerState.AsSpan(0, taps * c);
        for (int t = start; t < end; t++)
        {
            var dst = conv.AsSpan(t * c, c);
            // Input j of the kernel for token t is the row j − taps tokens back: from the run, else from the window.
            for (int j = 0; j <= taps; j++)
            {
                int back = taps - j, source = t - back;
                ReadOnlySpan<float> row = source >= start ? mixed.Slice(source * c, c) : window.Slice((taps - (start - source)) * c, c);
                var w = _convByTap.AsSpan(j * c, c);
                if (j == 0) TensorPrimitives.Multiply(row, w, dst);
                else TensorPrimitives.MultiplyAdd(row, w, dst, dst);
            }
            VectorOps.Silu(dst);
        }
        // The window keeps the last taps inputs: shift in as many of the run's rows as it has.
        int tokens = end - start, kept = Math.Max(0, taps - tokens);
        if (kept > 0) window[(tokens * c)..].CopyTo(window);
        for (int i = 0; i < taps - kept; i++)
            mixed.Slice((end - (taps - kept) + i) * c, c).CopyTo(window.Slice((kept + i) * c, c));
    }

    /// <summary>L2-normalises every query and key head (as ggml's l2_norm: x / max(‖x‖, eps)) and scales queries by 1/√dimK.</summary>
    private void NormalizeQueriesAndKeys(float[] conv, int n)
    {
        float queryScale = 1f / MathF.Sqrt(_dimK);
        for (int t = 0; t < n; t++)
            for (int head = 0; head < 2 * _keyHeads; head++)
            {
                var v = conv.AsSpan(t * _channels + head * _dimK, _dimK);
                double sum = 0;
                foreach (float e in v) sum += (double)e * e;
                float scale = 1f / MathF.Max(MathF.Sqrt((float)sum), _eps);
                if (head < _keyHeads) scale *= queryScale;
                TensorPrimitives.Multiply(v, scale, v);
            }
    }

    /// <summary>One work item per (run, value head): its tokens through the delta rule, in chunks or as a single step.</summary>
    private sealed class Job : IParallelJob
    {
        private GatedDeltaNet _block = null!;
        private RecurrentState _state = null!;
        private int _layer;
        private int[] _slots = [], _runs = [];
        private float[] _conv = [], _decay = [], _write = [], _read = [], _scratch = [];

        public void Set(GatedDeltaNet block, RecurrentState state, int layer, int[] slots, int[] runs, float[] conv, float[] decay, float[] write, float[] read, float[] scratch) =>
            (_block, _state, _layer, _slots, _runs, _conv, _decay, _write, _read, _scratch) = (block, state, layer, slots, runs, conv, decay, write, read, scratch);

        public void Run(int start, int end, int worker)
        {
            var b = _block;
            int heads = b._valueHeads, dimK = b._dimK, dimV = b._dimV, c = b._channels, vDim = heads * dimV;
            var scratch = _scratch.AsSpan(worker * DeltaRule.ScratchFloats(dimK, dimV), DeltaRule.ScratchFloats(dimK, dimV));
            for (int item = start; item < end; item++)
            {
                int r = item / heads, h = item % heads, keyHead = h % b._keyHeads;
                int first = _runs[r], last = _runs[r + 1];
                var headState = _state.Layer(_slots[first], _layer).AsSpan((b._kernel - 1) * c + h * dimV * dimK, dimV * dimK);
                int qAt = keyHead * dimK, kAt = (b._keyHeads + keyHead) * dimK, vAt = 2 * b._keyHeads * dimK + h * dimV;
                if (last - first == 1)
                {
                    var row = _conv.AsSpan(first * c, c);
                    DeltaRule.Step(headState, row.Slice(qAt, dimK), row.Slice(kAt, dimK), row.Slice(vAt, dimV),
                        _decay[first * heads + h], _write[first * heads + h], _read.AsSpan(first * vDim + h * dimV, dimV));
                    continue;
                }
                for (int t = first; t < last; t += DeltaRule.ChunkTokens)
                {
                    int tokens = Math.Min(DeltaRule.ChunkTokens, last - t);
                    DeltaRule.Chunk(headState, dimK, dimV, tokens,
                        _conv.AsSpan(t * c + qAt), _conv.AsSpan(t * c + kAt), _conv.AsSpan(t * c + vAt), c,
                        _decay.AsSpan(t * heads + h), _write.AsSpan(t * heads + h), heads,
                        _read.AsSpan(t * vDim + h * dimV), vDim, scratch);
                }
            }
        }
    }
}
