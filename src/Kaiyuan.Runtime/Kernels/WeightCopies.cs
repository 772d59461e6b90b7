using System.Runtime.InteropServices;

namespace Kaiyuan.Kernels;

/// <summary>
/// One weight tensor copied into native memory in the kernels' layout (<see cref="QuantMatrix.ForMultiply"/>). Outside
/// the GC heap, whose hard limit in a container (75% of its memory by default) would otherwise count a model's copies.
/// Freed by its model's <see cref="WeightCopies"/>, or by the finalizer once no matrix points into it.
/// </summary>
internal sealed unsafe class WeightCopy : IDisposable
{
    private nint _data;

    public WeightCopy(long bytes) => _data = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);

    public byte* Data => (byte*)_data;

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~WeightCopy() => Free();

    private void Free()
    {
        nint data = Interlocked.Exchange(ref _data, 0);
        if (data != 0) NativeMemory.AlignedFree((void*)data);
    }
}

/// <summary>A model's weight copies, freed together when the model is disposed (as its mapped file is unmapped then).</summary>
internal sealed class WeightCopies : IDisposable
{
    private readonly List<WeightCopy> _copies = [];

    public void Add(WeightCopy copy)
    {
        lock (_copies) _copies.Add(copy);
    }

    public void Dispose()
    {
        lock (_copies)
        {
            foreach (var copy in _copies) copy.Dispose();
            _copies.Clear();
        }
    }
}
