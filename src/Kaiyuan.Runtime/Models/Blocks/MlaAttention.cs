using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) in the absorbed form: the cache keeps only the compressed
/// latent (kv_lora_rank) and the shared rotary key (rope dims) per token; queries are mapped into latent space with
/// <c>attn_k_b</c>, attention runs there as one-KV-head MQA, and <c>attn_v_b</c> expands each head's result. With a
/// <see cref="LightningIndexer"/> (DeepSeek-V3.2, GLM-5) each query attends only to the tokens the indexer picks; its
/// key is cached after the latent and the rotary key. A "shared" layer has no indexer of its own and attends to what the
/// last full layer chose.
/// </summary>
internal sealed class MlaAttention : IAttentionBlock
{
    private readonly Linear? _qA, _qB, _q;
    private readonly float[]? _qANorm;
    private readonly Linear _kvA, _o;
    private readonly float[] _kvANorm;
    private readonly QuantMatrix _kB, _vB;
    private readonly Rope _rope;
    private readonly LightningIndexer? _indexer;
    private readonly int _topK;
    private readonly int _heads, _nope, _ropeDims, _kvLora, _headDimV;
    private readonly float _scale, _eps;

    public MlaAttention(ModelConfig c, Linear? qA, float[]? qANorm, Linear? qB, Linear? q, Linear kvA, float[] kvANorm,
        QuantMatrix kB, QuantMatrix vB, Linear o, Rope rope, LightningIndexer? indexer = null, int sharedTopK = 0)
    {
        // A layer without its own indexer but a top-k reuses the choice of the last layer that has one (GLM-5.2).
        _topK = indexer?.TopK ?? sharedTopK;
        (_qA, _qANorm, _qB, _q, _kvA, _kvANorm, _kB, _vB, _o, _rope, _indexer) = (qA, qANorm, qB, q, kvA, kvANorm, kB, vB, o, rope, indexer);
        if (indexer is not null && qA is null) throw new InvalidDataException("the lightning indexer needs the q-LoRA latent (attn_q_a)");
        _heads = c.HeadCount;
        _ropeDims = c.RopeDimensions;
        _nope = c.KeyLengthMla - _ropeDims;
        _kvLora = c.KvLoraRank;
        _headDimV = c.ValueLengthMla;
        _eps = c.RmsEpsilon;
        // llama.cpp pre-scales the score by YaRN's magnitude correction squared (see ModelConfig.Rope).
        float attnFactorOrg = rope.Config.AttnFactor * (rope.Config.ExtFactor != 0 ? 1f + 0.1f * MathF.Log(1f / rope.Config.FreqScale) : 1f);
        float mscale = attnFactorOrg * (1f + 0.1f * c.EffectiveYarnLogMultiplier * MathF.Log(1f / rope.Config.FreqScale));
        _scale = mscale * mscale / MathF.Sqrt(c.KeyLengthMla);
        if (kvA.OutFeatures != _kvLora + _ropeDims) throw new InvalidDataException($"tensor '{kvA.Name}' does not match kv_lora_rank + rope dims");
        if (kB.Rows != _heads * _kvLora || kB.Columns != _nope) throw new InvalidDataException("attn_k_b does not match the MLA hyper-parameters");
        if (vB.Rows != _heads * _headDimV || vB.Columns != _kvLora) throw new InvalidDataException("attn_v_b does not match the MLA hyper-parameters");
    }

    public int CacheRowWidth => _kvLora + _ropeDims + (_indexer?.KeyWidth ?? 0);

    public void CheckShapes(int embedding)
    {
        Shapes.Parameter(_ropeDims >= 0 && _ropeDims % 2 == 0 && _nope >= 0,
            $"rope.dimension_count is {_ropeDims}; it must be even and at most the key length {_nope + _ropeDims}");
        int qDim = _heads * (_nope + _ropeDims);
        if (_q is not null)
        {
            Shapes.Input(_q, embedding);
            Shapes.Output(_q, qDim);
        }
        else
        {
            Shapes.Input(_qA!, embedding);
            Shapes.Vector(_qANorm, _qA!.OutFeatures, "attn_q_a_norm");
            Shapes.Input(_qB!, _qA.OutFeatures);
            Shapes.Output(_qB!, qDim);
        }
        Shapes.Input(_kvA, embedding);
        Shapes.Vector(_kvANorm, _kvLora, "attn_kv_a_norm");
        Shapes.Input(_o, _heads * _headDimV);
        Shapes.Output(_o, embedding);
        _indexer?.CheckShapes(embedding, _qA!.OutFeatures);
    }

    public void Forward(ForwardContext ctx, int layer, ReadOnlySpan<float> x, Span<float> output)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count, headK = _nope + _ropeDims, qDim = _heads * headK, latentQ = _kvLora + _ropeDims;

        var q = ws.Floats(Buf.Q, n * qDim);
        if (_q is not null) _q.Forward(x, n, q, ws, pool);
        else
        {
            var qa = ws.Floats(Buf.K, n * _qA!.OutFeatures);
            _qA.Forward(x, n, qa, ws, pool);
            for (int t = 0; t < n; t++) VectorOps.RmsNorm(qa.Slice(t * _qA.OutFeatures, _qA.OutFeatures), _qANorm, qa.Slice(t * _qA.OutFeatures, _qA.OutFeatures), _eps);
            _qB!.Forward(qa, n, q, ws, pool);
        }

        var kvpe = ws.Floats(Buf.V, n * latentQ);
        _kvA.Forward(x, n, kvpe, ws, pool);

