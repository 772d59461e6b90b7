using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models;

/// <summary>
/// A decoder-only transformer assembled from blocks: token embedding, a stack of <see cref="TransformerLayer"/>s,
/// final RMS norm and output head. The whole forward pass is <see cref="Forward"/>.
/// </summary>
public sealed class TransformerModel : IDisposable
{
    private readonly GgufFile _file;
    private readonly WeightCopies? _copies;

    internal TransformerModel(GgufFile file, ModelConfig config, QuantMatrix embedding, IReadOnlyList<TransformerLayer> layers, float[] outputNorm, QuantMatrix output,
        NextnPredictor? nextn = null, WeightCopies? copies = null)
    {
        _file = file;
        _copies = copies;
        Config = config;
        Embedding = embedding;
        Layers = layers;
        OutputNorm = outputNorm;
        Output = output;
        int embd = config.EmbeddingLength;
        Blocks.Shapes.Require(embedding.Columns == embd, "token_embd.weight", $"has rows of {embedding.Columns} values, expected {embd}");
        Blocks.Shapes.Require(output.Columns == embd, "output.weight", $"has rows of {output.Columns} values, expected {embd}");
        Blocks.Shapes.Require(embedding.Rows == output.Rows, "token_embd.weight", $"has {embedding.Rows} tokens, the output {output.Rows}");
        Blocks.Shapes.Vector(outputNorm, embd, "output_norm.weight");
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            CheckLayer(l, $"blk.{i}.", embd);
        }
        if (nextn is not null)
        {
            CheckLayer(nextn.Layer, $"blk.{layers.Count}.", embd);
            nextn.CheckShapes(layers.Count, embd, output.Rows);
        }
        NextN = nextn;
    }

    private static void CheckLayer(TransformerLayer l, string prefix, int embd)
    {
        Blocks.Shapes.Vector(l.AttentionNorm, embd, prefix + "attn_norm.weight");
        Blocks.Shapes.Vector(l.PostAttentionNorm, embd, prefix + "post_attention_norm.weight");
        Blocks.Shapes.Vector(l.FeedForwardNorm, embd, prefix + "ffn_norm.weight");
        Blocks.Shapes.Vector(l.PostFeedForwardNorm, embd, prefix + "post_ffw_norm.weight");
        l.Attention.CheckShapes(embd);
        l.FeedForward.CheckShapes(embd);
    }

    /// <summary>The GGUF file whose mapped tensors hold the weights; the model owns it and disposes it.</summary>
    public GgufFile File => _file;
    internal ModelConfig Config { get; }
    /// <summary>The architecture (<c>general.architecture</c>), e.g. <c>qwen3</c>.</summary>
    public string Architecture => Config.Architecture;
    /// <summary>The context length the model was trained for.</summary>
    public int TrainedContextLength => Config.ContextLength;
    internal QuantMatrix Embedding { get; }
    internal IReadOnlyList<TransformerLayer> Layers { get; }
    internal float[] OutputNorm { get; }
    internal QuantMatrix Output { get; }
    /// <summary>The multi-token-prediction module the file carries after its main stack (DeepSeek-V3, GLM-4.5); null: none.</summary>
    internal NextnPredictor? NextN { get; }
    /// <summary>Whether the file carries a multi-token-prediction (NextN) layer that can draft for it (<c>--mtp</c>).</summary>
    public bool HasMultiTokenPrediction => NextN is not null;
    /// <summary>Logits per token: the rows of the output head.</summary>
    public int VocabSize => Output.Rows;

    /// <summary>The model's hyper-parameters.</summary>
    public ModelShape Shape => ModelShape.From(Config);

    /// <summary>Bytes the KV cache takes per token with rows stored as <paramref name="cacheType"/>, over all layers.</summary>
    public long KvCacheBytesPerToken(Gguf.GgmlType cacheType = Gguf.GgmlType.F32) =>
        CacheRowWidths.Sum(w => Gguf.GgmlTypeInfo.RowBytes(cacheType, w));

    /// <summary>Floats each layer caches per token.</summary>
    internal int[] CacheRowWidths => Layers.Select(l => l.Attention.CacheRowWidth).ToArray();

    /// <summary>Floats of recurrent state each layer keeps per sequence (0 for attention layers).</summary>
    internal int[] StateWidths => Layers.Select(l => l.Attention.StateWidth).ToArray();

    /// <summary>Whether some layers keep a recurrent state instead of (or beside) cached rows: a hybrid model such as Qwen3.5.</summary>
    public bool IsRecurrent => Layers.Any(l => l.Attention.StateWidth > 0);

    /// <summary>Bytes of recurrent state per sequence (constant, whatever its length); 0 for a plain transformer.</summary>
    public long RecurrentStateBytes => StateWidths.Sum(w => (long)w) * sizeof(float);

    /// <summary>A paged KV cache for this model: <paramref name="sequences"/> block tables over a pool of
    /// <paramref name="capacityBlocks"/> blocks (0: every sequence's full context), with recurrent state beside it for a hybrid model.</summary>
    internal KvCache CreateCache(int sequences, int contextLength, Gguf.GgmlType type = Gguf.GgmlType.F32, int capacityBlocks = 0) =>
        new(CacheRowWidths, sequences, contextLength, type, capacityBlocks) { Recurrent = IsRecurrent ? new RecurrentState(StateWidths, sequences) : null };

    /// <summary>
    /// Runs the batch through the model like <see cref="Forward"/> and writes every token's final (output-normed) hidden
    /// state, rows of EmbeddingLength, into <paramref name="hidden"/>: what embeddings pool.
    /// </summary>
    internal void ForwardHidden(ForwardContext ctx, Span<float> hidden)
    {
        int n = ctx.Batch.Count, d = Config.EmbeddingLength;
        using var pass = ctx.Tuner.Begin(ctx.Pool, n);
        var x = RunLayers(ctx);
        for (int t = 0; t < n; t++) VectorOps.RmsNorm(x.Slice(t * d, d), OutputNorm, hidden.Slice(t * d, d), Config.RmsEpsilon);
    }

    /// <summary>Embeds the batch and runs every layer; returns the residual stream (rows of EmbeddingLength).</summary>
    private Span<float> RunLayers(ForwardContext ctx)
    {
        var (batch, cache, ws, _) = ctx;
        int n = batch.Count, d = Config.EmbeddingLength;
        for (int t = 0; t < n; t++)
        {
            if ((uint)batch.Tokens[t] >= (uint)Embedding.Rows) throw new ArgumentOutOfRangeException(nameof(ctx), $"token id {batch.Tokens[t]} is outside the vocabulary (0…{Embedding.Rows - 1})");
            if ((uint)batch.Positions[t] >= (uint)cache.ContextLength) throw new ArgumentOutOfRangeException(nameof(ctx), $"position {batch.Positions[t]} is beyond the context size {cache.ContextLength}");
        }

        if (cache.Recurrent is { } state) ContinueStates(batch, state);

        var x = ws.Floats(Buf.Hidden, n * d);
        for (int t = 0; t < n; t++) Embedding.DequantizeRow(batch.Tokens[t], x.Slice(t * d, d));

        var normed = ws.Floats(Buf.Normed, n * d);
        var blockOut = ws.Floats(Buf.BlockOut, n * d);
        float eps = Config.RmsEpsilon;
        for (int l = 0; l < Layers.Count; l++) RunLayer(ctx, Layers[l], l, x, normed, blockOut, d, eps);
        if (cache.Recurrent is { } after)
            for (int t = 0; t < n; t++) after.SetLength(batch.Slots[t], batch.Positions[t] + 1);
        return x;
    }

    /// <summary>One decoder block over the batch's rows of <paramref name="x"/> (the residual stream, updated in place), its keys and values in cache layer <paramref name="cacheLayer"/>.</summary>
    internal static void RunLayer(ForwardContext ctx, TransformerLayer layer, int cacheLayer, Span<float> x, Span<float> normed, Span<float> blockOut, int d, float eps)
    {
        int n = ctx.Batch.Count;
        NormRows(x, normed, layer.AttentionNorm, n, d, eps);
        layer.Attention.Forward(ctx, cacheLayer, normed, blockOut);
        if (layer.PostAttentionNorm is not null) NormRows(blockOut, blockOut, layer.PostAttentionNorm, n, d, eps);
        VectorOps.Add(x, blockOut);

        NormRows(x, normed, layer.FeedForwardNorm, n, d, eps);
        layer.FeedForward.Forward(ctx, normed, n, blockOut);
        if (layer.PostFeedForwardNorm is not null) NormRows(blockOut, blockOut, layer.PostFeedForwardNorm, n, d, eps);
        VectorOps.Add(x, blockOut);
    }

    /// <summary>
    /// A recurrent state can only go on from where it stopped: each sequence's tokens must be consecutive in the batch and
    /// start at position 0 (a fresh state) or at the state's length. Anything else would silently mix histories.
    /// </summary>
    private static void ContinueStates(ForwardBatch batch, RecurrentState state)
    {
        for (int t = 0; t < batch.Count; t++)
        {
            int slot = batch.Slots[t], position = batch.Positions[t];
            if (t > 0 && slot == batch.Slots[t - 1])
            {
                if (position != batch.Positions[t - 1] + 1) throw new InvalidOperationException($"sequence {slot}: positions {batch.Positions[t - 1]} and {position} are not consecutive");
                continue;
            }
            for (int u = 0; u < t; u++)
                if (batch.Slots[u] == slot) throw new InvalidOperationException($"sequence {slot}: its tokens are not together in the batch");
            if (position == 0) state.Reset(slot);
            else if (state.Length(slot) != position)
                throw new InvalidOperationException($"sequence {slot}: its recurrent state holds {state.Length(slot)} tokens, the batch continues at {position}");
        }
    }

    /// <summary>
    /// Runs the batch through the model, appending its keys/values to the cache, and writes logits for the tokens
    /// flagged in <paramref name="wantLogits"/> (in batch order) into <paramref name="logits"/> (rows of VocabSize), and,
    /// when <paramref name="hidden"/> is not empty, every token's final (output-normed) hidden state into it: what a
    /// multi-token-prediction layer drafts from.
    /// </summary>
    internal void Forward(ForwardContext ctx, ReadOnlySpan<bool> wantLogits, Span<float> logits, Span<float> hidden = default)
    {
        var (batch, _, ws, pool) = ctx;
        int n = batch.Count, d = Config.EmbeddingLength;
        float eps = Config.RmsEpsilon;
        using var pass = ctx.Tuner.Begin(pool, n);
        var x = RunLayers(ctx);
        var normed = ws.Floats(Buf.Normed, n * d);
        if (!hidden.IsEmpty) NormRows(x, hidden, OutputNorm, n, d, eps);

        // Only the requested rows go through the output head (the vocabulary projection dominates small models).
        int outputs = 0;
        for (int t = 0; t < n; t++)
        {
            if (!wantLogits[t]) continue;
            if (hidden.IsEmpty) VectorOps.RmsNorm(x.Slice(t * d, d), OutputNorm, normed.Slice(outputs * d, d), eps);
            else hidden.Slice(t * d, d).CopyTo(normed.Slice(outputs * d, d));
            outputs++;
        }
        if (outputs > 0)
            MatMul.Multiply(Output, normed, outputs, logits[..(outputs * VocabSize)], ws.Bytes(MatMul.ScratchBytes(Output, outputs)), pool);
    }

    private static void NormRows(ReadOnlySpan<float> src, Span<float> dst, float[] weight, int n, int d, float eps)
    {
        for (int t = 0; t < n; t++) VectorOps.RmsNorm(src.Slice(t * d, d), weight, dst.Slice(t * d, d), eps);
    }

    /// <summary>Closes the GGUF file, unmapping the weights, and frees the weights copied from it; neither the model nor its sessions may be used afterwards.</summary>
    public void Dispose()
    {
        _file.Dispose();
        _copies?.Dispose();
    }
}
