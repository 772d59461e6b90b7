using Kaiyuan.Gguf;
using System.Runtime.InteropServices;
using Kaiyuan.Tensors;

namespace Kaiyuan.Inference;

/// <summary>
/// Paged attention cache. Memory is a pool of fixed-size blocks of <see cref="BlockTokens"/> token rows; each sequence
/// has a block table that maps its positions onto blocks, so sequences hold only the blocks their tokens fill and can
/// share blocks (prefix caching, see <see cref="PrefixCache"/>). Each layer stores one row per token whose width the
/// layer's attention block chooses: K and V for grouped-query attention, the compressed latent and rotary key for
/// multi-head latent attention. Rows are F32 by default (what llama.cpp's goldens were made with), or F16 / Q8_0 to
/// halve or quarter the memory.
/// </summary>
/// <remarks>
/// The pool's memory is materialised in segments as blocks are first used, so resident memory follows the most tokens
/// ever held at once, not sequences × context. A block's rows are contiguous, so the attention kernel's tiles
/// (<see cref="Models.Blocks.AttentionKernel"/>, one block each) read straight from the pool.
/// </remarks>
internal sealed class KvCache
{
    /// <summary>Token rows per block; equal to the attention kernel's tile so a tile never straddles two blocks.</summary>
    public const int BlockTokens = 32;
    private const int SegmentBlocks = 16;

    private readonly List<byte[]>[] _segments;
    private readonly int[] _rowBytes;
    private readonly int[][] _tables;
    private readonly Stack<int> _free = new();
    private int _materialized;

