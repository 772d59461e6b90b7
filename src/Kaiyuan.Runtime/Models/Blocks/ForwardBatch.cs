namespace Kaiyuan.Models.Blocks;

/// <summary>
/// The tokens of one forward pass. Tokens may belong to different sequences (slots), each at its own position, so
/// one pass can prefill a prompt or advance many sequences by one token (continuous batching).
/// </summary>
internal sealed class ForwardBatch
{
    public ForwardBatch(int capacity)
    {
        Tokens = new int[capacity];
        Positions = new int[capacity];
        Slots = new int[capacity];
    }

    public int[] Tokens { get; private set; }
    public int[] Positions { get; private set; }
    public int[] Slots { get; private set; }
    public int Count { get; private set; }

    public void Clear() => Count = 0;

    public void Add(int token, int position, int slot)
    {
        if (Count == Tokens.Length)
        {
            int n = Math.Max(4, Count * 2);
            Tokens = Grow(Tokens, n);
            Positions = Grow(Positions, n);
            Slots = Grow(Slots, n);
        }
        Tokens[Count] = token;
        Positions[Count] = position;
        Slots[Count] = slot;
        Count++;
    }

    private static int[] Grow(int[] a, int n)
    {
        var b = new int[n];
        a.CopyTo(b, 0);
        return b;
    }
}
