using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Models.Architectures;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models;

/// <summary>Opens a GGUF file and assembles the model its <c>general.architecture</c> names.</summary>
public static class ModelLoader
{
    internal static IReadOnlyList<IModelFamily> Families { get; } =
        [new Llama(), new Qwen2(), new Qwen3(), new Qwen35(), new DeepSeek2(), new DeepSeek32(), new Glm4(), new Glm4Moe(), new MiniMaxM2()];

    /// <summary>The <c>general.architecture</c> values <see cref="Load(string)"/> can build.</summary>
    public static IEnumerable<string> SupportedArchitectures => Families.SelectMany(f => f.Architectures);

    /// <summary>Opens the GGUF file at <paramref name="path"/> and builds its model, which owns the file. Throws <see cref="GgufFormatException"/> for a malformed file, <see cref="NotSupportedException"/> for an unsupported architecture or a missing tensor, <see cref="InvalidDataException"/> for inconsistent metadata.</summary>
    public static TransformerModel Load(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            return Load(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Builds the model over an open file; the model owns the file from then on.</summary>
    public static TransformerModel Load(GgufFile file) => Load(file, copyWeights: true);

    /// <summary>
    /// <see cref="Load(GgufFile)"/>; <paramref name="copyWeights"/> false keeps every weight in the file's layout, reading
    /// none of them (a model built only to be inspected), where true copies those the kernels take in a layout of their
    /// own (<see cref="QuantMatrix.ForMultiply"/>).
    /// </summary>
    internal static TransformerModel Load(GgufFile file, bool copyWeights)
    {
        var copies = copyWeights ? new WeightCopies() : null;
        try
        {
            return Build(file, copies);
        }
        catch
        {
            copies?.Dispose();
            throw;
        }
    }

    private static TransformerModel Build(GgufFile file, WeightCopies? copies)
    {
        string arch = file.Architecture;
        var family = Families.FirstOrDefault(f => f.Architectures.Contains(arch))
            ?? throw new NotSupportedException($"architecture '{arch}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})");
        ModelConfig config;
        try { config = ModelConfig.FromMetadata(file.Metadata); }
        catch (GgufMetadataException e) { throw new InvalidDataException($"{Path.GetFileName(file.Path)}: {e.Message}", e); }
        var b = new ModelBuilder(file, config, copies);
        // Every block has tensors of its own: a count beyond the file's tensors is refused before anything is sized by it.
        if (config.BlockCount > file.Tensors.Count)
            throw new InvalidDataException($"{Path.GetFileName(file.Path)}: block_count is {config.BlockCount}, but the file has only {file.Tensors.Count} tensors");
        var layers = new List<TransformerLayer>();
        for (int i = 0; i < config.BlockCount; i++) layers.Add(family.BuildLayer(b, i));
        var embedding = QuantMatrix.Of(b.Tensor("token_embd.weight"));
        // Tied embeddings: without output.weight the head reuses the token embedding.
        var output = QuantMatrix.ForMultiply(b.OptionalTensor("output.weight") ?? b.Tensor("token_embd.weight"), copies);
        // The first multi-token-prediction layer (DeepSeek-V3 and GLM-4.5 ship one) drafts for --mtp.
        var nextn = config.NextnLayers > 0 ? NextnPredictor.TryBuild(b, family, config.BlockCount, embedding, output) : null;
        return new TransformerModel(file, config, embedding, layers, Vectors.ReadF32(b.Tensor("output_norm.weight")), output, nextn, copies);
    }
}
