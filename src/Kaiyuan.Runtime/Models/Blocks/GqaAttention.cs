using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>Where per-head query/key RMS norms apply: not at all, per head (Qwen3, GLM-4.5), or over the whole projection (MiniMax-M2).</summary>
internal enum QkNorm { None, PerHead, Whole }

/// <summary>
/// Multi-head / grouped-query attention: Q, K, V projections (optional biases and q/k norms), rotary embedding on the
/// first <c>rope.dimension_count</c> values of each head, causal softmax attention over the slot's cached keys. With an
/// output gate (Qwen3.5's full-attention layers) <c>attn_q</c> yields, per head, the query followed by as many gate
/// values, and each head's output is multiplied by sigmoid(gate) before the output projection.
/// </summary>
internal sealed class GqaAttention : IAttentionBlock
{
    private readonly Linear _q, _k, _v, _o;
    private readonly float[]? _qNorm, _kNorm;
    private readonly QkNorm _qkNorm;
    private readonly Rope _rope;
    private readonly int _heads, _headsKv, _headDimK, _headDimV;
    private readonly float _scale, _eps;
    private readonly bool _outputGate;

    public GqaAttention(ModelConfig c, Linear q, Linear k, Linear v, Linear o, Rope rope, QkNorm qkNorm = QkNorm.None, float[]? qNorm = null, float[]? kNorm = null,
        bool outputGate = false)
    {
        (_q, _k, _v, _o, _rope, _qkNorm, _qNorm, _kNorm, _outputGate) = (q, k, v, o, rope, qkNorm, qNorm, kNorm, outputGate);
        _heads = c.HeadCount;
        _headsKv = c.HeadCountKv;
        _headDimK = c.KeyLength;
        _headDimV = c.ValueLength;
        _scale = 1f / MathF.Sqrt(_headDimK);
        _eps = c.RmsEpsilon;
    }

    public int CacheRowWidth => _headsKv * (_headDimK + _headDimV);

    public void CheckShapes(int embedding)
    {
        Shapes.Parameter(_rope.Dimensions >= 0 && _rope.Dimensions % 2 == 0 && _rope.Dimensions <= _headDimK,
            $"rope.dimension_count is {_rope.Dimensions}; it must be even and at most the head size {_headDimK}");
        Shapes.Input(_q, embedding);
        Shapes.Output(_q, (_outputGate ? 2 : 1) * _heads * _headDimK);
        Shapes.Parameter(!_outputGate || _headDimK == _headDimV, $"a gated attention needs equal key and value head sizes, not {_headDimK} and {_headDimV}");
        Shapes.Input(_k, embedding);
        Shapes.Output(_k, _headsKv * _headDimK);
        Shapes.Input(_v, embedding);
        Shapes.Output(_v, _headsKv * _headDimV);
        Shapes.Input(_o, _heads * _headDimV);
        Shapes.Output(_o, embedding);
        // Per head (Qwen3) or over the whole projection (MiniMax-M2).
        bool whole = _qkNorm == QkNorm.Whole;
        Shapes.Vector(_qNorm, whole ? _heads * _headDimK : _headDimK, "attn_q_norm");
        Shapes.Vector(_kNorm, whole ? _headsKv * _headDimK : _headDimK, "attn_k_norm");
    }

    public void Forward(ForwardContext ctx, int layer, ReadOnlySpan<float> x, Span<float> output)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count, qDim = _heads * _headDimK, kDim = _headsKv * _headDimK, vDim = _headsKv * _headDimV;
        var q = ws.Floats(Buf.Q, n * qDim);
        var k = ws.Floats(Buf.K, n * kDim);
        var v = ws.Floats(Buf.V, n * vDim);
        var gate = _outputGate ? ws.Floats(Buf.AttnGate, n * qDim) : default;
        if (_outputGate)
        {
            SplitQueryAndGate(x, n, q, gate, ws, pool);
            Linear.ForwardTogether(x, n, ws, pool, _k, k, _v, v);
        }
        else Linear.ForwardTogether(x, n, ws, pool, _q, q, _k, k, _v, v);

        Span<float> cos = stackalloc float[_rope.Dimensions / 2], sin = stackalloc float[_rope.Dimensions / 2];
        for (int t = 0; t < n; t++)
        {
            var qt = q.Slice(t * qDim, qDim);
            var kt = k.Slice(t * kDim, kDim);
            switch (_qkNorm)
            {
                case QkNorm.PerHead:
                    VectorOps.RmsNormGroups(qt, _heads, _qNorm, _eps);
                    VectorOps.RmsNormGroups(kt, _headsKv, _kNorm, _eps);
                    break;
                case QkNorm.Whole:
                    VectorOps.RmsNorm(qt, _qNorm, qt, _eps);
                    VectorOps.RmsNorm(kt, _kNorm, kt, _eps);
                    break;
            }
            _rope.Angles(batch.Positions[t], cos, sin);
            _rope.Apply(qt, _headDimK, cos, sin);
            _rope.Apply(kt, _headDimK, cos, sin);
            // A cache row is every key head followed by every value head.
            var row = ws.Floats(Buf.Latent, kDim + vDim);
            kt.CopyTo(row);
            v.Slice(t * vDim, vDim).CopyTo(row[kDim..]);
            cache.Write(layer, batch.Slots[t], batch.Positions[t], row);
        }

        var attn = ws.Floats(Buf.Attn, n * _heads * _headDimV);
        AttentionKernel.Run(ctx, layer, ws.Array(Buf.Q, n * qDim), qDim, _heads, _headsKv, _headDimK, _headDimV,
            keyOffset: 0, valueOffset: kDim, _scale, ws.Array(Buf.Attn, n * _heads * _headDimV));
        if (_outputGate)
        {
            VectorOps.Sigmoid(gate);
            System.Numerics.Tensors.TensorPrimitives.Multiply(attn, gate, attn);
        }
        _o.Forward(attn, n, output, ws, pool);
    }

    /// <summary>Projects the fused query-and-gate rows and separates them: per head, the query, then its gate.</summary>
    private void SplitQueryAndGate(ReadOnlySpan<float> x, int n, Span<float> q, Span<float> gate, Workspace ws, WorkerPool pool)
    {
        int d = _headDimK, qDim = _heads * d;
        var fused = ws.Floats(Buf.QGated, n * 2 * qDim);
        _q.Forward(x, n, fused, ws, pool);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < _heads; h++)
            {
                var src = fused.Slice((t * _heads + h) * 2 * d, 2 * d);
                src[..d].CopyTo(q.Slice(t * qDim + h * d, d));
                src[d..].CopyTo(gate.Slice(t * qDim + h * d, d));
            }
    }
}
