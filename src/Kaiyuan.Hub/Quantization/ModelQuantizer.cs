using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Quantization;

/// <summary>
/// Quantizes one row of floats into the bytes of a row of <paramref name="type"/> (its block layout), weighting each
/// element's error by its column's <paramref name="importance"/> (empty: no importance matrix).
/// </summary>
internal delegate void RowQuantizer(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance);

/// <summary>
/// Rewrites a GGUF file in a quantization mix (<c>kaiyuan quantize</c>): every tensor takes the type
/// <see cref="TensorTypePlan"/> chooses, converted row by row on several threads (each row read as floats, then written
/// as F16/BF16/F32 here or through <see cref="RowQuantizer"/> for block types). Metadata is copied in order, with
/// <c>general.file_type</c> and <c>general.quantization_version</c> set as llama.cpp sets them and split keys dropped.
/// </summary>
public sealed class ModelQuantizer
{
    /// <summary>GGML's quantization format version, written to <c>general.quantization_version</c>.</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>Writes rows of block-quantized types (llama.cpp's reference quantizers by default); F32, F16 and BF16 are converted here.</summary>
    internal RowQuantizer QuantizeRow { get; init; } = Tensors.Quantize.Row;
    /// <summary>Which block types <see cref="QuantizeRow"/> can write.</summary>
    public Func<GgmlType, bool> CanQuantize { get; init; } = Tensors.Quantize.IsSupported;
    /// <summary>Threads converting rows at once (values below 1 count as 1); the processor count by default.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Elements converted so far and in all.</summary>
    public Action<long, long>? Progress { get; init; }
    /// <summary>
    /// The importance matrix the quantizers weight their errors by (llama-quantize's <c>--imatrix</c>), or null. A tensor
    /// it covers must match its columns × matrices (the token embedding, which it never covers properly, is then
    /// quantized without it); its source is recorded in the <c>quantize.imatrix.*</c> keys.
    /// </summary>
    public ImportanceMatrix? Importance { get; init; }
    /// <summary>Where <see cref="Importance"/> was read from, for <c>quantize.imatrix.file</c>.</summary>
    public string? ImportanceFile { get; init; }

    /// <summary>Plans, converts and writes <paramref name="output"/> (atomically). Returns the plan that was carried out.</summary>
    public IReadOnlyList<TensorPlan> Quantize(GgufFile input, string output, FileType mix)
    {
        var plan = TensorTypePlan.Plan(input, mix, withImportance: Importance is not null);
        foreach (var p in plan.Where(p => p.Convert))
        {
            if (!GgmlTypeInfo.IsKnown(p.Tensor.Type)) throw new NotSupportedException($"tensor '{p.Tensor.Name}' has type {p.Tensor.Type}, which cannot be read");
            if (!IsFloat(p.Type) && !CanQuantize(p.Type))
                throw new NotSupportedException($"tensor '{p.Tensor.Name}' would be {p.Type}{(p.Note is null ? "" : $" ({p.Note})")}, which this build cannot write");
        }

        var writer = new GgufWriter { Alignment = input.Alignment };
        foreach (var (key, value) in input.Metadata.Entries)
            if (!key.StartsWith("split.", StringComparison.Ordinal)) writer.Metadata.Set(key, value);
        // As gguf_set_val_* does in llama.cpp: a key set again moves to the end.
        writer.Metadata.Remove("general.quantization_version");
        writer.Metadata.Set("general.quantization_version", GgufValue.Of(QuantizationVersion));
        writer.Metadata.Remove("general.file_type");
        writer.Metadata.Set("general.file_type", GgufValue.Of((uint)mix));
        if (Importance is { } importance)
        {
            // The keys llama-quantize records, so a reader can tell what the low-bit tensors were tuned on.
            if (ImportanceFile is not null) writer.Metadata.Set("quantize.imatrix.file", GgufValue.Of(ImportanceFile));
            if (importance.Datasets.Count > 0) writer.Metadata.Set("quantize.imatrix.dataset", GgufValue.Of(importance.Datasets[0]));
            writer.Metadata.Set("quantize.imatrix.entries_count", GgufValue.Of((uint)importance.EntryCount));
            if (importance.ChunkCount > 0) writer.Metadata.Set("quantize.imatrix.chunks_count", GgufValue.Of((uint)importance.ChunkCount));
        }

        var weights = plan.Where(p => p.Convert).ToDictionary(p => p.Tensor.Name, p => ImportanceOf(p.Tensor, p.Type), StringComparer.Ordinal);
        // As llama-quantize, refuse before writing anything: the 1- and 2-bit grid types are unusable without importance.
        if (plan.FirstOrDefault(p => p.Convert && weights[p.Tensor.Name] is null && Tensors.IqGridQuantizer.RequiresImportance(p.Type)) is { Tensor: not null } bare)
        {
            throw new ArgumentException(Importance is null
                ? $"the {mix} mix needs an importance matrix (kaiyuan quantize --imatrix FILE): tensor '{bare.Tensor.Name}' would be {bare.Type}"
                : $"the importance matrix has no entry for '{bare.Tensor.Name}', which would be {bare.Type} and needs one");
        }

        long total = plan.Where(p => p.Convert).Sum(p => p.Tensor.ElementCount), done = 0;
        Progress?.Invoke(0, total);
        foreach (var p in plan)
        {
            var t = p.Tensor;
            if (!p.Convert)
            {
                writer.AddTensor(t.Name, t.Type, t.Dimensions, stream => CopyRows(t, stream));
                continue;
            }
            writer.AddTensor(t.Name, p.Type, t.Dimensions, stream =>
            {
                Convert(t, p.Type, weights[t.Name], stream, rows => Progress?.Invoke(done += rows * t.RowLength, total));
            });
        }
        writer.Write(output);
        return plan;
    }

    private static bool IsFloat(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    private static void CopyRows(GgufTensor t, Stream stream)
    {
        if (t.ByteSize <= int.MaxValue)
        {
            stream.Write(t.Bytes);
            return;
        }
        for (long r = 0; r < t.RowCount; r++) stream.Write(t.Row(r));
    }

    /// <summary>The importance of <paramref name="t"/>'s columns per matrix (its experts, for a stacked MoE tensor), if any.</summary>
    private float[]? ImportanceOf(GgufTensor t, GgmlType type)
    {
        if (Importance is null || IsFloat(type) || !Importance.TryGet(t.Name, out var values)) return null;
        long matrices = t.Dimensions.Skip(2).Aggregate(1L, (a, b) => a * b);
        if (values.Length == t.RowLength * matrices) return values;
        // llama-quantize stops here too: quantizing most of a model silently without its importance matrix is worse.
        if (t.Name == "token_embd.weight") return null;
        throw new InvalidDataException($"the importance matrix has {values.Length} values for '{t.Name}', which needs {t.RowLength} × {matrices}");
    }

    // Quantize.Row writes F32, F16 and BF16 rows too, rounding as ggml does.
    private void Convert(GgufTensor t, GgmlType type, float[]? importance, Stream stream, Action<long> rowsDone) =>
        RowConverter.Write(stream, t.RowCount, checked((int)t.RowLength), type, Threads,
            (r, values) => Dequantize.Row(t.Type, t.Row(r), values), QuantizeRow, rowsDone,
            importance: importance, rowsPerMatrix: t.Dimensions.Length > 1 ? t.Dimensions[1] : 1);

}
