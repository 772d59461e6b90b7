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

    [Theory]
    [MemberData(nameof(Mixes))]
    [MemberData(nameof(ImatrixMixes))]
    public void EveryTensorGetsLlamaCppsType(string folder, string source, string mixName)
    {
        using var input = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{source}.gguf"));
        using var reference = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"));
        Assert.True(FileTypes.TryParse(mixName, out var mix), mixName);
        Assert.Equal((long)mix, reference.Metadata.GetInteger("general.file_type"));

        var plan = TensorTypePlan.Plan(input, mix);
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

    /// <summary>Quantizes a fixture to a mix into a temporary file and hands it, opened, to <paramref name="check"/> with llama.cpp's file.</summary>
    private static void Quantized(string folder, string source, string mixName, Action<string, GgufFile, GgufFile> check)
    {
        using var input = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{source}.gguf"));
        using var reference = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-{mixName}.gguf"));
        Assert.True(FileTypes.TryParse(mixName, out var mix));
        var output = Path.Combine(Path.GetTempPath(), $"kaiyuan-quantize-{Guid.NewGuid():N}.gguf");
        try
        {
            new ModelQuantizer { Threads = 2 }.Quantize(input, output, mix);
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
