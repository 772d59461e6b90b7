using System.Buffers.Binary;
using System.Text;

namespace Kaiyuan.Gguf;

/// <summary>
/// Parses a GGUF header (metadata and tensor infos) from a mapped byte range. Every count and length read from the
/// file is checked against the bytes that remain before anything is allocated, so a hostile file cannot make it
/// allocate more than the file's own size or read outside it.
/// </summary>
internal unsafe ref struct GgufParser
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const int DefaultAlignment = 32;
    private const int MaxDimensions = 4;
    private const int MaxNesting = 8;
    // Caps far above any real model (vocabularies hold ~10^5 tokens, models ~10^4 tensors) so that a damaged count
    // in a multi-gigabyte file cannot make the parser allocate gigabytes before it notices.
    private const ulong MaxArrayElements = 1 << 24;
    private const ulong MaxTensors = 1 << 20;
    private const ulong MaxMetadataEntries = 1 << 20;
    private const ulong MaxStringBytes = 1 << 26;

    private readonly byte* _base;
    private readonly long _length;
    private readonly string _name;
    private long _pos;

    public GgufParser(byte* data, long length, string name)
    {
        _base = data;
        _length = length;
        _name = name;
        _pos = 0;
    }

    public (uint Version, GgufMetadata Metadata, List<GgufTensor> Tensors, long DataStart, int Alignment) Parse()
    {
        if (_length < 4 || ReadUInt32() != Magic) throw Fail("not a GGUF file (bad magic)");
        uint version = ReadUInt32();
        if (version is not (2 or 3)) throw Fail($"unsupported GGUF version {version} (2 and 3 are supported)");
        ulong tensorCount = ReadUInt64();
        ulong kvCount = ReadUInt64();
        // A key/value takes at least 13 bytes and a tensor info at least 24, so counts beyond that are lies.
        if (kvCount > (ulong)Remaining / 13 || kvCount > MaxMetadataEntries) throw Fail($"metadata count {kvCount} exceeds what the file can hold");
        if (tensorCount > (ulong)Remaining / 24 || tensorCount > MaxTensors) throw Fail($"tensor count {tensorCount} exceeds what the file can hold");

        var metadata = new GgufMetadata();
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = ReadString();
            if (metadata.Contains(key)) throw Fail($"duplicate metadata key '{key}'");
            var type = (GgufValueType)ReadUInt32();
            metadata.Set(key, ReadValue(type, key, 0));
        }

        int alignment = DefaultAlignment;
        if (metadata.TryGet("general.alignment", out var alignValue))
        {
            if (alignValue.Value is not uint a || a == 0 || (a & (a - 1)) != 0 || a > 1 << 20)
                throw Fail($"general.alignment must be a power-of-two u32, found {alignValue.Type} {alignValue}");
            alignment = (int)a;
        }

        var tensors = new List<GgufTensor>((int)Math.Min(tensorCount, 4096));
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            var t = ReadTensorInfo(alignment);
            if (!names.Add(t.Name)) throw Fail($"duplicate tensor name '{t.Name}'");
            tensors.Add(t);
        }

        long dataStart = AlignUp(_pos, alignment);
        if (tensors.Count > 0 && dataStart > _length) throw Fail("truncated: the tensor data section is missing");
        long dataBytes = Math.Max(0, _length - dataStart);
        foreach (var t in tensors)
        {
            if (t.Offset > (ulong)dataBytes || (ulong)t.ByteSize > (ulong)dataBytes - t.Offset)
                throw Fail($"tensor '{t.Name}' ({t.ByteSize} bytes at data offset {t.Offset}) extends beyond the end of the file (data section holds {dataBytes} bytes)");
            t.Data = _base + dataStart + (long)t.Offset;
        }
        return (version, metadata, tensors, dataStart, alignment);
    }

    private GgufTensor ReadTensorInfo(int alignment)
    {
        string name = ReadString();
        uint nDims = ReadUInt32();
        if (nDims is 0 or > MaxDimensions) throw Fail($"tensor '{name}' has {nDims} dimensions (1 to {MaxDimensions} allowed)");
        var dims = new long[nDims];
        long elements = 1;
        for (int d = 0; d < nDims; d++)
        {
            ulong n = ReadUInt64();
            if (n == 0 || n > long.MaxValue) throw Fail($"tensor '{name}' dimension {d} is {n}");
            dims[d] = (long)n;
            if (elements > long.MaxValue / dims[d]) throw Fail($"tensor '{name}' element count overflows");
            elements *= dims[d];
        }
        uint rawType = ReadUInt32();
        var type = (GgmlType)rawType;
        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(type);
        if (blockSize == 0) throw Fail($"tensor '{name}' has unknown tensor type {rawType}");
        if (dims[0] % blockSize != 0) throw Fail($"tensor '{name}' row length {dims[0]} is not a multiple of {type}'s block size {blockSize}");
        long blocks = elements / blockSize;
        if (blocks > long.MaxValue / typeSize) throw Fail($"tensor '{name}' byte size overflows");
        ulong offset = ReadUInt64();
        if (offset % (ulong)alignment != 0) throw Fail($"tensor '{name}' data offset {offset} is not aligned to {alignment}");
        return new GgufTensor(name, type, dims, offset, blocks * typeSize);
    }

    private GgufValue ReadValue(GgufValueType type, string key, int depth)
    {
        return type switch
        {
            GgufValueType.UInt8 => new(type, Read(1)[0]),
            GgufValueType.Int8 => new(type, (sbyte)Read(1)[0]),
            GgufValueType.UInt16 => new(type, BinaryPrimitives.ReadUInt16LittleEndian(Read(2))),
            GgufValueType.Int16 => new(type, BinaryPrimitives.ReadInt16LittleEndian(Read(2))),
            GgufValueType.UInt32 => new(type, ReadUInt32()),
            GgufValueType.Int32 => new(type, BinaryPrimitives.ReadInt32LittleEndian(Read(4))),
            GgufValueType.UInt64 => new(type, ReadUInt64()),
            GgufValueType.Int64 => new(type, BinaryPrimitives.ReadInt64LittleEndian(Read(8))),
            GgufValueType.Float32 => new(type, BinaryPrimitives.ReadSingleLittleEndian(Read(4))),
            GgufValueType.Float64 => new(type, BinaryPrimitives.ReadDoubleLittleEndian(Read(8))),
            GgufValueType.Bool => new(type, ReadBool(key)),
            GgufValueType.String => new(type, ReadString()),
            GgufValueType.Array => new(type, ReadArray(key, depth)),
            _ => throw Fail($"metadata key '{key}' has unknown value type {(uint)type}"),
        };
    }

    // Vocabularies hold 10^5 strings: compile the array and string readers fully optimized at once rather than
    // running them as tier-0 code during the one call that matters.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private GgufArray ReadArray(string key, int depth)
    {
        if (depth >= MaxNesting) throw Fail($"metadata key '{key}' nests arrays deeper than {MaxNesting}");
        var elementType = (GgufValueType)ReadUInt32();
        ulong count = ReadUInt64();
        int minSize = GgufValueTypeInfo.MinEncodedSize(elementType);
        if (minSize < 0) throw Fail($"metadata key '{key}' is an array of unknown value type {(uint)elementType}");
        if (count > (ulong)(Remaining / minSize) || count > MaxArrayElements)
            throw Fail($"metadata key '{key}' claims {count} elements, more than the file holds");
        int n = (int)count;
        switch (elementType)
        {
            case GgufValueType.UInt8: return new(elementType, Read(n).ToArray());
            case GgufValueType.Int8: return new(elementType, ReadBlittable<sbyte>(n));
            case GgufValueType.UInt16: return new(elementType, ReadBlittable<ushort>(n));
            case GgufValueType.Int16: return new(elementType, ReadBlittable<short>(n));
            case GgufValueType.UInt32: return new(elementType, ReadBlittable<uint>(n));
            case GgufValueType.Int32: return new(elementType, ReadBlittable<int>(n));
            case GgufValueType.UInt64: return new(elementType, ReadBlittable<ulong>(n));
            case GgufValueType.Int64: return new(elementType, ReadBlittable<long>(n));
            case GgufValueType.Float32: return new(elementType, ReadBlittable<float>(n));
            case GgufValueType.Float64: return new(elementType, ReadBlittable<double>(n));
            case GgufValueType.Bool:
                var bools = new bool[n];
                for (int i = 0; i < n; i++) bools[i] = ReadBool(key);
                return new(elementType, bools);
            case GgufValueType.String:
                var strings = new string[n];
                for (int i = 0; i < n; i++) strings[i] = ReadString();
                return new(elementType, strings);
            default:
                var nested = new GgufArray[n];
                for (int i = 0; i < n; i++) nested[i] = ReadArray(key, depth + 1);
                return new(elementType, nested);
        }
    }

    private T[] ReadBlittable<T>(int n) where T : unmanaged
    {
        // GGUF is little-endian, as is every platform .NET runs on that we target.
        var bytes = Read(checked(n * sizeof(T)));
        var result = new T[n];
        bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    private bool ReadBool(string key)
    {
        byte b = Read(1)[0];
        return b <= 1 ? b == 1 : throw Fail($"metadata key '{key}' has a bool byte of {b}");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private string ReadString()
    {
        ulong len = ReadUInt64();
        if (len > (ulong)Remaining) throw Fail($"truncated: a string of {len} bytes at offset {_pos - 8} runs past the end of the file");
        if (len > MaxStringBytes) throw Fail($"a string of {len} bytes at offset {_pos - 8} is implausibly long");
        return Encoding.UTF8.GetString(Read((int)len));
    }

    private uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Read(4));
    private ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Read(8));

    private long Remaining => _length - _pos;

    private ReadOnlySpan<byte> Read(int count)
    {
        if (count > Remaining) throw Fail($"truncated: needed {count} bytes at offset {_pos}, the file has {_length}");
        var span = new ReadOnlySpan<byte>(_base + _pos, count);
        _pos += count;
        return span;
    }

    private static long AlignUp(long x, int alignment) => (x + alignment - 1) / alignment * alignment;

    private readonly GgufFormatException Fail(string problem) => new(_name, problem);
}