        Span<float> indexerKeys = default, indexerQ = default, indexerW = default;
        if (_indexer is not null)
        {
            indexerKeys = ws.Floats(Buf.IndexerK, n * _indexer.KeyWidth);
            indexerQ = ws.Floats(Buf.IndexerQ, n * _indexer.Heads * _indexer.KeyWidth);
            indexerW = ws.Floats(Buf.IndexerWeights, n * _indexer.Heads);
            _indexer.Project(ctx, x, ws.Floats(Buf.K, n * _qA!.OutFeatures), indexerQ, indexerW, indexerKeys);
        }
        var cacheRow = ws.Floats(Buf.CacheRow, CacheRowWidth);
        Span<float> cos = stackalloc float[_ropeDims / 2], sin = stackalloc float[_ropeDims / 2];
        for (int t = 0; t < n; t++)
        {
            _rope.Angles(batch.Positions[t], cos, sin);
            var qt = q.Slice(t * qDim, qDim);
            for (int h = 0; h < _heads; h++) _rope.Apply(qt.Slice(h * headK + _nope, _ropeDims), _ropeDims, cos, sin);
            var row = kvpe.Slice(t * latentQ, latentQ);
            _rope.Apply(row[_kvLora..], _ropeDims, cos, sin);
            VectorOps.RmsNorm(row[.._kvLora], _kvANorm, row[.._kvLora], _eps);
            if (_indexer is null) cache.Write(layer, batch.Slots[t], batch.Positions[t], row);
            else
            {
                row.CopyTo(cacheRow);
                indexerKeys.Slice(t * _indexer.KeyWidth, _indexer.KeyWidth).CopyTo(cacheRow[latentQ..]);
                cache.Write(layer, batch.Slots[t], batch.Positions[t], cacheRow);
            }
        }

        // Absorb attn_k_b into the queries: per head, q_nope (nope) → latent (kv_lora_rank); the rotary part follows.
        var qFull = ws.Array(Buf.QAbsorbed, n * _heads * latentQ);
        var nopeIn = ws.Floats(Buf.Latent, n * _nope);
        var absorbed = ws.Floats(Buf.AttnLatent, n * _kvLora);
        for (int h = 0; h < _heads; h++)
        {
            for (int t = 0; t < n; t++) q.Slice(t * qDim + h * headK, _nope).CopyTo(nopeIn.Slice(t * _nope, _nope));
            MatMul.Multiply(_kB.Expert(h, _heads), nopeIn, n, absorbed, ws.Bytes(MatMul.ScratchBytes(_kB.Expert(h, _heads), n)), pool);
            for (int t = 0; t < n; t++)
            {
                var dst = qFull.AsSpan((t * _heads + h) * latentQ, latentQ);
                absorbed.Slice(t * _kvLora, _kvLora).CopyTo(dst);
                q.Slice(t * qDim + h * headK + _nope, _ropeDims).CopyTo(dst[_kvLora..]);
            }
        }

        var attnLatent = ws.Array(Buf.Attn, n * _heads * _kvLora);
        if (_topK > 0 && Sparse(batch, _topK))
        {
            // Each query reads only the tokens its indexer scores highest; per token, the positions, then the counts.
            int k = _topK;
            var selected = ws.IntArray(IntBuf.Selected, n * (k + 1));
            if (_indexer is not null)
            {
                var counts = selected.AsSpan(n * k, n);
                // Sized for the whole context at once, so decoding does not grow it step by step.
                var scores = ws.Array(Buf.IndexerScores, cache.ContextLength);
                var keys = ws.Array(Buf.CacheRow, pool.Threads * _indexer.KeyWidth);
                for (int t = 0; t < n; t++)
                    counts[t] = _indexer.Select(ctx, layer, t, indexerQ, indexerW, latentQ, scores, keys, selected.AsSpan(t * k, k));
            }
            // else: a shared layer, the choice of the last full layer is still in the workspace
            SparseAttention.Run(ctx, layer, qFull, _heads, latentQ, _kvLora, _scale, selected, n * k, k, attnLatent);
        }
        else AttentionKernel.Run(ctx, layer, qFull, _heads * latentQ, _heads, 1, latentQ, _kvLora, keyOffset: 0, valueOffset: 0, _scale, attnLatent);

        // Expand each head's latent result with attn_v_b, then project out.
        var heads = ws.Floats(Buf.FfnGate, n * _heads * _headDimV);
        var latentIn = ws.Floats(Buf.Latent, n * _kvLora);
        var headOut = ws.Floats(Buf.FfnUp, n * _headDimV);
        for (int h = 0; h < _heads; h++)
        {
            for (int t = 0; t < n; t++) attnLatent.AsSpan((t * _heads + h) * _kvLora, _kvLora).CopyTo(latentIn.Slice(t * _kvLora, _kvLora));
            var vb = _vB.Expert(h, _heads);
            MatMul.Multiply(vb, latentIn, n, headOut, ws.Bytes(MatMul.ScratchBytes(vb, n)), pool);
            for (int t = 0; t < n; t++) headOut.Slice(t * _headDimV, _headDimV).CopyTo(heads.Slice((t * _heads + h) * _headDimV, _headDimV));
        }
        _o.Forward(heads, n, output, ws, pool);
    }

    /// <summary>Some token of the batch sees more cached tokens than the indexer keeps (below that, attention is dense).</summary>
    private static bool Sparse(ForwardBatch batch, int topK)
    {
        for (int t = 0; t < batch.Count; t++)
            if (batch.Positions[t] + 1 > topK) return true;
        return false;
    }
}
