using Kaiyuan.Gguf;
using Kaiyuan.Quantization;

namespace Kaiyuan.Tests.Quantization;

/// <summary>
/// <c>kaiyuan quantize</c>'s per-tensor type choices against llama.cpp's quantized fixtures: quantizing the F32 fixture of a
/// model to a mix must give every tensor the type llama.cpp's file of that mix has.
/// </summary>
public sealed class QuantizePlanTests
{
    public static TheoryData<string, string, string> Mixes()
    {
        var data = new TheoryData<string, string, string>();
        void Add(string folder, string source, params string[] mixes)
        {
            foreach (var mix in mixes) data.Add(folder, source, mix);
        }
        Add("llama", "f32", "bf16", "f16", "q2_k", "q3_k_m", "q4_0", "q4_1", "q4_k_m", "q5_0", "q5_1", "q5_k_m", "q6_k", "q8_0");
        foreach (var folder in new[] { "qwen2", "qwen3", "qwen3moe", "glm4", "deepseek2" }) Add(folder, "f32", "q4_0", "q4_k_m", "q6_k", "q8_0");
        foreach (var folder in new[] { "glm4moe", "minimax-m2", "stories260K" }) Add(folder, "f32", "q4_k_m", "q8_0");
        Add("aidreams260K", "f32", "f16", "q6_k");
        Add("deepseek2-yarn", "f16", "q8_0");
        return data;
    }

    /// <summary>Mixes whose fixtures llama.cpp made with an importance matrix that none of their tensors used (see
    /// <see cref="TernaryFilesAreLlamaCppsToTheByteButTheImportanceMatrixKeys"/>).</summary>
    public static TheoryData<string, string, string> ImatrixMixes() => new() { { "llama", "f32", "tq1_0" }, { "llama", "f32", "tq2_0" } };

    /// <summary>IQ4 fixtures, made with an importance matrix that their IQ4 and K-quant tensors used (see
    /// <see cref="Iq4FilesAreLlamaCppsWhereNoImportanceMatrixWasUsed"/>).</summary>
    public static TheoryData<string, string, string> Iq4Mixes() => new()
    {
        { "llama", "f32", "iq4_nl" }, { "llama", "f32", "iq4_xs" }, { "qwen3moe", "f32", "iq4_xs" }, { "deepseek2", "f32", "iq4_xs" },
    };

