using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Kaiyuan.Gguf;

/// <summary>
/// An open GGUF file: parsed metadata and tensor descriptions over a read-only memory map. Tensor bytes are never
/// copied; <see cref="GgufTensor.Data"/> points into the map and is valid until the file is disposed.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private GCHandle _pinned;
    private readonly byte* _base;
    private readonly Dictionary<string, GgufTensor> _byName;
    private bool _disposed;

    /// <summary>The path the file was opened from (the name given to <see cref="FromBytes"/> for an in-memory image).</summary>
    public string Path { get; }
    /// <summary>The GGUF format version, 2 or 3.</summary>
    public uint Version { get; }
    /// <summary>Alignment of tensor data in bytes: <c>general.alignment</c>, or 32 when absent.</summary>
    public int Alignment { get; }
    /// <summary>Byte offset of the tensor data section from the start of the file.</summary>
    public long DataOffset { get; }
    /// <summary>Size of the file in bytes.</summary>
    public long FileSize { get; }
    /// <summary>The file's key/value metadata, in file order.</summary>
    public GgufMetadata Metadata { get; }
    /// <summary>The tensors in file order.</summary>
    public IReadOnlyList<GgufTensor> Tensors { get; }

    private GgufFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, GCHandle pinned, byte* data, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _pinned = pinned;
        _base = data;
        FileSize = length;
        try
        {
            var parsed = new GgufParser(data, length, System.IO.Path.GetFileName(path)).Parse();
            Version = parsed.Version;
            Metadata = parsed.Metadata;
            Tensors = parsed.Tensors;
            DataOffset = parsed.DataStart;
            Alignment = parsed.Alignment;
            _byName = parsed.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
            foreach (var t in parsed.Tensors) t.Mapped = map is not null;
        }
        catch
        {
            Release();
            throw;
        }
    }

    /// <summary>Maps and parses a GGUF file. Throws <see cref="GgufFormatException"/> for anything malformed.</summary>
    public static GgufFile Open(string path)
    {
        var name = System.IO.Path.GetFileName(path);
        FileInfo info;
        try
        {
            info = new FileInfo(path);
            if (!info.Exists) throw new GgufFormatException(name, $"file not found: {path}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new GgufFormatException(name, e.Message);
        }
        if (info.Length < 24) throw new GgufFormatException(name, $"truncated: {info.Length} bytes is too small for a GGUF header");

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* ptr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            return new GgufFile(path, map, view, default, ptr, info.Length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            view?.Dispose();
            map?.Dispose();
            throw new GgufFormatException(name, e.Message);
        }
    }

    /// <summary>Parses a GGUF image held in memory (tests, tools); the array is pinned until disposal.</summary>
    public static GgufFile FromBytes(byte[] bytes, string name = "<memory>")
    {
        var handle = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        return new GgufFile(name, null, null, handle, (byte*)handle.AddrOfPinnedObject(), bytes.Length);
    }

    /// <summary>Bytes of the file as stored (header, metadata or tensor data); valid while the file is open.</summary>
    public ReadOnlySpan<byte> RawBytes(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || length < 0 || offset > FileSize - length) throw new ArgumentOutOfRangeException(nameof(offset), $"{length} bytes at {offset} are outside the file");
        return new ReadOnlySpan<byte>(_base + offset, length);
    }

    /// <summary>The tensor named <paramref name="name"/>, or null when there is none.</summary>
    public GgufTensor? FindTensor(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The tensor named <paramref name="name"/>; throws <see cref="GgufFormatException"/> when it is missing.</summary>
    public GgufTensor GetTensor(string name) =>
        _byName.GetValueOrDefault(name) ?? throw new GgufFormatException(System.IO.Path.GetFileName(Path), $"tensor '{name}' is missing");

    /// <summary>The architecture name from <c>general.architecture</c>.</summary>
    public string Architecture => Metadata.GetStringOrNull("general.architecture") ?? "";

    /// <summary>Unmaps the file (or unpins the array); tensor data pointers and spans are invalid afterwards.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
    }

    private void Release()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        if (_pinned.IsAllocated) _pinned.Free();
    }

    /// <summary>Total bytes of tensors of each type (for <c>info</c>).</summary>
    public IEnumerable<(GgmlType Type, int Count, long Bytes)> TypeSummary() =>
        Tensors.GroupBy(t => t.Type).Select(g => (g.Key, g.Count(), g.Sum(t => t.ByteSize))).OrderByDescending(x => x.Item3);
}
