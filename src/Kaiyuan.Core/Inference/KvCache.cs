using System.Runtime.InteropServices;
using Kaiyuan.Tensors;

namespace Kaiyuan.Inference;

/// <summary>
/// Attention cache for a number of independent sequences ("slots"). Each layer stores one row per (slot, position)
/// whose width the layer's attention block chooses: K and V for grouped-query attention, the compressed latent and
/// rotary key for multi-head latent attention. Rows are F32 by default (what llama.cpp's goldens were made with),
/// or F16 / Q8_0 to halve or quarter the memory.
/// </summary>
public sealed class KvCache
{
    private readonly byte[][] _layers;
    private readonly int[] _rowBytes;

    public KvCache(IReadOnlyList<int> rowWidths, int slots, int contextLength, GgmlType type = GgmlType.F32)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0)) throw new NotSupportedException($"KV cache type {type} is not supported (f32, f16, q8_0)");
        Slots = slots;
        ContextLength = contextLength;
        Type = type;
        RowWidths = rowWidths.ToArray();
        var (block, _) = GgmlTypeInfo.Geometry(type);
        foreach (int w in RowWidths)
            if (w % block != 0) throw new NotSupportedException($"KV cache type {type} needs rows that are a multiple of {block} values; this model's are {w}");
        _rowBytes = RowWidths.Select(w => (int)GgmlTypeInfo.RowBytes(type, w)).ToArray();
        _layers = _rowBytes.Select(b =>
        {
            long size = (long)b * slots * contextLength;
            if (size > Array.MaxLength) throw new OutOfMemoryException($"a KV cache layer of {size:N0} bytes is too large; lower --ctx-size or --parallel");
            return new byte[size];
        }).ToArray();
    }

    public int Slots { get; }
    public int ContextLength { get; }
    public GgmlType Type { get; }
    public int[] RowWidths { get; }
    public bool IsF32 => Type == GgmlType.F32;

    /// <summary>Bytes per cached token across all layers.</summary>
    public long BytesPerToken => _rowBytes.Sum(b => (long)b);

    public long TotalBytes => _layers.Sum(l => (long)l.Length);

    private int Offset(int layer, int slot, int position) => ((slot * ContextLength) + position) * _rowBytes[layer];

    /// <summary>Stores a row (converting to the cache's type).</summary>
    public void Write(int layer, int slot, int position, ReadOnlySpan<float> row)
    {
        var dst = _layers[layer].AsSpan(Offset(layer, slot, position), _rowBytes[layer]);
        QuantizedDot.QuantizeActivations(Type, row[..RowWidths[layer]], dst);
    }

    /// <summary>Reads a row back as floats.</summary>
    public void Read(int layer, int slot, int position, Span<float> row) =>
        Dequantize.Row(Type, _layers[layer].AsSpan(Offset(layer, slot, position), _rowBytes[layer]), row[..RowWidths[layer]]);

    /// <summary>A row in place; only for an F32 cache.</summary>
    public ReadOnlySpan<float> RowF32(int layer, int slot, int position) =>
        MemoryMarshal.Cast<byte, float>(_layers[layer].AsSpan(Offset(layer, slot, position), _rowBytes[layer]));

    /// <summary><paramref name="count"/> consecutive rows in place, <c>RowWidths[layer]</c> floats apart; only for an F32 cache.</summary>
    public ReadOnlySpan<float> RowsF32(int layer, int slot, int position, int count) =>
        MemoryMarshal.Cast<byte, float>(_layers[layer].AsSpan(Offset(layer, slot, position), count * _rowBytes[layer]));

    /// <summary>Copies a slot's first <paramref name="length"/> rows to another slot (prompt-prefix reuse).</summary>
    public void CopySlot(int fromSlot, int toSlot, int length)
    {
        for (int l = 0; l < _layers.Length; l++)
            _layers[l].AsSpan(Offset(l, fromSlot, 0), length * _rowBytes[l]).CopyTo(_layers[l].AsSpan(Offset(l, toSlot, 0)));
    }
}
