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
    /// <summary>
    /// What keeps <see cref="Data"/> alive when it is not the mapped file's: a repacked copy (<see cref="ForMultiply"/>).
    /// Every copy of the matrix holds it, the multiply jobs included while they run.
    /// </summary>
    private readonly WeightCopy? _owner;

    public QuantMatrix(byte* data, GgmlType type, int rows, int columns, string? name = null, int matrix = 0, int matrices = 1) :
        this(data, type, rows, columns, name, matrix, matrices, owner: null)
    {
    }

    private QuantMatrix(byte* data, GgmlType type, int rows, int columns, string? name, int matrix, int matrices, WeightCopy? owner)
    {
        Data = data;
        Type = type;
        Rows = rows;
        Columns = columns;
        RowBytes = checked((int)GgmlTypeInfo.RowBytes(Q5Fields.FileType(type), columns));
        (Name, Matrix, Matrices, _owner) = (name, matrix, matrices, owner);
    }

    /// <summary>The type a file's weights of <paramref name="type"/> are multiplied as here: Q5_0 repacked where the kernels take it so (<see cref="Q5Fields"/>).</summary>
    public static GgmlType KernelType(GgmlType type) => type == GgmlType.Q5_0 && Q5Fields.Used ? Q5Fields.Type : type;

    /// <summary>
    /// The matrix of a tensor that is only multiplied by (projections, experts, the output head), in the layout the kernels
    /// take it (<see cref="KernelType"/>): a repacked copy in memory where that differs from the file's, which the file's
    /// pages are then let go of (<see cref="GgufTensor.ReleasePages"/>). Where that memory cannot be had, the tensor keeps
    /// the file's layout, whose kernels still run.
    /// </summary>
    /// <param name="t">The tensor.</param>
    /// <param name="copies">Where the model keeps its copies, to free them when it is disposed; null to keep the file's layout (a model built only to be inspected).</param>
    public static QuantMatrix ForMultiply(GgufTensor t, WeightCopies? copies)
    {
        var m = Of(t);
        if (copies is null) return m;
        var repacked = Repacked(m);
        if (repacked._owner is { } copy)
        {
            copies.Add(copy);
            t.ReleasePages();
        }
        return repacked;
    }

    /// <summary><paramref name="m"/> in <see cref="KernelType"/>'s layout (itself where that is its own).</summary>
    public static QuantMatrix Repacked(QuantMatrix m)
    {
        if (KernelType(m.Type) == m.Type) return m;
        long bytes = (long)m.Rows * m.RowBytes;
        WeightCopy copy;
        try { copy = new WeightCopy(bytes + Q5Fields.Padding); }
        catch (OutOfMemoryException) { return m; }
        Q5Fields.Pack(m.Data, copy.Data, bytes / GgmlTypeInfo.Geometry(m.Type).TypeSize);
        new Span<byte>(copy.Data + bytes, Q5Fields.Padding).Clear();
        return new QuantMatrix(copy.Data, Q5Fields.Type, m.Rows, m.Columns, m.Name, m.Matrix, m.Matrices, copy);
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
        return new QuantMatrix(Data + (long)e * rows * RowBytes, Type, rows, Columns, Name, e, experts, _owner);
    }

    /// <summary>Copies row <paramref name="r"/> as floats (embedding lookup).</summary>
    public void DequantizeRow(int r, Span<float> dst) => Dequantize.Row(Type, Row(r), dst[..Columns]);
}
