using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;

namespace Kaiyuan.Quantization;

/// <summary>
/// An importance matrix (llama.cpp's <c>llama-imatrix</c> output): for each weight tensor, the mean squared activation
/// of every input column over a calibration text, per expert for stacked MoE tensors. The quantizers weight each
/// element's error by its column's importance. Reads llama.cpp's GGUF form (<c>general.type = imatrix</c>; per weight
/// <c>NAME.in_sum2</c> [columns, matrices] and <c>NAME.counts</c> [1, matrices], both F32) and its older <c>.dat</c>
/// form; a value is the sum over the count, and a matrix that saw no tokens gets importance 1 everywhere, as
/// <c>llama-quantize</c> does.
/// </summary>
public sealed class ImportanceMatrix
{
    private readonly Dictionary<string, float[]> _entries;

    private ImportanceMatrix(Dictionary<string, float[]> entries, IReadOnlyList<string> datasets, int chunkCount)
    {
        _entries = entries;
        Datasets = datasets;
        ChunkCount = chunkCount;
    }

    /// <summary>The calibration texts it was computed on, as recorded in the file.</summary>
    public IReadOnlyList<string> Datasets { get; }

    /// <summary>Chunks of calibration text processed (0 when the file does not say).</summary>
    public int ChunkCount { get; }

    /// <summary>Weight tensors it covers.</summary>
    public int EntryCount => _entries.Count;

    /// <summary>The importance of every column of every matrix of <paramref name="tensorName"/> (matrix-major), if covered.</summary>
    internal bool TryGet(string tensorName, out float[] values) => _entries.TryGetValue(tensorName, out values!);

    /// <summary>
    /// Computes an importance matrix as <c>llama-imatrix</c> does: <paramref name="tokens"/> in chunks of
    /// <see cref="ImportanceOptions.ChunkSize"/>, each run from an empty cache (its first token replaced by
    /// <see cref="ImportanceOptions.Bos"/> when given), every activation entering a layer's weight matrices summed per
    /// column; writes it to <paramref name="output"/> in llama.cpp's imatrix GGUF form and returns it. Progress reports
    /// the perplexity over the second half of each chunk, as llama-imatrix prints it.
    /// </summary>
    public static ImportanceMatrix Compute(TransformerModel model, IReadOnlyList<int> tokens, string output, ImportanceOptions? options = null)
    {
        options ??= new ImportanceOptions();
        int size = options.ChunkSize;
        if (size < 16) throw new ArgumentException($"chunk size {size} is too small (at least 16)", nameof(options));
        int chunks = tokens.Count / size;
        if (options.MaxChunks > 0) chunks = Math.Min(chunks, options.MaxChunks);
        if (chunks == 0) throw new ArgumentException($"the text has {tokens.Count} tokens, fewer than one chunk of {size}", nameof(tokens));
        for (int i = 0; i < chunks * size; i++)
            if ((uint)tokens[i] >= (uint)model.VocabSize) throw new ArgumentException($"token {tokens[i]} at {i} is outside the vocabulary (0…{model.VocabSize - 1})", nameof(tokens));
        var collector = new ImportanceCollector();
        using var session = new InferenceSession(model, size, options.Threads > 0 ? options.Threads : Environment.ProcessorCount, maxBatch: size);
        var ids = new int[size];
        double negativeLogLikelihood = 0;
        long scored = 0;
        ActivationTap.Observer = collector;
        try
        {
            for (int c = 0; c < chunks; c++)
            {
                for (int i = 0; i < size; i++) ids[i] = tokens[c * size + i];
                if (options.Bos is int bos) ids[0] = bos;
                session.Reset();
                float[] logits = session.EvaluateAll(ids);
                for (int i = size / 2; i < size - 1; i++, scored++)
                    negativeLogLikelihood -= LogProbability(logits.AsSpan(i * model.VocabSize, model.VocabSize), ids[i + 1]);
                options.Progress?.Invoke(c + 1, chunks, Math.Exp(negativeLogLikelihood / Math.Max(1, scored)));
            }
        }
        finally
        {
            ActivationTap.Observer = null;
        }

        if (collector.EntryCount == 0) throw new InvalidOperationException("the model has no layer weights to collect activations for");
        collector.Save(output, [options.Dataset], chunks, size);
        return Load(output);
    }

    private static double LogProbability(ReadOnlySpan<float> logits, int token)
    {
        float max = float.NegativeInfinity;
        foreach (float v in logits) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        return logits[token] - max - Math.Log(sum);
    }

    /// <summary>Reads a GGUF or legacy <c>.dat</c> importance matrix; a malformed file fails with what is wrong.</summary>
    public static ImportanceMatrix Load(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var probe = File.OpenRead(path))
        {
            if (probe.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4) throw new InvalidDataException($"{path}: empty or truncated importance matrix");
        }

