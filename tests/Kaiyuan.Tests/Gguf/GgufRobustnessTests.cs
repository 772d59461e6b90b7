using System.Buffers.Binary;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tests.Gguf;

/// <summary>Damaged files end in <see cref="GgufFormatException"/>, never another exception, a hang or a huge allocation.</summary>
public class GgufRobustnessTests
{
    private static void AssertRejectedOrValid(byte[] bytes)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            using var f = GgufFile.FromBytes(bytes, "damaged.gguf");
            // A flip that leaves a parsable file is fine; touching every tensor must stay inside the buffer.
            foreach (var t in f.Tensors) _ = t.Bytes.Length;
        }
        catch (GgufFormatException e)
        {
            Assert.StartsWith("damaged.gguf: ", e.Message);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // Parsing allocates at most a small multiple of the file's size (counts are checked against the bytes left).
        Assert.True(allocated < 32L * bytes.Length + (1 << 20), $"allocated {allocated} bytes for a {bytes.Length}-byte file");
    }

    private static byte[] Fixture(string folder, string file) => File.ReadAllBytes(Fixtures.ModelPath(folder, file));

    private static long HeaderEnd(byte[] bytes)
    {
        using var f = GgufFile.FromBytes(bytes);
        return f.DataOffset;
    }

    [Fact]
    public void TruncationAtAnyOffsetIsRejected()
    {
        var bytes = Fixture("aidreams260K", "aidreams260K-q6_k.gguf");
        long header = HeaderEnd(bytes);
        var offsets = Enumerable.Range(0, 400).Select(i => i * header / 400)
            .Concat(Enumerable.Range(0, 50).Select(i => header + i * (bytes.Length - header) / 50));
        foreach (long cut in offsets.Distinct())
        {
            var e = Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bytes[..(int)cut], "damaged.gguf").Dispose());
            Assert.StartsWith("damaged.gguf: ", e.Message);
        }
    }

    [Fact]
    public void RandomByteFlipsInTheHeaderNeverEscape()
    {
        var original = Fixture("aidreams260K", "aidreams260K-f16.gguf");
        long header = HeaderEnd(original);
        var rng = new Random(1234);
        for (int trial = 0; trial < 3000; trial++)
        {
            var bytes = (byte[])original.Clone();
            int flips = 1 + rng.Next(4);
            for (int k = 0; k < flips; k++) bytes[rng.Next((int)header)] ^= (byte)(1 << rng.Next(8));
            AssertRejectedOrValid(bytes);
        }
    }

    [Fact]
    public void AbsurdCountsAreRejectedBeforeAllocating()
    {
        var original = Fixture("llama", "llama-q4_0.gguf");
        // Overwrite every 8-byte little-endian length/count field candidate with huge values, one at a time.
        long header = HeaderEnd(original);
        var rng = new Random(99);
        ulong[] absurd = [ulong.MaxValue, long.MaxValue, 1UL << 40, 1UL << 31, 0x0000_0001_0000_0000];
        for (int trial = 0; trial < 1500; trial++)
        {
            var bytes = (byte[])original.Clone();
            int at = rng.Next(4, (int)header - 8);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), absurd[rng.Next(absurd.Length)]);
            AssertRejectedOrValid(bytes);
        }
        foreach (int field in new[] { 8, 16 }) // tensor count, metadata count
        {
            var bytes = (byte[])original.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(field), ulong.MaxValue / 3);
            Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bytes).Dispose());
        }
    }

    [Fact]
    public void BadMagicVersionAndTypesAreNamed()
    {
        var bytes = Fixture("llama", "llama-q4_0.gguf");
        var badMagic = (byte[])bytes.Clone();
        badMagic[0] = (byte)'X';
        Assert.Contains("bad magic", Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(badMagic).Dispose()).Message);
        var badVersion = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(badVersion.AsSpan(4), 1);
        Assert.Contains("unsupported GGUF version 1", Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(badVersion).Dispose()).Message);
    }

    [Fact]
    public void UnknownTensorTypeAndDuplicateNamesAreNamed()
    {
        var w = new GgufWriter();
        w.AddTensor("x", [1f, 2f], 2);
        var ms = new MemoryStream();
        w.Write(ms);
        var bytes = ms.ToArray();
        // The tensor info is: name (8 + 1 bytes), n_dims (4), dims (8), type (4), offset (8) right after the 24-byte header.
        int typeAt = 24 + 9 + 4 + 8;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(typeAt), 77);
        Assert.Contains("unknown tensor type 77", Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bytes).Dispose()).Message);

        var dup = new GgufWriter();
        dup.AddTensor("x", [1f], 1);
        dup.AddTensor("y", [1f], 1);
        ms = new MemoryStream();
        dup.Write(ms);
        bytes = ms.ToArray();
        bytes[24 + 33 + 8] = (byte)'x'; // rename the second tensor "y" → "x" (a tensor info with a 1-byte name is 33 bytes)
        Assert.Contains("duplicate tensor name 'x'", Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bytes).Dispose()).Message);
    }

    [Fact]
    public void MissingAndEmptyFilesAreNamed()
    {
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open("/nonexistent/model.gguf"));
        Assert.Contains("not found", e.Message);
        var empty = Path.GetTempFileName();
        try { Assert.Contains("truncated", Assert.Throws<GgufFormatException>(() => GgufFile.Open(empty)).Message); }
        finally { File.Delete(empty); }
    }
}
