namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Shape checks made when a model is built, as llama.cpp checks every tensor against the hyper-parameters: a file whose
/// tensors do not fit together is refused at load with the tensor named, not discovered by a kernel mid-request.
/// </summary>
internal static class Shapes
{
    public static void Input(Linear l, int features) => Require(l.InFeatures == features, l.Name, $"takes {l.InFeatures} inputs, expected {features}");

    public static void Output(Linear l, int features) => Require(l.OutFeatures == features, l.Name, $"has {l.OutFeatures} outputs, expected {features}");

    public static void Vector(float[]? v, int length, string name) => Require(v is null || v.Length == length, name, $"has {v?.Length} values, expected {length}");

    /// <summary>A hyper-parameter that must hold for the kernels (they size stack buffers and index heads by it).</summary>
    public static void Parameter(bool ok, string problem)
    {
        if (!ok) throw new InvalidDataException(problem);
    }

    public static void Require(bool ok, string tensor, string problem)
    {
        if (!ok) throw new InvalidDataException($"tensor '{tensor}' {problem}");
    }
}
