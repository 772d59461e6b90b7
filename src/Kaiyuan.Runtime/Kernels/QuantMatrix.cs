using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Kernels;

/// <summary>
/// A 2-D weight matrix of any tensor type in mapped memory: <see cref="Rows"/> output features, each a row of
/// <see cref="Columns"/> input features. A 3-D expert tensor yields one matrix per expert through <see cref="Expert"/>.
/// </summary>
internal readonly unsafe struct QuantMatrix
{
    public readonly byte* Data;
    public readonly GgmlType Type;
    public readonly int Rows;
    public readonly int Columns;
    public readonly int RowBytes;
    /// <summary>The tensor it comes from (null for a matrix made up in code), for <see cref="ActivationTap"/>.</summary>
    public readonly string? Name;
    /// <summary>Which of the tensor's <see cref="Matrices"/> stacked matrices (experts, heads) this is.</summary>
    public readonly int Matrix;
    public readonly int Matrices;

    public QuantMatrix(byte* data, GgmlType type, int rows, int columns, string? name = null, int matrix = 0, int matrices = 1)
    {
        Data = data;
        Type = type;
        Rows = rows;
        Columns = columns;
        RowBytes = checked((int)GgmlTypeInfo.RowBytes(type, columns));
        (Name, Matrix, Matrices) = (name, matrix, matrices);
    }

    /// <summary>The matrix of a 2-D tensor, or of a 3-D tensor's experts stacked (use <see cref="Expert"/>).</summary>
    public static QuantMatrix Of(GgufTensor t)
    {
        if (!QuantizedDot.IsSupported(t.Type)) throw new NotSupportedException($"tensor '{t.Name}' has type {t.Type}, which Kaiyuan does not support yet");
        return new QuantMatrix(t.Data, t.Type, checked((int)t.RowCount), checked((int)t.RowLength), t.Name);
    }

    public ReadOnlySpan<byte> Row(int r) => new(Data + (long)r * RowBytes, RowBytes);

    /// <summary>Expert <paramref name="e"/> of <paramref name="experts"/> stacked along the rows.</summary>
    public QuantMatrix Expert(int e, int experts)
    {
        int rows = Rows / experts;
        return new QuantMatrix(Data + (long)e * rows * RowBytes, Type, rows, Columns, Name, e, experts);
    }

    /// <summary>Copies row <paramref name="r"/> as floats (embedding lookup).</summary>
    public void DequantizeRow(int r, Span<float> dst) => Dequantize.Row(Type, Row(r), dst[..Columns]);
}
