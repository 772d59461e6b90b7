namespace Kaiyuan.Inference;

/// <summary>Names of the scratch buffers a forward pass uses; blocks run one after another, so they share them.</summary>
internal enum Buf
{
    Hidden, Normed, BlockOut, Q, K, V, Attn, Scores, Latent, QAbsorbed, AttnLatent,
    FfnGate, FfnUp, RouterLogits, ExpertIn, ExpertOut, GroupIn, GroupGate, GroupUp, GroupOut, ExpertWeights, MemberWeights, SharedOut, Logits,
    IndexerQ, IndexerK, IndexerWeights, IndexerScores, CacheRow, SelectedRows,
    QGated, AttnGate, NextnInput, SsmMixed, SsmConv, SsmGate, SsmDecay, SsmWrite, SsmOut, SsmScratch, Count,
}

/// <summary>Names of integer scratch buffers (expert routing).</summary>
internal enum IntBuf { ChosenExperts, ExpertMembers, ExpertStarts, ExpertSlots, AttentionBlocks, Selected, SelectedStarts, SequenceRuns, Count }

/// <summary>
/// Per-session scratch memory. Buffers grow to the largest size asked for and are then reused, so a session
/// allocates during its first steps and not afterwards.
/// </summary>
internal sealed class Workspace
{
    private readonly float[][] _floats = new float[(int)Buf.Count][];
    private byte[] _bytes = [];
    private readonly int[][] _ints = new int[(int)IntBuf.Count][];

    public Workspace()
    {
        for (int i = 0; i < _floats.Length; i++) _floats[i] = [];
        for (int i = 0; i < _ints.Length; i++) _ints[i] = [];
    }

    public Span<float> Floats(Buf id, int length)
    {
        ref var buffer = ref _floats[(int)id];
        if (buffer.Length < length) buffer = new float[Math.Max(length, buffer.Length * 3 / 2)];
        return buffer.AsSpan(0, length);
    }

    public float[] Array(Buf id, int length)
    {
        Floats(id, length);
        return _floats[(int)id];
    }

    public Span<int> Ints(IntBuf id, int length)
    {
        ref var buffer = ref _ints[(int)id];
        if (buffer.Length < length) buffer = new int[Math.Max(length, buffer.Length * 3 / 2)];
        return buffer.AsSpan(0, length);
    }

    public int[] IntArray(IntBuf id, int length)
    {
        Ints(id, length);
        return _ints[(int)id];
    }

    /// <summary>Scratch for quantized activations.</summary>
    public Span<byte> Bytes(int length)
    {
        if (_bytes.Length < length) _bytes = new byte[Math.Max(length, _bytes.Length * 3 / 2)];
        return _bytes.AsSpan(0, length);
    }
}