    /// <summary>Grid i-quant fixtures (IQ2_*, IQ3_*), made with an importance matrix as llama.cpp requires for most of them.</summary>
    public static TheoryData<string, string, string> GridMixes()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var mix in new[] { "iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_s", "iq3_m" }) data.Add("llama", "f32", mix);
        foreach (var folder in new[] { "qwen3moe", "deepseek2" })
        {
            data.Add(folder, "f32", "iq2_xxs");
            data.Add(folder, "f32", "iq3_xxs");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Mixes))]
    [MemberData(nameof(ImatrixMixes))]
    [MemberData(nameof(Iq4Mixes))]
    [MemberData(nameof(GridMixes))]
    public void EveryTensorGetsLlamaCppsType(string folder, string source, string mixName)
    {
        using var input = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{source}.gguf"));
        using var reference = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"));
        Assert.True(FileTypes.TryParse(mixName, out var mix), mixName);
        Assert.Equal((long)mix, reference.Metadata.GetInteger("general.file_type"));

        // The i-quant fixtures were made with an importance matrix, which some of their rules depend on.
        var plan = TensorTypePlan.Plan(input, mix, withImportance: mixName.StartsWith("iq", StringComparison.Ordinal));
        Assert.Equal(reference.Tensors.Select(t => t.Name), plan.Select(p => p.Tensor.Name));
        var wrong = plan.Zip(reference.Tensors)
            .Where(x => x.First.Type != x.Second.Type)
            .Select(x => $"{x.Second.Name}: planned {x.First.Type}, llama.cpp {x.Second.Type}")
            .ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    /// <summary>
    /// The whole file, bytes and all, is llama-quantize's: metadata in its order, tensors in its order and types, data
    /// from the same reference quantizers (no importance matrix), alignment padding. One exception: deepseek2-yarn's only
    /// float file is F16 while llama.cpp quantized its Q8_0 from the F32 original, so there the quantized values are
    /// held to within two Q8_0 steps (2·amax/127 per block row) of llama.cpp's instead.
    /// </summary>
    [Theory]
    [MemberData(nameof(Mixes))]
    public void TheFileIsByteIdenticalToLlamaCpps(string folder, string source, string mixName) =>
        Quantized(folder, source, mixName, (output, result, reference) =>
        {
            Assert.Equal(reference.Metadata.Keys, result.Metadata.Keys);
            CompareTensors(result, reference, exact: source == "f32");
            if (source == "f32")
                Assert.True(File.ReadAllBytes(output).AsSpan().SequenceEqual(File.ReadAllBytes(reference.Path)), "the whole file differs from llama.cpp's");
        });

    /// <summary>
    /// Files llama-quantize made with an importance matrix differ from ours only by its metadata: the ternary quantizers
    /// take none, and the matrix has no entries for the token embedding and output, so every tensor is llama.cpp's to the byte.
    /// </summary>
    [Theory]
    [MemberData(nameof(ImatrixMixes))]
    public void TernaryFilesAreLlamaCppsToTheByteButTheImportanceMatrixKeys(string folder, string source, string mixName) =>
        Quantized(folder, source, mixName, (_, result, reference) =>
        {
            Assert.Equal(reference.Metadata.Keys.Where(k => !k.StartsWith("quantize.imatrix.", StringComparison.Ordinal)), result.Metadata.Keys);
            CompareTensors(result, reference, exact: true);
        });

    /// <summary>
    /// Our IQ4 files differ from llama-quantize's only where its importance matrix was used: the metadata but for the
    /// matrix's keys, every tensor's type and shape, and the bytes of the tensors the matrix does not reach (the token
    /// embedding, which is looked up rather than multiplied, the output head, which llama-imatrix leaves out, Q8_0, which
    /// ignores it, and the unquantized ones) are equal.
    /// </summary>
    [Theory]
    [MemberData(nameof(Iq4Mixes))]
    public void Iq4FilesAreLlamaCppsWhereNoImportanceMatrixWasUsed(string folder, string source, string mixName) =>
        Quantized(folder, source, mixName, (_, result, reference) => AssertLlamaCppsWhereNoImportanceMatrixWasUsed(result, reference));

    /// <summary>
    /// A model we quantized to an IQ4 mix loads and runs: fed llama.cpp's F32 greedy ids, its logits stay as close to the
    /// F32 goldens as llama.cpp's own IQ4 file's do, give or take (ours has no importance matrix to lean on).
    /// </summary>
    [Theory]
    [InlineData("llama", "iq4_nl")]
    [InlineData("llama", "iq4_xs")]
    [InlineData("qwen3moe", "iq4_xs")]
    public void Iq4ModelsRunCloseToF32(string folder, string mixName) =>
        Quantized(folder, "f32", mixName, (output, _, _) =>
        {
            var cases = Kaiyuan.Tests.Models.Goldens.Load(folder, "f32");
            float ours = WorstLogitDifference(output, cases), theirs = WorstLogitDifference(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"), cases);
            TestContext.Current.TestOutputHelper?.WriteLine($"{folder} {mixName}: max |Δlogit| vs F32 {ours:G3} (llama.cpp's file with its importance matrix: {theirs:G3})");
            Assert.True(ours <= Math.Max(1.5f * theirs, 0.5f), $"{folder} {mixName}: ours differs from F32 by {ours}, llama.cpp's by {theirs}");
        });

    /// <summary>
    /// Our grid i-quant files, quantized with an importance matrix computed here on the F32 model, have llama.cpp's
    /// metadata (but for the matrix's keys), tensor types and shapes, and its bytes wherever its importance matrix was not
    /// used: the token embedding and output head (IQ3_S, Q2_K, Q5_K …) and the unquantized tensors.
    /// </summary>
    [Theory]
    [MemberData(nameof(GridMixes))]
    public void GridFilesAreLlamaCppsWhereNoImportanceMatrixWasUsed(string folder, string source, string mixName) =>
        Quantized(folder, source, mixName, (_, result, reference) => AssertLlamaCppsWhereNoImportanceMatrixWasUsed(result, reference),
            importance: ComputedImportance(folder));

    /// <summary>
    /// Metadata (but the importance-matrix keys) and every tensor's name, type and shape as llama.cpp's file, and the bytes
    /// of the tensors its importance matrix did not cover (token embedding, output, Q8_0 and F32) too.
    /// </summary>
    private static void AssertLlamaCppsWhereNoImportanceMatrixWasUsed(GgufFile result, GgufFile reference)
    {
        static IEnumerable<string> Keys(GgufFile f) => f.Metadata.Keys.Where(k => !k.StartsWith("quantize.imatrix.", StringComparison.Ordinal));
        Assert.Equal(Keys(reference), Keys(result));
        Assert.Equal(reference.Tensors.Count, result.Tensors.Count);
        int identical = 0;
        foreach (var (ours, theirs) in result.Tensors.Zip(reference.Tensors))
        {
            Assert.Equal(theirs.Name, ours.Name);
            Assert.Equal(theirs.Type, ours.Type);
            Assert.Equal(theirs.Dimensions, ours.Dimensions);
            if (theirs.Name is not ("token_embd.weight" or "output.weight") && theirs.Type is not (GgmlType.Q8_0 or GgmlType.F32)) continue;
            Assert.True(ours.Bytes.SequenceEqual(theirs.Bytes), $"{ours.Name} ({ours.Type}): bytes differ from llama.cpp's");
            identical++;
        }

        Assert.True(identical >= 2);
    }

    /// <summary>
    /// A model we quantized to a grid mix with an importance matrix computed on random text loads and runs: its logits
    /// on llama.cpp's F32 greedy ids stay about as close to the F32 goldens as llama.cpp's own file's (made with a
    /// matrix from real text) do.
    /// </summary>
    [Theory]
    [InlineData("llama", "iq1_s")]
    [InlineData("llama", "iq1_m")]
    [InlineData("llama", "iq2_xxs")]
    [InlineData("llama", "iq2_xs")]
    [InlineData("llama", "iq2_s")]
    [InlineData("llama", "iq2_m")]
    [InlineData("llama", "iq3_xxs")]
    [InlineData("llama", "iq3_s")]
    [InlineData("llama", "iq3_m")]
    [InlineData("qwen3moe", "iq2_xxs")]
    [InlineData("qwen3moe", "iq3_xxs")]
    public void GridModelsRunCloseToF32(string folder, string mixName) =>
        Quantized(folder, "f32", mixName, (output, _, _) =>
        {
            var cases = Kaiyuan.Tests.Models.Goldens.Load(folder, "f32");
            float ours = WorstLogitDifference(output, cases), theirs = WorstLogitDifference(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"), cases);
            TestContext.Current.TestOutputHelper?.WriteLine($"{folder} {mixName}: max |Δlogit| vs F32 {ours:G3} (llama.cpp's file: {theirs:G3})");
            Assert.True(ours <= Math.Max(1.5f * theirs, 0.5f), $"{folder} {mixName}: ours differs from F32 by {ours}, llama.cpp's by {theirs}");
        }, importance: ComputedImportance(folder));

    /// <summary>The 1- and 2-bit mixes refuse to start without an importance matrix, naming the option, and write nothing.</summary>
    [Theory]
    [InlineData(FileType.IQ1_S)]
    [InlineData(FileType.IQ1_M)]
    [InlineData(FileType.IQ2_XXS)]
    [InlineData(FileType.IQ2_XS)]
    [InlineData(FileType.IQ2_S)]
    [InlineData(FileType.IQ2_M)]
    public void OneAndTwoBitGridMixesRequireAnImportanceMatrix(FileType mix)
    {
        using var input = GgufFile.Open(Fixtures.ModelPath("llama", "llama-f32.gguf"));
        var output = Path.Combine(Path.GetTempPath(), $"kaiyuan-never-{Guid.NewGuid():N}.gguf");
        var e = Assert.Throws<ArgumentException>(() => new ModelQuantizer { Threads = 2 }.Quantize(input, output, mix));
        Assert.Contains("--imatrix", e.Message);
        Assert.False(File.Exists(output));
    }

    private static readonly Dictionary<string, ImportanceMatrix> Importances = [];

    /// <summary>An importance matrix of a fixture's F32 model over a few chunks of random token ids (computed once per model).</summary>
    private static ImportanceMatrix ComputedImportance(string folder)
    {
        lock (Importances)
        {
            if (Importances.TryGetValue(folder, out var cached)) return cached;
            using var model = Kaiyuan.Models.ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
            var random = new Random(11);
            // Ids from 3 up: past the control tokens.
            var tokens = Enumerable.Range(0, 4 * 64).Select(_ => random.Next(3, model.VocabSize)).ToArray();
            var file = Path.Combine(Path.GetTempPath(), $"kaiyuan-imatrix-{Guid.NewGuid():N}.gguf");
            try
            {
                var matrix = ImportanceMatrix.Compute(model, tokens, file, new ImportanceOptions { ChunkSize = 64, Threads = 2 });
                Importances[folder] = matrix;
                return matrix;
            }
            finally
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>The largest logit difference from the F32 goldens over every teacher-forced step of every prompt.</summary>
    private static float WorstLogitDifference(string path, Kaiyuan.Tests.Models.GoldenCase[] cases)
    {
        using var model = Kaiyuan.Models.ModelLoader.Load(path);
        using var pool = new Kaiyuan.Kernels.WorkerPool(1);
        var session = new Kaiyuan.Inference.InferenceSession(model, 512, pool);
        float worst = 0;
        foreach (var c in cases)
        {
            session.Reset();
            var logits = session.Evaluate(c.PromptIds).ToArray();
            for (int i = 0; i < c.Ids.Length; i++)
            {
                worst = Math.Max(worst, Kaiyuan.Tests.Models.Goldens.MaxAbsDiff(logits, c.Logits[i]));
                logits = session.Evaluate([c.Ids[i]]).ToArray();
            }
        }
        return worst;
    }

    /// <summary>Quantizes a fixture to a mix into a temporary file and hands it, opened, to <paramref name="check"/> with llama.cpp's file.</summary>
    private static void Quantized(string folder, string source, string mixName, Action<string, GgufFile, GgufFile> check, ImportanceMatrix? importance = null)
    {
        using var input = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{source}.gguf"));
        using var reference = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"));
        Assert.True(FileTypes.TryParse(mixName, out var mix));
        var output = Path.Combine(Path.GetTempPath(), $"kaiyuan-quantize-{Guid.NewGuid():N}.gguf");
        try
        {
            new ModelQuantizer { Threads = 2, Importance = importance }.Quantize(input, output, mix);
            using var result = GgufFile.Open(output);
            Assert.Equal((long)mix, result.Metadata.GetInteger("general.file_type"));
            Assert.Equal(2, result.Metadata.GetInteger("general.quantization_version"));
            check(output, result, reference);
        }
        finally
        {
            File.Delete(output);
        }
    }

    private static void CompareTensors(GgufFile result, GgufFile reference, bool exact)
    {
        Assert.Equal(reference.Tensors.Count, result.Tensors.Count);
        foreach (var (ours, theirs) in result.Tensors.Zip(reference.Tensors))
        {
            Assert.Equal(theirs.Name, ours.Name);
            Assert.Equal(theirs.Type, ours.Type);
            Assert.Equal(theirs.Dimensions, ours.Dimensions);
            if (exact) Assert.True(ours.Bytes.SequenceEqual(theirs.Bytes), $"{ours.Name} ({ours.Type}): bytes differ from llama.cpp's");
            else AssertClose(ours, theirs);
        }
    }

    private static void AssertClose(GgufTensor ours, GgufTensor theirs)
    {
        int n = (int)ours.RowLength;
        var a = new float[n];
        var b = new float[n];
        for (long r = 0; r < ours.RowCount; r++)
        {
            Kaiyuan.Tensors.Dequantize.Row(ours.Type, ours.Row(r), a);
            Kaiyuan.Tensors.Dequantize.Row(theirs.Type, theirs.Row(r), b);
            float amax = 0, diff = 0;
            for (int i = 0; i < n; i++)
            {
                amax = MathF.Max(amax, MathF.Abs(b[i]));
                diff = MathF.Max(diff, MathF.Abs(a[i] - b[i]));
            }
            float bound = ours.Type is Kaiyuan.Gguf.GgmlType.F32 ? 0 : 2 * amax / 127 + 1e-6f;
            Assert.True(diff <= bound, $"{ours.Name} row {r}: differs by {diff} (bound {bound})");
        }
    }

    /// <summary>
    /// The IQ4 rules the two-layer, two-queries-per-KV-head fixtures do not reach, on real shapes: attention V in Q5_K with
    /// four or more query heads per KV head, the first eighth of <c>ffn_down</c> in Q5_K (llama.cpp's rule without an
    /// importance matrix), and rows that do not split into 256 falling back from IQ4_XS to IQ4_NL (Q5_K to Q5_1).
    /// </summary>
    [Theory]
    [InlineData(FileType.IQ4_XS)]
    [InlineData(FileType.IQ4_NL)]
    public void Iq4MixesOfRealShapes(FileType mix)
    {
        var main = mix == FileType.IQ4_XS ? GgmlType.IQ4_XS : GgmlType.IQ4_NL;
        // Llama 3.2 1B: 16 layers, 32 query heads on 8 KV heads, 2048 wide, tied output.
        var shape = Synth.Shape("llama-1b");
        var plan = TensorTypePlan.Plan(Synth.Metadata(shape, mix), Synth.Tensors(shape), mix).ToDictionary(p => p.Tensor.Name, p => p.Type);
        Assert.Equal(GgmlType.Q6_K, plan["token_embd.weight"]);
        for (int layer = 0; layer < 16; layer++)
        {
            Assert.Equal(GgmlType.Q5_K, plan[$"blk.{layer}.attn_v.weight"]);
            Assert.Equal(layer < 2 ? GgmlType.Q5_K : main, plan[$"blk.{layer}.ffn_down.weight"]);
            Assert.Equal(main, plan[$"blk.{layer}.attn_q.weight"]);
        }

        // Qwen2.5 0.5B: 896-wide rows, 14 query heads on 2 KV heads, 24 layers, tied output.
        shape = Synth.Shape("qwen2.5-0.5b");
        plan = TensorTypePlan.Plan(Synth.Metadata(shape, mix), Synth.Tensors(shape), mix).ToDictionary(p => p.Tensor.Name, p => p.Type);
        Assert.Equal(GgmlType.Q8_0, plan["token_embd.weight"]);
        Assert.Equal(GgmlType.IQ4_NL, plan["blk.5.attn_q.weight"]);
        Assert.Equal(GgmlType.Q5_1, plan["blk.5.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, plan["blk.2.ffn_down.weight"]);
        Assert.Equal(main, plan["blk.3.ffn_down.weight"]);
    }

    /// <summary>
    /// llama.cpp's two rules that depend on an importance matrix, on the 16-layer Llama 3.2 1B shape: with one, the
    /// first two <c>ffn_down</c> stay in the IQ4 type, and Q4_0/Q5_0 lift them to Q4_1/Q5_1 instead.
    /// </summary>
    [Theory]
    [InlineData(FileType.IQ4_XS, GgmlType.Q5_K, GgmlType.IQ4_XS)]
    [InlineData(FileType.Q4_0, GgmlType.Q4_0, GgmlType.Q4_1)]
    [InlineData(FileType.Q5_0, GgmlType.Q5_0, GgmlType.Q5_1)]
    public void FirstFfnDownLayersFollowTheImportanceMatrix(FileType mix, GgmlType without, GgmlType with)
    {
        var shape = Synth.Shape("llama-1b");
        foreach (bool importance in new[] { false, true })
        {
            var plan = TensorTypePlan.Plan(Synth.Metadata(shape, mix), Synth.Tensors(shape), mix, importance).ToDictionary(p => p.Tensor.Name, p => p.Type);
            for (int layer = 0; layer < 4; layer++)
                Assert.Equal(layer < 2 ? (importance ? with : without) : TensorTypePlan.DefaultType(mix), plan[$"blk.{layer}.ffn_down.weight"]);
        }
    }

    [Fact]
    public void TypesTheQuantizerCannotWriteAreRefusedBeforeWriting()
    {
        using var input = GgufFile.Open(Fixtures.ModelPath("llama", "llama-f32.gguf"));
        var output = Path.Combine(Path.GetTempPath(), $"kaiyuan-never-{Guid.NewGuid():N}.gguf");
        var e = Assert.Throws<NotSupportedException>(() =>
            new ModelQuantizer { CanQuantize = t => t != Kaiyuan.Gguf.GgmlType.Q6_K }.Quantize(input, output, FileType.Q4_K_M));
        Assert.Contains("output.weight", e.Message);
        Assert.False(File.Exists(output));
    }
}
