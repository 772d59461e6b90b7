namespace Kaiyuan.Tokenizers;

/// <summary>
/// Open-addressing map from a (left id, right id) pair to a packed (rank, merged id). Dictionary&lt;long, …&gt; hashes a
/// long as hi ^ lo, which collides badly for id pairs; here the key is mixed with a Fibonacci multiplier.
/// </summary>
internal sealed class PairTable
{
    private readonly long[] _keys;
    private readonly long[] _values;
    private readonly int _shift;
    private readonly int _mask;

    public int Count { get; private set; }

    public PairTable(int capacity)
    {
        int size = 16;
        while (size < capacity * 2) size <<= 1;
        _keys = new long[size];
        _values = new long[size];
        Array.Fill(_keys, -1L);
        _mask = size - 1;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)size);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private int Slot(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> _shift);

    /// <summary>Adds the pair unless present (the first merge listed wins, as in llama.cpp).</summary>
    public void TryAdd(int left, int right, int rank, int merged)
    {
        long key = Key(left, right);
        for (int i = Slot(key); ; i = (i + 1) & _mask)
        {
            if (_keys[i] == key) return;
            if (_keys[i] == -1)
            {
                _keys[i] = key;
                _values[i] = ((long)rank << 32) | (uint)merged;
                Count++;
                return;
            }
        }
    }

    public bool TryGet(int left, int right, out int rank, out int merged)
    {
        long key = Key(left, right);
        for (int i = Slot(key); ; i = (i + 1) & _mask)
        {
            long k = _keys[i];
            if (k == key)
            {
                long v = _values[i];
                rank = (int)(v >> 32);
                merged = (int)v;
                return true;
            }
            if (k == -1)
            {
                rank = int.MaxValue;
                merged = -1;
                return false;
            }
        }
    }
}
