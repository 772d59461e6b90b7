using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Models.Blocks;

/// <summary>Small tensors (norm weights, biases) read into managed memory as F32 once at load.</summary>
internal static class Vectors
{
    public static float[] ReadF32(GgufTensor t)
    {
        var result = new float[t.ElementCount];
        var (block, _) = GgmlTypeInfo.Geometry(t.Type);
        if (t.ElementCount % block != 0) throw new InvalidDataException($"tensor '{t.Name}' cannot be read as a vector");
        Dequantize.Row(t.Type, t.Bytes, result);
        return result;
    }
}
