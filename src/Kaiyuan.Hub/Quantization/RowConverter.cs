using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Quantization;

/// <summary>Produces the float values of one row of a tensor.</summary>
internal delegate void RowSource(long row, Span<float> values);

/// <summary>
/// Converts a tensor row by row into a block type and streams it out: rows are produced and quantized in parallel
/// batches of a few megabytes, so tensors larger than memory pass through. Shared by <c>quantize</c> and <c>synth</c>.
/// With an <c>importance</c> (columns × matrices, as <see cref="ImportanceMatrix"/> holds it), row r is quantized with
/// the slice of matrix r / <c>rowsPerMatrix</c>.
/// </summary>
internal static class RowConverter
{
    public static void Write(Stream stream, long rows, int rowLength, GgmlType type, int threads, RowSource source,
        RowQuantizer quantize, Action<long> rowsDone, long batchBytes = 16L << 20, float[]? importance = null, long rowsPerMatrix = 1)
    {
        int outRowBytes = checked((int)GgmlTypeInfo.RowBytes(type, rowLength));
        int batchRows = (int)Math.Clamp(batchBytes / Math.Max(1, outRowBytes), 1, Math.Max(1, rows));
        var batch = new byte[(long)batchRows * outRowBytes];
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
        using var floats = new ThreadLocal<float[]>(() => new float[rowLength]);
        for (long first = 0; first < rows; first += batchRows)
        {
            int count = (int)Math.Min(batchRows, rows - first);
            long start = first;
            Parallel.For(0, count, options, i =>
            {
                var row = floats.Value!;
                source(start + i, row);
                long r = start + i;
                var weights = importance is null ? default : importance.AsSpan(checked((int)(r / rowsPerMatrix * rowLength)), rowLength);
                quantize(type, row, batch.AsSpan(i * outRowBytes, outRowBytes), weights);
            });
            stream.Write(batch, 0, count * outRowBytes);
            rowsDone(count);
        }
    }
}
