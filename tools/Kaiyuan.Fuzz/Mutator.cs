using System.Buffers.Binary;

namespace Kaiyuan.Fuzz;

/// <summary>
/// Byte-level mutations in the manner of AFL's havoc stage: bit flips, interesting integers at any width, deleted,
/// duplicated and inserted ranges, splices from another seed, and the target's dictionary words. Deterministic per seed.
/// </summary>
internal sealed class Mutator(Random random, IReadOnlyList<byte[]> seeds, IReadOnlyList<byte[]> dictionary, int maxLength,
    Func<Random, byte[], byte[]?>? structured = null)
{
    private static readonly long[] Interesting =
    [
        0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 100, 127, 128, 255, 256, 512, 1000, 1024, 4096, 32767, 32768, 65535,
        65536, 100_000, int.MaxValue / 2, int.MaxValue, (long)int.MaxValue + 1, uint.MaxValue, long.MaxValue, -1, -2, -128, -129,
        short.MinValue, int.MinValue, long.MinValue,
    ];

    public byte[] Next()
    {
        var seed = seeds[random.Next(seeds.Count)];
        if (structured is not null && random.Next(2) == 0 && structured(random, seed) is { } mutated)
            return random.Next(4) == 0 ? MutateBytes(mutated) : mutated;
        return MutateBytes(seed);
    }

    private byte[] MutateBytes(byte[] seed)
    {
        var data = new List<byte>(seed);
        int rounds = 1 << random.Next(4); // 1, 2, 4 or 8 mutations stacked
        for (int i = 0; i < rounds; i++) MutateOnce(data);
        if (data.Count > maxLength) data.RemoveRange(maxLength, data.Count - maxLength);
        return [.. data];
    }

    private void MutateOnce(List<byte> d)
    {
        switch (random.Next(d.Count == 0 ? 2 : 11))
        {
            case 0: // insert random bytes
                d.InsertRange(random.Next(d.Count + 1), RandomBytes(1 + random.Next(16)));
                break;
            case 1: // insert a dictionary word
                if (dictionary.Count > 0) d.InsertRange(random.Next(d.Count + 1), dictionary[random.Next(dictionary.Count)]);
                break;
            case 2: // flip a bit
                d[random.Next(d.Count)] ^= (byte)(1 << random.Next(8));
                break;
            case 3: // a random byte
                d[random.Next(d.Count)] = (byte)random.Next(256);
                break;
            case 4: // an interesting integer, 1/2/4/8 bytes little-endian
            case 5:
                {
                    int width = 1 << random.Next(4);
                    int at = random.Next(d.Count);
                    Span<byte> bytes = stackalloc byte[8];
                    BinaryPrimitives.WriteInt64LittleEndian(bytes, Interesting[random.Next(Interesting.Length)]);
                    for (int k = 0; k < width && at + k < d.Count; k++) d[at + k] = bytes[k];
                    break;
                }
            case 6: // add or subtract a little from a 32-bit integer
                {
                    int at = random.Next(Math.Max(1, d.Count - 3));
                    if (at + 4 > d.Count) break;
                    int v = d[at] | d[at + 1] << 8 | d[at + 2] << 16 | d[at + 3] << 24;
                    v += random.Next(-35, 36);
                    for (int k = 0; k < 4; k++) d[at + k] = (byte)(v >> (8 * k));
                    break;
                }
            case 7: // delete a range
                {
                    int at = random.Next(d.Count);
                    d.RemoveRange(at, Math.Min(d.Count - at, 1 + random.Next(Math.Min(256, d.Count))));
                    break;
                }
            case 8: // duplicate a range
                {
                    int at = random.Next(d.Count);
                    int n = Math.Min(d.Count - at, 1 + random.Next(64));
                    d.InsertRange(random.Next(d.Count + 1), d.GetRange(at, n));
                    break;
                }
            case 9: // splice a chunk of another seed over this one
                {
                    var other = seeds[random.Next(seeds.Count)];
                    if (other.Length == 0) break;
                    int from = random.Next(other.Length);
                    int n = Math.Min(other.Length - from, 1 + random.Next(128));
                    int at = random.Next(d.Count);
                    for (int k = 0; k < n; k++)
                    {
                        if (at + k < d.Count) d[at + k] = other[from + k];
                        else d.Add(other[from + k]);
                    }
                    break;
                }
            default: // overwrite with a dictionary word
                if (dictionary.Count > 0)
                {
                    var word = dictionary[random.Next(dictionary.Count)];
                    int at = random.Next(d.Count);
                    for (int k = 0; k < word.Length; k++)
                    {
                        if (at + k < d.Count) d[at + k] = word[k];
                        else d.Add(word[k]);
                    }
                }
                break;
        }
    }

    private byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        random.NextBytes(b);
        return b;
    }
}
