using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>GGUF parsing, the vocabulary and tokenizer it carries, model loading, and a first evaluation.</summary>
internal sealed class GgufTarget : FuzzTarget
{
    public override string Name => "gguf";
    public override int MaxLength => 2 << 20;
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Gguf", "Kaiyuan.Tokenizers", "Kaiyuan.Runtime Kaiyuan.Models Kaiyuan.Inference"];

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
    [
        File.ReadAllBytes(Path.Combine(fixtures, "models/aidreams260K/aidreams260K-q6_k.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "models/aidreams260K/aidreams260K-f16.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "models/qwen3/qwen3-q4_0.gguf")),
        // A hybrid: Gated DeltaNet layers with their ssm.* hyper-parameters and recurrent state.
        File.ReadAllBytes(Path.Combine(fixtures, "models/qwen35/qwen35-q4_k_m.gguf")),
        File.ReadAllBytes(Path.Combine(fixtures, "tokenizers/ggml-vocab-bert-bge.gguf")),
    ];

    /// <summary>
    /// Small files for coverage-guided fuzzing, whose every byte a mutation may hit: aidreams260K's metadata alone (its
    /// vocabulary and hyper-parameters; the loader finds no tensors), and a one-block model on that vocabulary, 32 wide,
    /// with grouped-query attention and tensors in F32, F16, Q8_0 and Q4_0 (random weights; about 40 KB in all).
    /// </summary>
    public override IReadOnlyList<byte[]> SmallSeeds(string fixtures)
    {
        using var source = GgufFile.Open(Path.Combine(fixtures, "models/aidreams260K/aidreams260K-f32.gguf"));
        var metadataOnly = new GgufWriter();
        foreach (var (key, value) in source.Metadata.Entries) metadataOnly.Metadata.Set(key, value);

        var tiny = new GgufWriter();
        foreach (var (key, value) in source.Metadata.Entries)
            if (!key.StartsWith("llama.", StringComparison.Ordinal)) tiny.Metadata.Set(key, value);
        const int width = 32, feedForward = 64, headDim = 16, heads = 2, kvHeads = 1;
        foreach (var (key, value) in new (string, uint)[]
        {
            ("context_length", 64), ("embedding_length", width), ("feed_forward_length", feedForward), ("block_count", 1),
            ("attention.head_count", heads), ("attention.head_count_kv", kvHeads), ("rope.dimension_count", headDim),
        })
            tiny.Metadata.Set($"llama.{key}", GgufValue.Of(value));
        tiny.Metadata.Set("llama.attention.layer_norm_rms_epsilon", GgufValue.Of(1e-5f));
        int vocab = source.Metadata.TryGet("tokenizer.ggml.tokens", out var tokens) && tokens.Value is GgufArray a ? a.Count : 512;
        var random = new Random(1);
        void Add(string name, Gguf.GgmlType type, long columns, long rows = 1)
        {
            var values = new float[columns * rows];
            for (int i = 0; i < values.Length; i++) values[i] = rows == 1 ? 1 : (float)(random.NextDouble() - 0.5) * 0.2f;
            long rowBytes = GgmlTypeInfo.RowBytes(type, columns);
            var data = new byte[rowBytes * rows];
            for (long r = 0; r < rows; r++)
                Kaiyuan.Tensors.Quantize.Row(type, values.AsSpan((int)(r * columns), (int)columns), data.AsSpan((int)(r * rowBytes), (int)rowBytes));
            tiny.AddTensor(name, type, rows == 1 ? [columns] : [columns, rows], data);
        }
        Add("token_embd.weight", Gguf.GgmlType.Q8_0, width, vocab); // tied: no output.weight
        Add("output_norm.weight", Gguf.GgmlType.F32, width);
        Add("blk.0.attn_norm.weight", Gguf.GgmlType.F32, width);
        Add("blk.0.attn_q.weight", Gguf.GgmlType.Q8_0, width, heads * headDim);
        Add("blk.0.attn_k.weight", Gguf.GgmlType.Q4_0, width, kvHeads * headDim);
        Add("blk.0.attn_v.weight", Gguf.GgmlType.F16, width, kvHeads * headDim);
        Add("blk.0.attn_output.weight", Gguf.GgmlType.Q8_0, heads * headDim, width);
        Add("blk.0.ffn_norm.weight", Gguf.GgmlType.F32, width);
        Add("blk.0.ffn_gate.weight", Gguf.GgmlType.Q4_0, width, feedForward);
        Add("blk.0.ffn_up.weight", Gguf.GgmlType.Q8_0, width, feedForward);
        Add("blk.0.ffn_down.weight", Gguf.GgmlType.F16, feedForward, width);
        return [Bytes(metadataOnly), Bytes(tiny)];
    }