    /// <param name="rowWidths">Floats per token row, per layer.</param>
    /// <param name="sequences">Block tables (sequences that can be evaluated at once).</param>
    /// <param name="contextLength">Positions one sequence may hold at most.</param>
    /// <param name="type">Row storage type.</param>
    /// <param name="capacityBlocks">Blocks the pool may hold at most; 0: enough for every sequence's full context.</param>
    public KvCache(IReadOnlyList<int> rowWidths, int sequences, int contextLength, GgmlType type = GgmlType.F32, int capacityBlocks = 0)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0)) throw new NotSupportedException($"KV cache type {type} is not supported (f32, f16, q8_0)");
        ArgumentOutOfRangeException.ThrowIfLessThan(sequences, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        Sequences = sequences;
        ContextLength = contextLength;
        Type = type;
        RowWidths = rowWidths.ToArray();
        var (block, _) = GgmlTypeInfo.Geometry(type);
        foreach (int w in RowWidths)
            if (w % block != 0) throw new NotSupportedException($"KV cache type {type} needs rows that are a multiple of {block} values; this model's are {w}");
        _rowBytes = RowWidths.Select(w => (int)GgmlTypeInfo.RowBytes(type, w)).ToArray();
        BlocksPerSequence = BlocksFor(contextLength);
        long wanted = capacityBlocks > 0 ? capacityBlocks : (long)sequences * BlocksPerSequence;
        CapacityBlocks = (int)Math.Min(wanted, int.MaxValue / 2);
        foreach (int b in _rowBytes)
            if ((long)b * BlockTokens * SegmentBlocks > Array.MaxLength) throw new OutOfMemoryException("a KV cache row is too large");
        // Memory is taken as tokens arrive, but one sequence must be able to reach its full context.
        long full = (long)BlocksPerSequence * BytesPerBlock, available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (full > available)
            throw new OutOfMemoryException($"a KV cache for {contextLength:N0} tokens needs {full / (1 << 20):N0} MiB, more than the {available / (1 << 20):N0} MiB this process may use; lower --ctx-size");
        _segments = _rowBytes.Select(_ => new List<byte[]>()).ToArray();
        // Tables are sized for the full context up front, so a decode step that opens a block allocates nothing.
        _tables = new int[sequences][];
        for (int s = 0; s < sequences; s++) _tables[s] = Enumerable.Repeat(-1, BlocksPerSequence).ToArray();
    }

    public int Sequences { get; }
    /// <summary>The recurrent layers' per-sequence state of a hybrid model (null when every layer attends over rows).</summary>
    public RecurrentState? Recurrent { get; init; }
    /// <summary>Positions one sequence may hold at most.</summary>
    public int ContextLength { get; }
    public GgmlType Type { get; }
    public int[] RowWidths { get; }
    public bool IsF32 => Type == GgmlType.F32;
    /// <summary>Blocks a sequence of the full context length needs.</summary>
    public int BlocksPerSequence { get; }
    /// <summary>Blocks the pool may hold at most.</summary>
    public int CapacityBlocks { get; }
    /// <summary>Blocks that can be handed out without evicting anything.</summary>
    public int FreeBlocks => _free.Count + (CapacityBlocks - _materialized);

    /// <summary>Bytes per cached token across all layers.</summary>
    public long BytesPerToken => _rowBytes.Sum(b => (long)b);
    public long BytesPerBlock => BytesPerToken * BlockTokens;
    /// <summary>Bytes of pool memory that exist now.</summary>
    public long ResidentBytes => (long)_segments[0].Count * SegmentBlocks * BytesPerBlock + (Recurrent?.ResidentBytes ?? 0);

    public static int BlocksFor(int tokens) => (tokens + BlockTokens - 1) / BlockTokens;

    /// <summary>Takes a block from the pool (materialising memory when none is free); false when the pool is full.</summary>
    public bool TryAllocate(out int block)
    {
        if (_free.TryPop(out block)) return true;
        if (_materialized == CapacityBlocks) { block = -1; return false; }
        if (_materialized % SegmentBlocks == 0)
            for (int l = 0; l < _segments.Length; l++) _segments[l].Add(new byte[(long)_rowBytes[l] * BlockTokens * SegmentBlocks]);
        block = _materialized++;
        return true;
    }

    /// <summary>Returns a block to the pool.</summary>
    public void Release(int block)
    {
        if ((uint)block >= (uint)_materialized) throw new ArgumentOutOfRangeException(nameof(block));
        _free.Push(block);
    }

    /// <summary>The blocks of a sequence's table, in position order (entries past the blocks in use are -1).</summary>
    public Span<int> Table(int sequence) => _tables[sequence];

    /// <summary>A sequence's table with room for <paramref name="blocks"/> entries.</summary>
    public Span<int> EnsureTable(int sequence, int blocks)
    {
        if (blocks > BlocksPerSequence) throw new ContextOverflowException($"{blocks} blocks exceed the context size of {ContextLength} tokens");
        return _tables[sequence];
    }

    /// <summary>
    /// Gives a sequence its own blocks for positions 0…<paramref name="length"/>−1, allocating the ones it lacks; false
    /// when the pool runs out (the blocks taken so far stay in the table). For callers that share nothing.
    /// </summary>
    public bool Reserve(int sequence, int length)
    {
        if (length > ContextLength) throw new ContextOverflowException($"{length} tokens exceed the context size of {ContextLength}");
        var table = _tables[sequence];
        for (int i = 0; i < BlocksFor(length); i++)
        {
            if (table[i] >= 0) continue;
            if (!TryAllocate(out table[i])) return false;
        }
        return true;
    }

    private Span<byte> BlockBytes(int layer, int block)
    {
        if ((uint)block >= (uint)_materialized) throw new InvalidOperationException($"KV block {block} does not exist");
        int size = _rowBytes[layer] * BlockTokens;
        return _segments[layer][block / SegmentBlocks].AsSpan(block % SegmentBlocks * size, size);
    }

    private Span<byte> RowBytes(int layer, int sequence, int position, int count)
    {
        var table = _tables[sequence];
        int index = position / BlockTokens, within = position % BlockTokens;
        if (index >= table.Length || table[index] < 0) throw new InvalidOperationException($"position {position} of sequence {sequence} has no KV block");
        if (within + count > BlockTokens) throw new ArgumentOutOfRangeException(nameof(count), "rows straddle two KV blocks");
        return BlockBytes(layer, table[index]).Slice(within * _rowBytes[layer], count * _rowBytes[layer]);
    }

    /// <summary>Stores a row (converting to the cache's type).</summary>
    public void Write(int layer, int sequence, int position, ReadOnlySpan<float> row) =>
        QuantizedDot.QuantizeActivations(Type, row[..RowWidths[layer]], RowBytes(layer, sequence, position, 1));

    /// <summary>Reads a row back as floats.</summary>
    public void Read(int layer, int sequence, int position, Span<float> row) =>
        Dequantize.Row(Type, RowBytes(layer, sequence, position, 1), row[..RowWidths[layer]]);

    /// <summary>
    /// Reads floats <paramref name="start"/>… of a row (as many as <paramref name="values"/> holds) without converting the
    /// rest; <paramref name="start"/> must fall on a block of the cache's type (a whole number of its blocks).
    /// </summary>
    public void ReadPart(int layer, int sequence, int position, int start, Span<float> values) =>
        ReadTile(layer, sequence, position, 1, start, values.Length, values, values.Length);

    /// <summary>
    /// Converts floats <paramref name="start"/>… (as many as <paramref name="length"/>) of <paramref name="count"/>
    /// consecutive rows of one block into <paramref name="dst"/>, rows <paramref name="dstStride"/> floats apart: one
    /// lookup for the whole tile; <paramref name="start"/> and <paramref name="length"/> fall on whole blocks of the type.
    /// </summary>
    public void ReadTile(int layer, int sequence, int position, int count, int start, int length, Span<float> dst, int dstStride)
    {
        var rows = RowBytes(layer, sequence, position, count);
        int rowBytes = _rowBytes[layer], offset = (int)GgmlTypeInfo.RowBytes(Type, start), part = (int)GgmlTypeInfo.RowBytes(Type, length);
        if (Type is GgmlType.F16 or GgmlType.Q8_0)
        {
            // Checked once for the tile, then converted row by row without slicing.
            if ((long)(count - 1) * dstStride + length > dst.Length || offset + part > rowBytes) throw new ArgumentOutOfRangeException(nameof(dst));
            unsafe
            {
                fixed (byte* src = rows)
                fixed (float* to = dst)
                    for (int r = 0; r < count; r++)
                    {
                        if (Type == GgmlType.F16) Half16.Widen((ushort*)(src + r * rowBytes + offset), to + r * dstStride, length);
                        else Dequantize.Q8_0Blocks(src + r * rowBytes + offset, to + r * dstStride, length / 32);
                    }
            }
            return;
        }
        for (int r = 0; r < count; r++) Dequantize.Row(Type, rows.Slice(r * rowBytes + offset, part), dst.Slice(r * dstStride, length));
    }

    /// <summary><paramref name="count"/> consecutive rows of one block in place, <c>RowWidths[layer]</c> floats apart; only for an F32 cache.</summary>
    public ReadOnlySpan<float> RowsF32(int layer, int sequence, int position, int count) =>
        MemoryMarshal.Cast<byte, float>(RowBytes(layer, sequence, position, count));

    /// <summary>Copies the first <paramref name="rows"/> rows of every layer from one block to another (copy on write).</summary>
    public void CopyRows(int fromBlock, int toBlock, int rows)
    {
        for (int l = 0; l < _segments.Length; l++)
            BlockBytes(l, fromBlock)[..(rows * _rowBytes[l])].CopyTo(BlockBytes(l, toBlock));
    }

    /// <summary>A block's raw rows in one layer (persistence).</summary>
    public Span<byte> BlockData(int layer, int block) => BlockBytes(layer, block);
}