        return magic.SequenceEqual("GGUF"u8) ? LoadGguf(path) : LoadLegacy(path);
    }

    private static ImportanceMatrix LoadGguf(string path)
    {
        using var file = GgufFile.Open(path);
        if (file.Metadata.GetStringOrNull("general.type") is { } kind && kind != "imatrix")
            throw new InvalidDataException($"{path}: a GGUF of general.type '{kind}', not an importance matrix");
        var entries = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var sums in file.Tensors.Where(t => t.Name.EndsWith(".in_sum2", StringComparison.Ordinal)))
        {
            string name = sums.Name[..^".in_sum2".Length];
            var counts = file.FindTensor(name + ".counts")
                ?? throw new InvalidDataException($"{path}: '{sums.Name}' has no '{name}.counts' beside it");
            if (sums.Type != GgmlType.F32 || counts.Type != GgmlType.F32)
                throw new InvalidDataException($"{path}: '{name}' is stored as {sums.Type}/{counts.Type}; F32 expected");
            long matrices = counts.ElementCount, columns = sums.RowLength;
            if (matrices < 1 || counts.RowLength != 1 || sums.ElementCount != columns * matrices)
                throw new InvalidDataException($"{path}: '{name}' has sums {sums.ShapeText} for counts {counts.ShapeText}");
            var sum = MemoryMarshal.Cast<byte, float>(sums.Bytes);
            var count = MemoryMarshal.Cast<byte, float>(counts.Bytes);
            var values = new float[sum.Length];
            for (long m = 0; m < matrices; m++)
            {
                float c = count[(int)m];
                if (!float.IsFinite(c) || c < 0) throw new InvalidDataException($"{path}: '{name}' has count {c}");
                for (long j = 0; j < columns; j++)
                {
                    long i = m * columns + j;
                    values[i] = c > 0 ? sum[(int)i] / c : 1f;
                }
            }

            CheckFinite(path, name, values);
            entries[name] = values;
        }

        if (entries.Count == 0) throw new InvalidDataException($"{path}: no importance entries (no '*.in_sum2' tensors)");
        var datasets = file.Metadata.TryGet("imatrix.datasets", out var d) && d.Value is GgufArray { Items: string[] names } ? names : [];
        int chunks = file.Metadata.TryGet("imatrix.chunk_count", out var n) && n.Value is uint u ? (int)Math.Min(u, int.MaxValue) : 0;
        return new ImportanceMatrix(entries, datasets, chunks);
    }

    /// <summary>
    /// The legacy layout: int32 entry count; per entry an int32-prefixed name, int32 call count, int32 value count and
    /// the values (sums times calls over counts); then the int32 chunk count and an int32-prefixed dataset name.
    /// </summary>
    private static ImportanceMatrix LoadLegacy(string path)
    {
        try
        {
            return ReadLegacy(path);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path}: truncated importance matrix");
        }
    }

    private static ImportanceMatrix ReadLegacy(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        long length = stream.Length;
        // A count of items of itemBytes each, bounded by the bytes left after it, so a corrupt file cannot ask for an
        // unbounded allocation or a read past its end.
        int Count(string what, int itemBytes)
        {
            if (stream.Position + 4 > length) throw new InvalidDataException($"{path}: truncated at {what}");
            int v = reader.ReadInt32();
            if (v < 0 || (long)v * itemBytes > length - stream.Position) throw new InvalidDataException($"{path}: {what} {v} is out of range");
            return v;
        }

        int n = Count("the entry count", 1);
        if (n == 0) throw new InvalidDataException($"{path}: no importance entries");
        var entries = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (int e = 0; e < n; e++)
        {
            int nameLength = Count("a name length", 1);
            string name = Encoding.UTF8.GetString(reader.ReadBytes(nameLength));
            int calls = reader.ReadInt32();
            int values = Count($"the value count of '{name}'", 4);
            var bytes = reader.ReadBytes(values * 4);
            var data = new float[values];
            for (int i = 0; i < values; i++)
            {
                float v = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
                data[i] = calls > 0 ? v / calls : v;
            }

            CheckFinite(path, name, data);
            entries[name] = data;
        }

        int chunks = 0;
        var datasets = new List<string>();
        if (stream.Position + 4 <= length)
        {
            chunks = Math.Max(0, reader.ReadInt32());
            if (stream.Position + 4 <= length)
            {
                int nameLength = Count("the dataset name length", 1);
                datasets.Add(Encoding.UTF8.GetString(reader.ReadBytes(nameLength)));
            }
        }

        return new ImportanceMatrix(entries, datasets, chunks);
    }

    private static void CheckFinite(string path, string name, float[] values)
    {
        foreach (float v in values)
            if (!float.IsFinite(v) || v < 0) throw new InvalidDataException($"{path}: '{name}' holds importance {v}");
    }
}

/// <summary>How <see cref="ImportanceMatrix.Compute"/> runs.</summary>
public sealed class ImportanceOptions
{
    /// <summary>Tokens per chunk, each evaluated from an empty cache (llama-imatrix's context size; 512 by default).</summary>
    public int ChunkSize { get; init; } = 512;

    /// <summary>Most chunks to process (0: every whole chunk of the text).</summary>
    public int MaxChunks { get; init; }

    /// <summary>Worker threads (0: all cores).</summary>
    public int Threads { get; init; }

    /// <summary>The token every chunk starts with (the model's BOS where its vocabulary adds one), or null to keep the text's.</summary>
    public int? Bos { get; init; }

    /// <summary>The calibration text's name, recorded in <c>imatrix.datasets</c>.</summary>
    public string Dataset { get; init; } = "";

    /// <summary>After each chunk: chunks done, chunks in all, and the perplexity so far.</summary>
    public Action<int, int, double>? Progress { get; init; }
}