    private static byte[] Bytes(GgufWriter writer)
    {
        var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    public override IReadOnlyList<byte[]> Dictionary => Words("GGUF", "general.architecture", "llama", "qwen3", "deepseek2", "qwen35",
        ".ssm.conv_kernel", ".ssm.state_size", ".ssm.group_count", ".ssm.time_step_rank", ".ssm.inner_size", ".full_attention_interval",
        ".context_length", ".block_count", ".embedding_length", ".attention.head_count", "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.pre", "<0x41>", "blk.0.", ".weight", "token_embd");

    private readonly Dictionary<byte[], GgufFile> _parsed = new(ReferenceEqualityComparer.Instance);

    private static readonly long[] Integers = [0, 1, 2, 3, 7, 8, 16, 63, 64, 65, 127, 128, 4096, 65535, 65536, int.MaxValue, (long)int.MaxValue + 1, uint.MaxValue, -1, -2, int.MinValue];
    private static readonly float[] Floats = [0, -0f, 1, -1, 1e-30f, 1e30f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon];

    /// <summary>
    /// The seed written again with a metadata value, an array or a tensor's shape or type changed: the header stays
    /// valid, so the vocabulary, the hyper-parameters and the loader see the change.
    /// </summary>
    public override byte[]? MutateStructure(Random random, byte[] seed)
    {
        if (!_parsed.TryGetValue(seed, out var file)) _parsed[seed] = file = GgufFile.FromBytes(seed, "seed.gguf");
        var writer = new GgufWriter();
        foreach (var (key, value) in file.Metadata.Entries) writer.Metadata.Set(key, value);
        var keys = file.Metadata.Keys.ToArray();
        var tensors = file.Tensors.ToList();
        var changed = new Dictionary<string, (long[] Dims, Gguf.GgmlType Type)>(StringComparer.Ordinal);
        for (int round = 1 + random.Next(3); round > 0; round--)
        {
            if (random.Next(3) > 0 && keys.Length > 0)
            {
                string key = keys[random.Next(keys.Length)];
                var value = writer.Metadata.TryGet(key, out var v) ? v : default;
                switch (value.Value)
                {
                    case uint or int or ulong or long or ushort or short or byte or sbyte:
                        long n = Integers[random.Next(Integers.Length)];
                        writer.Metadata.Set(key, random.Next(2) == 0 ? GgufValue.Of((uint)n) : GgufValue.Of((int)n));
                        break;
                    case float:
                        writer.Metadata.Set(key, GgufValue.Of(Floats[random.Next(Floats.Length)]));
                        break;
                    case string:
                        writer.Metadata.Set(key, GgufValue.Of(random.Next(3) switch { 0 => "", 1 => "qwen3", _ => new string('x', random.Next(1, 300)) }));
                        break;
                    case GgufArray array when array.Count > 0:
                        // Shorter, or one element replaced by another's value or a hostile one.
                        var items = (Array)array.Items.Clone();
                        if (random.Next(2) == 0) items = CopyPrefix(items, random.Next(items.Length));
                        else if (items is string[] texts) texts[random.Next(texts.Length)] = random.Next(2) == 0 ? texts[random.Next(texts.Length)] : "<0xZZ>";
                        else if (items is int[] ints) ints[random.Next(ints.Length)] = (int)Integers[random.Next(Integers.Length)];
                        else if (items is float[] floats) floats[random.Next(floats.Length)] = Floats[random.Next(Floats.Length)];
                        writer.Metadata.Set(key, GgufValue.Of(new GgufArray(array.ElementType, items)));
                        break;
                    default:
                        writer.Metadata.Remove(key);
                        break;
                }
            }
            else if (tensors.Count > 0)
            {
                int i = random.Next(tensors.Count);
                if (random.Next(4) == 0)
                {
                    tensors.RemoveAt(i);
                    continue;
                }
                var t = tensors[i];
                var dims = (long[])t.Dimensions.Clone();
                dims[random.Next(dims.Length)] = random.Next(3) switch { 0 => 1, 1 => dims[0] * 2, _ => Math.Max(1, dims[^1] - 1) };
                changed[t.Name] = (dims, random.Next(4) == 0 ? Gguf.GgmlType.F32 : t.Type);
            }
        }
        foreach (var t in tensors)
        {
            if (changed.TryGetValue(t.Name, out var change))
            {
                long bytes = GgmlTypeInfo.RowBytes(change.Type, change.Dims[0]) * change.Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
                if (change.Dims[0] % GgmlTypeInfo.Geometry(change.Type).BlockSize != 0 || bytes is < 0 or > 8 << 20) continue;
                writer.AddTensor(t.Name, change.Type, change.Dims, new byte[bytes]);
            }
            else writer.AddTensor(t.Name, t.Type, t.Dimensions, t.Bytes.ToArray());
        }
        var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    private static Array CopyPrefix(Array items, int length)
    {
        var copy = Array.CreateInstance(items.GetType().GetElementType()!, length);
        Array.Copy(items, copy, length);
        return copy;
    }

    private int _inputs, _read, _evaluated;

    // The first evaluation on the fuzzing thread alone: the shared pool's workers would run the kernels beside it, so that
    // the same input's coverage varied with their timing (and on a busy machine, its time too).
    private static readonly Kaiyuan.Kernels.WorkerPool OneThread = new(1);

    public override string Summary => $"{_read:N0} of {_inputs:N0} parsed, {_evaluated:N0} loaded and evaluated";

    public override void Run(byte[] input)
    {
        _inputs++;
        GgufFile file;
        try
        {
            file = GgufFile.FromBytes(input, "fuzz.gguf");
        }
        catch (GgufFormatException)
        {
            return;
        }
        _read++;
        using (file)
        {
            try
            {
                var tokenizer = Tokenizer.FromGguf(file.Metadata);
                // Decoding first waits for the pieces the vocabulary builds on a pool thread, rather than encoding beside
                // that build (whose interleaving would make the coverage of the same input vary).
                tokenizer.Decode([0]);
                var ids = tokenizer.Encode("Hello world, 你好 <s> <|im_start|>", addSpecial: true, parseSpecial: true);
                tokenizer.Decode(ids);
            }
            catch (Exception e) when (IsClean(e))
            {
            }
            try
            {
                var model = ModelLoader.Load(file);
                var session = new InferenceSession(model, 32, OneThread, maxBatch: 2);
                session.Evaluate([0, Math.Min(1, model.VocabSize - 1)]);
                _evaluated++;
            }
            catch (Exception e) when (IsClean(e))
            {
            }
        }
    }

    /// <summary>What loading promises for a bad file: a format error that names it, or "not supported".</summary>
    private static bool IsClean(Exception e) =>
        e is GgufFormatException or GgufMetadataException or InvalidDataException or NotSupportedException or ContextOverflowException;
}
