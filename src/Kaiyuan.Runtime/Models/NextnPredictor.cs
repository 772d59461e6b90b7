using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models;

/// <summary>
/// The multi-token-prediction (NextN) module DeepSeek-V3 and GLM-4.5 ship after their main stack (llama.cpp's
/// <c>blk.N.nextn.*</c> tensors, N = the main layer count). At position i it reads the main model's final hidden state
/// h_i and the token that followed, t_{i+1}, and predicts t_{i+2}:
/// x = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]), one decoder layer with its own cached keys and values,
/// y = shared_head_norm(x), logits = head(y). Its y stands in for h at the next position when it drafts further.
/// </summary>
internal sealed class NextnPredictor
{
    private readonly int _embd, _vocab;
    private readonly float _eps;

    public NextnPredictor(ModelConfig config, TransformerLayer layer, float[] embedNorm, float[] hiddenNorm, Linear projection,
        float[] headNorm, QuantMatrix embedding, QuantMatrix head)
    {
        Layer = layer;
        EmbedNorm = embedNorm;
        HiddenNorm = hiddenNorm;
        Projection = projection;
        HeadNorm = headNorm;
        Embedding = embedding;
        Head = head;
        _embd = config.EmbeddingLength;
        _vocab = head.Rows;
        _eps = config.RmsEpsilon;
    }

    /// <summary>The decoder layer (attention and feed-forward, dense or experts, as the family wires its layers).</summary>
    public TransformerLayer Layer { get; }
    public float[] EmbedNorm { get; }
    public float[] HiddenNorm { get; }
    /// <summary><c>eh_proj</c>: twice the width in (embedding half first), the width out.</summary>
    public Linear Projection { get; }
    public float[] HeadNorm { get; }
    /// <summary>The module's own token embedding, or the model's when the file shares it.</summary>
    public QuantMatrix Embedding { get; }
    /// <summary>The module's own output head, or the model's when the file shares it.</summary>
    public QuantMatrix Head { get; }

    /// <summary>
    /// Builds the module from layer <paramref name="layer"/>'s tensors when the file has them all; null when the metadata
    /// announces a NextN layer whose tensors the converter left out (older llama.cpp conversions): the main model runs
    /// without it either way.
    /// </summary>
    public static NextnPredictor? TryBuild(ModelBuilder b, IModelFamily family, int layer, QuantMatrix embedding, QuantMatrix output)
    {
        if (!b.Has(layer, "nextn.eh_proj")) return null;
        try
        {
            return Build(b, family, layer, embedding, output);
        }
        catch (NotSupportedException)
        {
            // A tensor the layer needs is missing. Malformed tensors are still load errors.
            return null;
        }
    }

    private static NextnPredictor Build(ModelBuilder b, IModelFamily family, int layer, QuantMatrix embedding, QuantMatrix output) =>
        new(b.Config, family.BuildLayer(b, layer),
            b.Norm(layer, "nextn.enorm"), b.Norm(layer, "nextn.hnorm"), b.Linear(layer, "nextn.eh_proj"),
            b.Norm(layer, "nextn.shared_head_norm"),
            b.Has(layer, "nextn.embed_tokens") ? b.Matrix(layer, "nextn.embed_tokens") : embedding,
            b.Has(layer, "nextn.shared_head_head") ? b.Matrix(layer, "nextn.shared_head_head") : output);

    /// <summary>Refuses, at load, tensors of layer <paramref name="layer"/> that do not fit the model's width and vocabulary.</summary>
    public void CheckShapes(int layer, int embd, int vocab)
    {
        string p = $"blk.{layer}.nextn.";
        Shapes.Vector(EmbedNorm, embd, p + "enorm.weight");
        Shapes.Vector(HiddenNorm, embd, p + "hnorm.weight");
        Shapes.Vector(HeadNorm, embd, p + "shared_head_norm.weight");
        Shapes.Input(Projection, 2 * embd);
        Shapes.Output(Projection, embd);
        Shapes.Require(Embedding.Columns == embd && Embedding.Rows == vocab, p + "embed_tokens.weight", $"is {Embedding.Columns} × {Embedding.Rows}, expected {embd} × {vocab}");
        Shapes.Require(Head.Columns == embd && Head.Rows == vocab, p + "shared_head_head.weight", $"is {Head.Columns} × {Head.Rows}, expected {embd} × {vocab}");
    }

    /// <summary>A KV cache for the module's one layer.</summary>
    public KvCache CreateCache(int sequences, int contextLength, Gguf.GgmlType type) => new([Layer.Attention.CacheRowWidth], sequences, contextLength, type);

    /// <summary>
    /// Runs the batch (its tokens are the t_{i+1}, its positions the i) with <paramref name="hidden"/>'s rows as the h_i,
    /// caching the layer's keys and values at those positions. Writes each row's y into <paramref name="output"/> and the
    /// logits of the rows flagged in <paramref name="wantLogits"/> (in batch order) into <paramref name="logits"/>.
    /// </summary>
    public void Forward(ForwardContext ctx, ReadOnlySpan<float> hidden, ReadOnlySpan<bool> wantLogits, Span<float> output, Span<float> logits)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count, d = _embd;
        for (int t = 0; t < n; t++)
        {
            if ((uint)batch.Tokens[t] >= (uint)Embedding.Rows) throw new ArgumentOutOfRangeException(nameof(ctx), $"token id {batch.Tokens[t]} is outside the vocabulary (0…{Embedding.Rows - 1})");
            if ((uint)batch.Positions[t] >= (uint)cache.ContextLength) throw new ArgumentOutOfRangeException(nameof(ctx), $"position {batch.Positions[t]} is beyond the context size {cache.ContextLength}");
        }
        var joined = ws.Floats(Buf.NextnInput, n * 2 * d);
        var normed = ws.Floats(Buf.Normed, n * d);
        var blockOut = ws.Floats(Buf.BlockOut, n * d);
        for (int t = 0; t < n; t++)
        {
            var embedded = joined.Slice(t * 2 * d, d);
            // The first position has no token before it to stand for; the reference implementations zero its embedding.
            if (batch.Positions[t] == 0) embedded.Clear();
            else
            {
                Embedding.DequantizeRow(batch.Tokens[t], normed[..d]);
                VectorOps.RmsNorm(normed[..d], EmbedNorm, embedded, _eps);
            }
            VectorOps.RmsNorm(hidden.Slice(t * d, d), HiddenNorm, joined.Slice(t * 2 * d + d, d), _eps);
        }
        var x = ws.Floats(Buf.Hidden, n * d);
        Projection.Forward(joined, n, x, ws, pool);
        TransformerModel.RunLayer(ctx, Layer, 0, x, normed, blockOut, d, _eps);
        int outputs = 0;
        for (int t = 0; t < n; t++)
        {
            VectorOps.RmsNorm(x.Slice(t * d, d), HeadNorm, output.Slice(t * d, d), _eps);
            if (wantLogits[t]) output.Slice(t * d, d).CopyTo(normed.Slice(outputs++ * d, d));
        }
        if (outputs > 0)
            MatMul.Multiply(Head, normed, outputs, logits[..(outputs * _vocab)], ws.Bytes(MatMul.ScratchBytes(Head, outputs)), pool);
    }
}
