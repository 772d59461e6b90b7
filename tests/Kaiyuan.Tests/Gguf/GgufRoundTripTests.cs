using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Gguf;

public class GgufRoundTripTests
{
    private static byte[] WriteToBytes(GgufWriter w)
    {
        var ms = new MemoryStream();
        w.Write(ms);
        return ms.ToArray();
    }

    [Fact]
    public void EveryValueTypeRoundTrips()
    {
        var w = new GgufWriter();
        var m = w.Metadata;
        m.Set("general.architecture", GgufValue.Of("llama"));
        m.Set("u8", new GgufValue(GgufValueType.UInt8, (byte)200));
        m.Set("i8", new GgufValue(GgufValueType.Int8, (sbyte)-5));
        m.Set("u16", new GgufValue(GgufValueType.UInt16, (ushort)65000));
        m.Set("i16", new GgufValue(GgufValueType.Int16, (short)-30000));
        m.Set("u32", GgufValue.Of(4_000_000_000u));
        m.Set("i32", GgufValue.Of(-7));
        m.Set("u64", GgufValue.Of(ulong.MaxValue));
        m.Set("i64", new GgufValue(GgufValueType.Int64, long.MinValue));
        m.Set("f32", GgufValue.Of(1.5f));
        m.Set("f64", new GgufValue(GgufValueType.Float64, Math.PI));
        m.Set("bool", GgufValue.Of(true));
        m.Set("str", GgufValue.Of("héllo 世界 ▁"));
        m.Set("strs", GgufValue.Of(GgufArray.Of(["a", "", "▁b", "<0x0A>"])));
        m.Set("floats", GgufValue.Of(GgufArray.Of([0.5f, -1f])));
        m.Set("nested", GgufValue.Of(new GgufArray(GgufValueType.Array, new[] { GgufArray.Of([1, 2]), GgufArray.Of(["x"]) })));
        w.AddTensor("a", [1f, 2f, 3f, 4f, 5f, 6f], 3, 2);
        w.AddTensor("b", GgmlType.Q8_0, [32], new byte[34]);

        using var f = GgufFile.FromBytes(WriteToBytes(w));
        Assert.Equal(3u, f.Version);
        Assert.Equal("llama", f.Architecture);
        Assert.Equal((byte)200, f.Metadata.Get("u8").Value);
        Assert.Equal((sbyte)-5, f.Metadata.Get("i8").Value);
        Assert.Equal(65000, f.Metadata.GetInteger("u16"));
        Assert.Equal(-30000, f.Metadata.GetInteger("i16"));
        Assert.Equal(4_000_000_000L, f.Metadata.GetInteger("u32"));
        Assert.Equal(-7, f.Metadata.GetInteger("i32"));
        Assert.Equal(ulong.MaxValue, f.Metadata.Get("u64").Value);
        Assert.Equal(long.MinValue, f.Metadata.GetInteger("i64"));
        Assert.Equal(1.5f, f.Metadata.GetFloat("f32"));
        Assert.Equal(Math.PI, f.Metadata.Get("f64").Value);
        Assert.True(f.Metadata.GetBool("bool"));
        Assert.Equal("héllo 世界 ▁", f.Metadata.GetString("str"));
        Assert.Equal(["a", "", "▁b", "<0x0A>"], f.Metadata.GetStringArray("strs"));
        Assert.Equal([0.5f, -1f], f.Metadata.GetFloatArray("floats"));
        var nested = (GgufArray[])f.Metadata.GetArray("nested").Items;
        Assert.Equal([1, 2], (int[])nested[0].Items);
        Assert.Equal(["x"], (string[])nested[1].Items);
        Assert.Equal(m.Keys, f.Metadata.Keys);

        var a = f.GetTensor("a");
        Assert.Equal([3L, 2L], a.Dimensions);
        Assert.Equal(2, a.RowCount);
        Assert.Equal([4f, 5f, 6f], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a.Row(1)).ToArray());
        Assert.Equal(0, (f.DataOffset + (long)f.GetTensor("b").Offset) % 32);
    }

    [Fact]
    public void TypedAccessorsExplainMissingAndMistypedKeys()
    {
        var w = new GgufWriter();
        w.Metadata.Set("name", GgufValue.Of("x"));
        using var f = GgufFile.FromBytes(WriteToBytes(w));
        var missing = Assert.Throws<GgufMetadataException>(() => f.Metadata.GetInteger("llama.block_count"));
        Assert.Contains("'llama.block_count' is missing", missing.Message);
        var wrong = Assert.Throws<GgufMetadataException>(() => f.Metadata.GetInteger("name"));
        Assert.Contains("holds String, expected an integer", wrong.Message);
        Assert.Equal(7, f.Metadata.GetInteger("absent", 7));
    }

    [Fact]
    public void CustomAlignmentIsHonoured()
    {
        var w = new GgufWriter { Alignment = 64 };
        w.AddTensor("t", [1f], 1);
        w.AddTensor("u", [2f, 3f], 2);
        using var f = GgufFile.FromBytes(WriteToBytes(w));
        Assert.Equal(64, f.Alignment);
        Assert.Equal(64ul, f.GetTensor("u").Offset);
        Assert.Equal(0, f.DataOffset % 64);
    }

    [Fact]
    public void FixtureModelRewritesIdentically()
    {
        var path = Fixtures.ModelPath("aidreams260K", "aidreams260K-q6_k.gguf");
        using var f = GgufFile.Open(path);
        var w = new GgufWriter();
        foreach (var (k, v) in f.Metadata.Entries) w.Metadata.Set(k, v);
        foreach (var t in f.Tensors) w.AddTensor(t.Name, t.Type, t.Dimensions, t.Bytes.ToArray());
        var bytes = WriteToBytes(w);
        using var g = GgufFile.FromBytes(bytes);
        Assert.Equal(f.Metadata.Keys, g.Metadata.Keys);
        foreach (var t in f.Tensors)
        {
            var u = g.GetTensor(t.Name);
            Assert.Equal(t.Type, u.Type);
            Assert.Equal(t.Dimensions, u.Dimensions);
            Assert.True(t.Bytes.SequenceEqual(u.Bytes), t.Name);
        }
        Assert.Equal(File.ReadAllBytes(path), bytes);
    }
}
