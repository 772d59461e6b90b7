using Kaiyuan.Gguf;
using Kaiyuan.Quantization;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>
/// Importance matrices (<c>kaiyuan quantize --imatrix</c>): llama.cpp's imatrix GGUF and its older <c>.dat</c> form, read
/// from a file as the command does, then applied by quantizing a small model with it (a stacked 32 × 4 × 2 tensor named
/// like the seeds' entry, so a matching matrix weights its rows and any other shape is refused by name).
/// </summary>
internal sealed class ImatrixTarget : FuzzTarget
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"kaiyuan-fuzz-imatrix-{Environment.ProcessId}.bin");
    private readonly string _model = Path.Combine(Path.GetTempPath(), $"kaiyuan-fuzz-imatrix-{Environment.ProcessId}.gguf");
    private readonly string _output = Path.Combine(Path.GetTempPath(), $"kaiyuan-fuzz-imatrix-{Environment.ProcessId}-q.gguf");
    private GgufFile? _source;
    private int _inputs, _loaded, _applied;

    public override void Setup(string fixtures)
    {
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.Of("llama"));
        var random = new Random(1);
        writer.AddTensor("blk.0.attn_q.weight", Enumerable.Range(0, 32 * 4 * 2).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray(), 32, 4, 2);
        writer.Write(_model);
        _source = GgufFile.Open(_model);
    }

    public override string Name => "imatrix";
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Hub Kaiyuan.Quantization", "Kaiyuan.Gguf"];

    public override IReadOnlyList<byte[]> Seeds(string fixtures)
    {
        var gguf = new GgufWriter();
        gguf.Metadata.Set("general.type", GgufValue.Of("imatrix"));
        gguf.Metadata.Set("imatrix.datasets", GgufValue.Of(GgufArray.Of(["calibration.txt"])));
        gguf.Metadata.Set("imatrix.chunk_count", GgufValue.Of(4u));
        gguf.Metadata.Set("imatrix.chunk_size", GgufValue.Of(512u));
        gguf.AddTensor("blk.0.attn_q.weight.in_sum2", Enumerable.Range(0, 64).Select(i => (float)i).ToArray(), 32, 2);
        gguf.AddTensor("blk.0.attn_q.weight.counts", [3f, 0f], 1, 2);
        gguf.AddTensor("blk.0.attn_q.weight.in_sum", new float[64], 32, 2);
        var stream = new MemoryStream();
        gguf.Write(stream);

        var dat = new MemoryStream();
        using (var w = new BinaryWriter(dat, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write(1);
            w.Write("blk.0.attn_q.weight".Length);
            w.Write("blk.0.attn_q.weight"u8.ToArray());
            w.Write(2);
            w.Write(32);
            for (int i = 0; i < 32; i++) w.Write(i * 0.5f);
            w.Write(4);
            w.Write(4);
            w.Write("wiki"u8.ToArray());
        }

        return [stream.ToArray(), dat.ToArray()];
    }

    public override IReadOnlyList<byte[]> Dictionary => Words("GGUF", "general.type", "imatrix", ".in_sum2", ".counts", ".in_sum",
        "imatrix.datasets", "imatrix.chunk_count", "blk.0.attn_q.weight");

    public override void Run(byte[] input)
    {
        _inputs++;
        File.WriteAllBytes(_path, input);
        ImportanceMatrix matrix;
        try
        {
            matrix = ImportanceMatrix.Load(_path);
        }
        catch (Exception e) when (e is InvalidDataException or GgufFormatException or GgufMetadataException)
        {
            return;
        }

        _loaded++;
        try
        {
            // Loaded values are finite and non-negative, so quantizing with them must succeed or refuse a shape by name.
            new ModelQuantizer { Threads = 1, Importance = matrix }.Quantize(_source!, _output, FileType.Q4_0);
            _applied++;
        }
        catch (InvalidDataException)
        {
        }
    }

    public override string Summary => $"{_inputs} inputs, {_loaded} loaded, {_applied} applied";

    public override void Dispose()
    {
        _source?.Dispose();
        foreach (var file in new[] { _path, _model, _output }) File.Delete(file);
        base.Dispose();
    }
}
