using Kaiyuan.Gguf;
using System.Text;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

/// <summary>
/// Test-only minimal GGUF reader: skips the metadata, lists the tensors and returns their raw bytes. Independent of the
/// production reader on purpose, so the quantization tests do not depend on it.
/// </summary>
internal sealed class GgufTensorLocator
{
    public sealed record TensorEntry(string Name, GgmlType Type, long[] Dims, long DataOffset)
    {
        public long Elements => Dims.Aggregate(1L, (a, b) => a * b);
        public long RowLength => Dims[0];
        public long Rows => Elements / Dims[0];
        public long ByteCount => GgmlTypeInfo.RowBytes(Type, Dims[0]) * Rows;
    }

    private readonly byte[] _file;

    public IReadOnlyDictionary<string, TensorEntry> Tensors { get; }

    public GgufTensorLocator(string path)
    {
        _file = File.ReadAllBytes(path);
        using var reader = new BinaryReader(new MemoryStream(_file));
        if (reader.ReadUInt32() != 0x46554747)
        {
            throw new InvalidDataException($"{path} is not a GGUF file.");
        }

        uint version = reader.ReadUInt32();
        if (version < 2)
        {
            throw new InvalidDataException($"GGUF version {version} is not supported by this test helper.");
        }

        long tensorCount = (long)reader.ReadUInt64();
        long metadataCount = (long)reader.ReadUInt64();
        uint alignment = 32;
        for (long i = 0; i < metadataCount; i++)
        {
            string key = ReadString(reader);
            uint valueType = reader.ReadUInt32();
            if (key == "general.alignment" && valueType == 4)
            {
                alignment = reader.ReadUInt32();
            }
            else
            {
                SkipValue(reader, valueType);
            }
        }

        var infos = new List<(string Name, long[] Dims, GgmlType Type, long Offset)>();
        for (long i = 0; i < tensorCount; i++)
        {
            string name = ReadString(reader);
            uint dimCount = reader.ReadUInt32();
            var dims = new long[dimCount];
            for (int d = 0; d < dimCount; d++)
            {
                dims[d] = (long)reader.ReadUInt64();
            }

            var type = (GgmlType)reader.ReadUInt32();
            long offset = (long)reader.ReadUInt64();
            infos.Add((name, dims, type, offset));
        }

        long dataStart = (reader.BaseStream.Position + alignment - 1) / alignment * alignment;
        Tensors = infos.ToDictionary(t => t.Name, t => new TensorEntry(t.Name, t.Type, t.Dims, dataStart + t.Offset));
    }

    public ReadOnlySpan<byte> Data(TensorEntry tensor) => _file.AsSpan(checked((int)tensor.DataOffset), checked((int)tensor.ByteCount));

    public ReadOnlySpan<byte> Row(TensorEntry tensor, long row)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.RowLength);
        return _file.AsSpan(checked((int)(tensor.DataOffset + row * rowBytes)), checked((int)rowBytes));
    }

    private static string ReadString(BinaryReader reader)
    {
        long length = (long)reader.ReadUInt64();
        return Encoding.UTF8.GetString(reader.ReadBytes(checked((int)length)));
    }

    private static void SkipValue(BinaryReader reader, uint valueType)
    {
        switch (valueType)
        {
            case 0 or 1 or 7: reader.ReadByte(); break;
            case 2 or 3: reader.ReadUInt16(); break;
            case 4 or 5 or 6: reader.ReadUInt32(); break;
            case 10 or 11 or 12: reader.ReadUInt64(); break;
            case 8: ReadString(reader); break;
            case 9:
                uint itemType = reader.ReadUInt32();
                long count = (long)reader.ReadUInt64();
                for (long i = 0; i < count; i++)
                {
                    SkipValue(reader, itemType);
                }

                break;
            default: throw new InvalidDataException($"Unknown GGUF metadata type {valueType}.");
        }
    }
}
