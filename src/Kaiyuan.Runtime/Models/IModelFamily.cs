namespace Kaiyuan.Models;

/// <summary>
/// A model family: how llama.cpp wires one decoder layer of this <c>general.architecture</c> from shared blocks.
/// Adding a family is one small class that composes <see cref="ModelBuilder"/> calls.
/// </summary>
internal interface IModelFamily
{
    /// <summary>The <c>general.architecture</c> values this family loads.</summary>
    IReadOnlyList<string> Architectures { get; }

    TransformerLayer BuildLayer(ModelBuilder b, int layer);
}
