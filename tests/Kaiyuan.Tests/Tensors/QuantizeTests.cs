using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Tensors;

public class QuantizeTests
{
    /// <summary>
    /// Every tensor of llama-f32.gguf, quantized to the type llama-quantize chose for it in each fixture, must give the
    /// fixture's bytes block for block.
    /// </summary>
    /// <summary>The fixtures whose types Kaiyuan writes (the IQ4 files' data also came from an importance matrix the fixtures do not hold).</summary>
    public static TheoryData<string> ReproducibleFiles() =>
        new(DequantizeTests.QuantizedModelFiles().Select(row => row.Data).Where(f => !f.Contains("-iq", StringComparison.Ordinal)));

    [Theory]
    [MemberData(nameof(ReproducibleFiles))]
    public void ReproducesLlamaQuantizeByteForByte(string fileName)
    {
        var quantized = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/" + fileName));
        var original = new GgufTensorLocator(TestFixtures.ModelOrSkip("llama/llama-f32.gguf"));
        var blocksPerType = new Dictionary<GgmlType, (long Identical, long Total)>();
        foreach (var tensor in quantized.Tensors.Values)
        {
            var reference = original.Tensors[tensor.Name];
            var source = new float[reference.Elements];
            Dequantize.Row(GgmlType.F32, original.Data(reference), source);
            ReadOnlySpan<byte> expected = quantized.Data(tensor);
            var actual = new byte[expected.Length];
            long rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.RowLength);
            for (long row = 0; row < tensor.Rows; row++)
            {
                Quantize.Row(tensor.Type, source.AsSpan((int)(row * tensor.RowLength), (int)tensor.RowLength),
                    actual.AsSpan((int)(row * rowBytes), (int)rowBytes));
            }

            int typeSize = GgmlTypeInfo.Geometry(tensor.Type).TypeSize;
            var (identical, total) = blocksPerType.GetValueOrDefault(tensor.Type);
            for (int offset = 0; offset < expected.Length; offset += typeSize)
            {
                total++;
                if (expected.Slice(offset, typeSize).SequenceEqual(actual.AsSpan(offset, typeSize)))
                {
                    identical++;
                }
            }

            blocksPerType[tensor.Type] = (identical, total);
        }

        foreach (var (type, (identical, total)) in blocksPerType)
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"{fileName} {type}: {identical}/{total} blocks identical");
            Assert.True(identical == total, $"{fileName} {type}: only {identical} of {total} blocks are byte-identical to llama-quantize's");
        }
    }
}
