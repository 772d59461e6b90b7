using System.Runtime.InteropServices;
using Kaiyuan.Gguf;
using Kaiyuan.Models;
using Kaiyuan.Quantization;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Quantization;

/// <summary>
/// <c>kaiyuan imatrix</c>'s collection against a direct computation from the model file, llama.cpp's two file forms
/// read back, malformed files refused, and <c>kaiyuan quantize --imatrix</c>'s checks and records.
/// </summary>
public sealed class ImportanceMatrixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-imatrix-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string TempFile(string name) => Path.Combine(_dir, name);

    private static int[] Tokens(int count, int vocabulary, int seed)
    {
        var random = new Random(seed);
        // Ids from 3 up: past the control tokens, so every position is an ordinary token.
        return Enumerable.Range(0, count).Select(_ => random.Next(3, vocabulary)).ToArray();
    }

    /// <summary>
    /// Layer 0's attention projections all take RMSNorm(embedding)·attn_norm, which needs nothing but the file to
    /// compute, so their importance is checked against that directly; the other entries against what every entry
    /// must satisfy (counts, shared inputs, the Cauchy–Schwarz bound between the two sums).
    /// </summary>
    [Fact]
    public void DenseModelMatchesADirectComputationOfTheFirstLayersInputs()
    {
        string path = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        using var model = ModelLoader.Load(path);
        const int chunk = 32, chunks = 3;
        int[] tokens = Tokens(chunk * chunks + 5, model.VocabSize, 1);
        string output = TempFile("a.imatrix.gguf");
        var progress = new List<double>();
        var matrix = ImportanceMatrix.Compute(model, tokens, output, new ImportanceOptions
        {
            ChunkSize = chunk,
            Threads = 2,
            Bos = 1,
            Dataset = "random ids",
            Progress = (_, _, ppl) => progress.Add(ppl),
        });
        Assert.Equal(chunks, progress.Count);
        Assert.All(progress, p => Assert.True(p > 1 && double.IsFinite(p)));
        Assert.Equal(chunks, matrix.ChunkCount);
        Assert.Equal(["random ids"], matrix.Datasets);
        int layers = model.Layers.Count;
        Assert.Equal(7 * layers, matrix.EntryCount);

        using var written = GgufFile.Open(output);
        Assert.Equal("imatrix", written.Metadata.GetString("general.type"));
        Assert.Equal(32u, (uint)written.Metadata.GetInteger("imatrix.chunk_size"));
        foreach (var counts in written.Tensors.Where(t => t.Name.EndsWith(".counts", StringComparison.Ordinal)))
            Assert.Equal(chunk * chunks, MemoryMarshal.Cast<byte, float>(counts.Bytes)[0]);

        // The direct computation: embedding rows (each chunk starting with BOS), RMS-normalised, times attn_norm.
        using var file = GgufFile.Open(path);
        var embedding = file.GetTensor("token_embd.weight");
        float[] norm = MemoryMarshal.Cast<byte, float>(file.GetTensor("blk.0.attn_norm.weight").Bytes).ToArray();
        float epsilon = model.Config.RmsEpsilon;
        int d = norm.Length;
        var expected = new double[d];
        var row = new float[d];
        for (int c = 0; c < chunks; c++)
        {
            for (int i = 0; i < chunk; i++)
            {
                int id = i == 0 ? 1 : tokens[c * chunk + i];
                Dequantize.Row(embedding.Type, embedding.Row(id), row);
                double meanSquare = row.Sum(v => (double)v * v) / d;
                double scale = 1 / Math.Sqrt(meanSquare + epsilon);
                for (int j = 0; j < d; j++) expected[j] += Math.Pow(row[j] * scale * norm[j], 2);
            }
        }

        foreach (string projection in new[] { "attn_q", "attn_k", "attn_v" })
        {
            Assert.True(matrix.TryGet($"blk.0.{projection}.weight", out var values));
            for (int j = 0; j < d; j++)
            {
                double want = expected[j] / (chunk * chunks);
                Assert.True(Math.Abs(values[j] - want) <= 1e-4 * want + 1e-9, $"{projection} column {j}: {values[j]} vs {want}");
            }
        }

        // Every column: in_sum2 · count ≥ in_sum², the mean square at least the squared mean.
        foreach (var sums in written.Tensors.Where(t => t.Name.EndsWith(".in_sum", StringComparison.Ordinal)))
        {
            string name = sums.Name[..^".in_sum".Length];
            var s1 = MemoryMarshal.Cast<byte, float>(sums.Bytes);
            var s2 = MemoryMarshal.Cast<byte, float>(written.GetTensor(name + ".in_sum2").Bytes);
            for (int j = 0; j < s1.Length; j++) Assert.True(s2[j] * (chunk * chunks) * (1 + 1e-5) >= (double)s1[j] * s1[j], $"{name} column {j}");
        }
    }

    /// <summary>Stacked experts get one importance row and one count each; every token is counted once per expert it is routed to.</summary>
    [Fact]
    public void MixtureOfExpertsCountsEachExpertsTokens()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("qwen3moe", "qwen3moe-f32.gguf"));
        const int chunk = 32;
        string output = TempFile("moe.imatrix.gguf");
        var matrix = ImportanceMatrix.Compute(model, Tokens(2 * chunk, model.VocabSize, 2), output, new ImportanceOptions { ChunkSize = chunk, Threads = 2 });
        using var written = GgufFile.Open(output);
        int experts = (int)model.File.Metadata.GetInteger("qwen3moe.expert_count");
        int used = (int)model.File.Metadata.GetInteger("qwen3moe.expert_used_count");
        foreach (string tensor in new[] { "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps" })
        {
            var counts = written.GetTensor($"blk.0.{tensor}.weight.counts");
            Assert.Equal([1L, experts], counts.Dimensions);
            Assert.Equal(2 * chunk * used, MemoryMarshal.Cast<byte, float>(counts.Bytes).ToArray().Sum());
            Assert.True(matrix.TryGet($"blk.0.{tensor}.weight", out var values));
            Assert.Equal(model.File.GetTensor($"blk.0.{tensor}.weight").RowLength * experts, values.Length);
        }
    }

    /// <summary>llama.cpp's older .dat form: values stored as mean square × calls, read back as the mean square.</summary>
    [Fact]
    public void LegacyDatFilesAreRead()
    {
        string path = TempFile("old.dat");
        using (var writer = new BinaryWriter(File.Create(path)))
        {
            writer.Write(2);
            foreach (var (name, calls, values) in new[] { ("blk.0.attn_q.weight", 4, new[] { 4f, 8f }), ("blk.0.ffn_down.weight", 0, new[] { 3f }) })
            {
                writer.Write(name.Length);
                writer.Write(System.Text.Encoding.UTF8.GetBytes(name));
                writer.Write(calls);
                writer.Write(values.Length);
                foreach (float v in values) writer.Write(v);
            }

            writer.Write(10);
            writer.Write("wiki.txt".Length);
            writer.Write("wiki.txt"u8.ToArray());
        }

        var matrix = ImportanceMatrix.Load(path);
        Assert.Equal(2, matrix.EntryCount);
        Assert.Equal(10, matrix.ChunkCount);
        Assert.Equal(["wiki.txt"], matrix.Datasets);
        Assert.True(matrix.TryGet("blk.0.attn_q.weight", out var q));
        Assert.Equal([1f, 2f], q);
        Assert.True(matrix.TryGet("blk.0.ffn_down.weight", out var down));
        Assert.Equal([3f], down); // no calls recorded: the values as stored
    }

    [Fact]
    public void MalformedFilesAreRefusedWithWhatIsWrong()
    {
        string truncated = TempFile("truncated.dat");
        File.WriteAllBytes(truncated, [1, 0, 0, 0, 100, 0, 0, 0, (byte)'b']);
        Assert.Contains("name length", Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(truncated)).Message);

        string huge = TempFile("huge.dat");
        File.WriteAllBytes(huge, [1, 0, 0, 0, 1, 0, 0, 0, (byte)'w', 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F]);
        Assert.Contains("value count", Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(huge)).Message);

        string empty = TempFile("empty.dat");
        File.WriteAllBytes(empty, []);
        Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(empty));

        string noCounts = TempFile("no-counts.gguf");
        var writer = new GgufWriter();
        writer.Metadata.Set("general.type", GgufValue.Of("imatrix"));
        writer.AddTensor("blk.0.attn_q.weight.in_sum2", new float[32], 32, 1);
        writer.Write(noCounts);
        Assert.Contains(".counts", Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(noCounts)).Message);

        string negative = TempFile("negative.gguf");
        writer = new GgufWriter();
        writer.AddTensor("blk.0.attn_q.weight.in_sum2", new float[32], 32, 1);
        writer.AddTensor("blk.0.attn_q.weight.counts", [-1f], 1, 1);
        writer.Write(negative);
        Assert.Contains("count -1", Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(negative)).Message);

        string model = TempFile("model.gguf");
        writer = new GgufWriter();
        writer.Metadata.Set("general.type", GgufValue.Of("model"));
        writer.AddTensor("blk.0.attn_q.weight.in_sum2", new float[32], 32, 1);
        writer.Write(model);
        Assert.Contains("not an importance matrix", Assert.Throws<InvalidDataException>(() => ImportanceMatrix.Load(model)).Message);
    }

    /// <summary>
    /// A matrix that saw no tokens gets importance 1 (llama-quantize's rule); the quantized file records the matrix's
    /// source in llama-quantize's keys; a matrix of the wrong shape for a tensor stops the run, naming it.
    /// </summary>
    [Fact]
    public void QuantizeRecordsTheMatrixAndRefusesOneOfAnotherShape()
    {
        string path = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        using var input = GgufFile.Open(path);
        string imatrix = TempFile("x.imatrix.gguf");
        var writer = new GgufWriter();
        writer.Metadata.Set("general.type", GgufValue.Of("imatrix"));
        writer.Metadata.Set("imatrix.datasets", GgufValue.Of(GgufArray.Of(["calibration.txt"])));
        writer.Metadata.Set("imatrix.chunk_count", GgufValue.Of(7u));
        var q = input.GetTensor("blk.0.attn_q.weight");
        writer.AddTensor("blk.0.attn_q.weight.in_sum2", Enumerable.Range(0, (int)q.RowLength).Select(j => (float)j).ToArray(), q.RowLength, 1);
        writer.AddTensor("blk.0.attn_q.weight.counts", [0f], 1, 1);
        writer.Write(imatrix);
        var matrix = ImportanceMatrix.Load(imatrix);
        Assert.True(matrix.TryGet("blk.0.attn_q.weight", out var values));
        Assert.All(values, v => Assert.Equal(1f, v));

        string output = TempFile("q8.gguf");
        new ModelQuantizer { Threads = 2, Importance = matrix, ImportanceFile = imatrix }.Quantize(input, output, FileType.Q8_0);
        using (var quantized = GgufFile.Open(output))
        {
            Assert.Equal(imatrix, quantized.Metadata.GetString("quantize.imatrix.file"));
            Assert.Equal("calibration.txt", quantized.Metadata.GetString("quantize.imatrix.dataset"));
            Assert.Equal(1, quantized.Metadata.GetInteger("quantize.imatrix.entries_count"));
            Assert.Equal(7, quantized.Metadata.GetInteger("quantize.imatrix.chunks_count"));
        }

        string wrong = TempFile("wrong.imatrix.gguf");
        writer = new GgufWriter();
        writer.AddTensor("blk.0.attn_q.weight.in_sum2", new float[q.RowLength * 2], q.RowLength * 2, 1);
        writer.AddTensor("blk.0.attn_q.weight.counts", [1f], 1, 1);
        writer.Write(wrong);
        var e = Assert.Throws<InvalidDataException>(() =>
            new ModelQuantizer { Threads = 2, Importance = ImportanceMatrix.Load(wrong) }.Quantize(input, TempFile("never.gguf"), FileType.Q4_0));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.False(File.Exists(TempFile("never.gguf")));
    }
}
