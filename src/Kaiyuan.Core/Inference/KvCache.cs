namespace Kaiyuan.Inference;

/// <summary>
/// Attention cache for a number of independent sequences ("slots"). Each layer stores one row per (slot, position)
/// whose width the layer's attention block chooses: K and V for grouped-query attention, the compressed latent and
/// rotary key for multi-head latent attention. Kept in F32 so results match llama.cpp's F32-cache goldens.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _layers;

    public KvCache(IReadOnlyList<int> rowWidths, int slots, int contextLength)
    {
        Slots = slots;
        ContextLength = contextLength;
        RowWidths = rowWidths.ToArray();
        _layers = RowWidths.Select(w => new float[checked((long)w * slots * contextLength)]).ToArray();
    }

    public int Slots { get; }
    public int ContextLength { get; }
    public int[] RowWidths { get; }

    /// <summary>Bytes per cached token across all layers.</summary>
    public long BytesPerToken => RowWidths.Sum(w => (long)w) * sizeof(float);

    public Span<float> Row(int layer, int slot, int position)
    {
        int w = RowWidths[layer];
        return _layers[layer].AsSpan(((slot * ContextLength) + position) * w, w);
    }

    /// <summary>All rows of a slot from position 0, for attention over the cached prefix.</summary>
    public float[] LayerArray(int layer) => _layers[layer];

    public int SlotOffset(int layer, int slot) => slot * ContextLength * RowWidths[layer];
}
