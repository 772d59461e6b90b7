using System.Buffers.Binary;
using System.Text;

namespace Kaiyuan.Gguf;

/// <summary>
/// Writes GGUF version 3 files: metadata in insertion order, tensor infos, then aligned tensor data. Tensor bytes are
/// produced by a callback at write time, so tools (quantizers, synthesizers) can stream data larger than memory.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>The metadata to write, in insertion order.</summary>
    public GgufMetadata Metadata { get; } = new();
    /// <summary>Alignment of tensor data in bytes, 32 by default; any other value is also written as <c>general.alignment</c>.</summary>
    public int Alignment { get; set; } = GgufParser.DefaultAlignment;

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Dimensions, long ByteSize, Action<Stream> WriteData);

    /// <summary>Adds a tensor whose bytes are <paramref name="data"/>, which must be exactly the tensor's byte size and stay unchanged until written.</summary>
    public void AddTensor(string name, GgmlType type, long[] dimensions, ReadOnlyMemory<byte> data)
    {
        long expected = ExpectedBytes(name, type, dimensions);
        if (data.Length != expected) throw new ArgumentException($"tensor '{name}': {data.Length} bytes given, {expected} expected");
        AddTensor(name, type, dimensions, s => s.Write(data.Span));
    }

    /// <summary>Adds a tensor whose bytes <paramref name="writeData"/> writes (exactly the tensor's byte size).</summary>
    public void AddTensor(string name, GgmlType type, long[] dimensions, Action<Stream> writeData)
    {
        long bytes = ExpectedBytes(name, type, dimensions);
        if (!_names.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        _tensors.Add(new PendingTensor(name, type, (long[])dimensions.Clone(), bytes, writeData));
    }

    /// <summary>Adds an F32 tensor, copying <paramref name="data"/>; <paramref name="dimensions"/> are innermost first.</summary>
    public void AddTensor(string name, float[] data, params long[] dimensions) =>
        AddTensor(name, GgmlType.F32, dimensions, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());

    private static long ExpectedBytes(string name, GgmlType type, long[] dimensions)
    {
        var (block, _) = GgmlTypeInfo.Geometry(type);
        if (block == 0) throw new ArgumentException($"tensor '{name}': unknown type {type}");
        if (dimensions.Length is 0 or > 4 || dimensions.Any(d => d <= 0)) throw new ArgumentException($"tensor '{name}': bad shape");
        if (dimensions[0] % block != 0) throw new ArgumentException($"tensor '{name}': row length {dimensions[0]} is not a multiple of {block}");
        long elements = dimensions.Aggregate(1L, (a, d) => checked(a * d));
        return GgmlTypeInfo.RowBytes(type, elements);
    }

    /// <summary>Writes to a temporary file beside <paramref name="path"/> and renames it into place when complete.</summary>
    public void Write(string path)
    {
        string temp = path + ".partial";
        try
        {
            using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Write(fs);
                fs.Flush(flushToDisk: true); // on disk before the rename makes it the real file, should the machine go down
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Writes the whole file to <paramref name="stream"/>; throws when a tensor callback writes the wrong number of bytes (checked on seekable streams only).</summary>
    public void Write(Stream stream)
    {
        if (Alignment != GgufParser.DefaultAlignment) Metadata.Set("general.alignment", GgufValue.Of((uint)Alignment));
        var header = new MemoryStream();
        Put(header, GgufParser.Magic);
        Put(header, 3u);
        Put(header, (ulong)_tensors.Count);
        Put(header, (ulong)Metadata.Count);
        foreach (var (key, value) in Metadata.Entries)
        {
            PutString(header, key);
            Put(header, (uint)value.Type);
            PutValue(header, value);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            PutString(header, t.Name);
            Put(header, (uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions) Put(header, (ulong)d);
            Put(header, (uint)t.Type);
            Put(header, (ulong)offset);
            offsets[i] = offset;
            offset = Align(offset + t.ByteSize);
        }
        header.Write(new byte[Align(header.Length) - header.Length]);
        header.Position = 0;
        header.CopyTo(stream);

        long written = 0;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            stream.Write(new byte[offsets[i] - written]);
            long before = stream.CanSeek ? stream.Position : -1;
            t.WriteData(stream);
            if (before >= 0 && stream.Position - before != t.ByteSize)
                throw new InvalidOperationException($"tensor '{t.Name}': wrote {stream.Position - before} bytes, expected {t.ByteSize}");
            written = offsets[i] + t.ByteSize;
        }
        stream.Write(new byte[Align(written) - written]); // llama.cpp pads the last tensor too

        stream.Flush();
    }

    private long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void PutValue(Stream s, GgufValue value)
    {
        switch (value.Value)
        {
            case GgufArray a:
                Put(s, (uint)a.ElementType);
                Put(s, (ulong)a.Count);
                foreach (var item in a.Items) PutValue(s, new GgufValue(a.ElementType, item!));
                break;
            case string str: PutString(s, str); break;
            case bool b: s.WriteByte(b ? (byte)1 : (byte)0); break;
            case byte b: s.WriteByte(b); break;
            case sbyte sb: s.WriteByte((byte)sb); break;
            case ushort us: PutBytes(s, 2, span => BinaryPrimitives.WriteUInt16LittleEndian(span, us)); break;
            case short sh: PutBytes(s, 2, span => BinaryPrimitives.WriteInt16LittleEndian(span, sh)); break;
            case uint ui: Put(s, ui); break;
            case int i: PutBytes(s, 4, span => BinaryPrimitives.WriteInt32LittleEndian(span, i)); break;
            case ulong ul: Put(s, ul); break;
            case long l: PutBytes(s, 8, span => BinaryPrimitives.WriteInt64LittleEndian(span, l)); break;
            case float f: PutBytes(s, 4, span => BinaryPrimitives.WriteSingleLittleEndian(span, f)); break;
            case double d: PutBytes(s, 8, span => BinaryPrimitives.WriteDoubleLittleEndian(span, d)); break;
            default: throw new ArgumentException($"unsupported metadata value {value.Value.GetType().Name}");
        }
    }

    private delegate void SpanWriter(Span<byte> span);

    private static void PutBytes(Stream s, int size, SpanWriter write)
    {
        Span<byte> buf = stackalloc byte[8];
        write(buf[..size]);
        s.Write(buf[..size]);
    }

    private static void Put(Stream s, uint v) => PutBytes(s, 4, span => BinaryPrimitives.WriteUInt32LittleEndian(span, v));
    private static void Put(Stream s, ulong v) => PutBytes(s, 8, span => BinaryPrimitives.WriteUInt64LittleEndian(span, v));

    private static void PutString(Stream s, string str)
    {
        var bytes = Encoding.UTF8.GetBytes(str);
        Put(s, (ulong)bytes.Length);
        s.Write(bytes);
    }
}
