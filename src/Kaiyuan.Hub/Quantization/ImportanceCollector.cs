using Kaiyuan.Gguf;
using Kaiyuan.Kernels;

namespace Kaiyuan.Quantization;

/// <summary>
/// Accumulates what llama.cpp's <c>llama-imatrix</c> accumulates: for every weight matrix of the layers
/// (<c>blk.*</c>, as llama.cpp collects by default), per column the sum of its input values and of their squares, and
/// per stacked matrix (expert, head) the number of input rows it saw. Sums are kept in double so a long calibration
/// text does not lose small contributions; they are stored as F32, as llama.cpp stores them.
/// </summary>
internal sealed class ImportanceCollector : IActivationObserver
{
    private sealed class Entry(int columns, int matrices)
    {
        public readonly int Columns = columns;
        public readonly double[] Sums = new double[columns * matrices];
        public readonly double[] SquareSums = new double[columns * matrices];
        public readonly long[] Counts = new long[matrices];
    }

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public int EntryCount => _entries.Count;

    public void Observe(in QuantMatrix weight, ReadOnlySpan<float> x, int tokens)
    {
        string name = weight.Name!;
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return;
        if (!_entries.TryGetValue(name, out var e))
            _entries[name] = e = new Entry(weight.Columns, weight.Matrices);
        if (e.Columns != weight.Columns || e.Counts.Length != weight.Matrices)
            throw new InvalidOperationException($"'{name}' was seen as {e.Columns} × {e.Counts.Length} and now as {weight.Columns} × {weight.Matrices}");
        int offset = weight.Matrix * e.Columns;
        for (int t = 0; t < tokens; t++)
        {
            var row = x.Slice(t * e.Columns, e.Columns);
            for (int j = 0; j < row.Length; j++)
            {
                e.Sums[offset + j] += row[j];
                e.SquareSums[offset + j] += (double)row[j] * row[j];
            }
        }

        e.Counts[weight.Matrix] += tokens;
    }

    /// <summary>Writes llama.cpp's imatrix GGUF: per entry (sorted by name) <c>in_sum2</c>, <c>counts</c> and <c>in_sum</c>.</summary>
    public void Save(string path, IReadOnlyList<string> datasets, int chunkCount, int chunkSize)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.type", GgufValue.Of("imatrix"));
        writer.Metadata.Set("imatrix.datasets", GgufValue.Of(GgufArray.Of(datasets.ToArray())));
        writer.Metadata.Set("imatrix.chunk_count", GgufValue.Of((uint)chunkCount));
        writer.Metadata.Set("imatrix.chunk_size", GgufValue.Of((uint)chunkSize));
        foreach (var (name, e) in _entries.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            int matrices = e.Counts.Length;
            writer.AddTensor(name + ".in_sum2", Array.ConvertAll(e.SquareSums, v => (float)v), e.Columns, matrices);
            writer.AddTensor(name + ".counts", Array.ConvertAll(e.Counts, c => (float)c), 1, matrices);
            writer.AddTensor(name + ".in_sum", Array.ConvertAll(e.Sums, v => (float)v), e.Columns, matrices);
        }

        writer.Write(path);
    }
}
