namespace Kaiyuan.Inference;

/// <summary>
/// The constant-size memory of a model's recurrent layers (the gated delta-net layers of Qwen3.5): per sequence and
/// layer, a rolling convolution window and a state matrix per head. Unlike KV rows it cannot be cut back to an earlier
/// position, so each sequence records how many tokens its state has absorbed, and the model refuses to continue a
/// sequence from anywhere else (position 0 starts it afresh). Going back means restoring a snapshot.
/// </summary>
/// <remarks>A sequence's memory is allocated when it is first used, so unused slots cost nothing.</remarks>
internal sealed class RecurrentState
{
    private readonly float[]?[][] _layers;
    private readonly int[] _length;

    /// <param name="widths">Floats of state per layer (0 for a layer that keeps none).</param>
    /// <param name="sequences">Sequences (slots) that can be evaluated at once.</param>
    public RecurrentState(IReadOnlyList<int> widths, int sequences)
    {
        Widths = widths.ToArray();
        _layers = new float[]?[sequences][];
        for (int s = 0; s < sequences; s++) _layers[s] = new float[]?[Widths.Length];
        _length = new int[sequences];
        FloatsPerSequence = Widths.Sum(w => (long)w);
    }

    public int[] Widths { get; }
    public long FloatsPerSequence { get; }

    /// <summary>Bytes of state that exist now (sequences that have been used).</summary>
    public long ResidentBytes
    {
        get
        {
            long total = 0;
            foreach (var layers in _layers)
                foreach (var l in layers) total += (l?.Length ?? 0) * (long)sizeof(float);
            return total;
        }
    }

    /// <summary>Tokens the sequence's state has absorbed: the only position it can continue from (besides 0).</summary>
    public int Length(int sequence) => _length[sequence];

    /// <summary>Records that the sequence's state now holds <paramref name="length"/> tokens (the model calls this after a pass).</summary>
    internal void SetLength(int sequence, int length) => _length[sequence] = length;

    /// <summary>A layer's state of one sequence, to read and update in place.</summary>
    public float[] Layer(int sequence, int layer) =>
        _layers[sequence][layer] ??= new float[Widths[layer]];

    /// <summary>Empties a sequence's state (a new sequence starts from zeros).</summary>
    public void Reset(int sequence)
    {
        foreach (var l in _layers[sequence]) l?.AsSpan().Clear();
        _length[sequence] = 0;
    }

    /// <summary>Copies a sequence's whole state out (<see cref="FloatsPerSequence"/> floats), e.g. to snapshot it.</summary>
    public void Save(int sequence, Span<float> snapshot)
    {
        int offset = 0;
        for (int l = 0; l < Widths.Length; l++)
        {
            if (Widths[l] == 0) continue;
            Layer(sequence, l).CopyTo(snapshot.Slice(offset, Widths[l]));
            offset += Widths[l];
        }
    }

    /// <summary>Puts back a state saved by <see cref="Save"/> after <paramref name="length"/> tokens.</summary>
    public void Restore(int sequence, ReadOnlySpan<float> snapshot, int length)
    {
        if (snapshot.Length != FloatsPerSequence) throw new ArgumentException("the snapshot is not of this model's state", nameof(snapshot));
        int offset = 0;
        for (int l = 0; l < Widths.Length; l++)
        {
            if (Widths[l] == 0) continue;
            snapshot.Slice(offset, Widths[l]).CopyTo(Layer(sequence, l));
            offset += Widths[l];
        }
        _length[sequence] = length;
    }
}
