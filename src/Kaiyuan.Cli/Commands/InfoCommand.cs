using System.CommandLine;
using System.Globalization;
using Kaiyuan.Gguf;
using Kaiyuan.Models;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan info MODEL</c>: architecture, key hyper-parameters, metadata and a tensor table.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "A GGUF file path or a store reference" };
        var noTensors = new Option<bool>("--no-tensors") { Description = "Leave out the tensor table" };
        var cmd = new Command("info", "Describe a GGUF model: architecture, hyper-parameters, metadata, tensors") { model, noTensors };
        cmd.SetAction(p => Run(StoreCommands.ResolveModel(p, p.GetValue(model)!), !p.GetValue(noTensors)));
        return cmd;
    }

    private static int Run(string path, bool tensors)
    {
        using var file = GgufFile.Open(path);
        var w = Console.Out;
        w.WriteLine($"file:          {path}");
        w.WriteLine($"format:        GGUF v{file.Version}, {file.Tensors.Count} tensors, {file.Metadata.Count} metadata keys, {Size(file.FileSize)}");
        w.WriteLine($"architecture:  {file.Architecture}");
        if (file.Metadata.GetStringOrNull("general.name") is { } name) w.WriteLine($"name:          {name}");
        w.WriteLine($"types:         {string.Join(", ", file.TypeSummary().Select(s => $"{s.Type}×{s.Count} ({Size(s.Bytes)})"))}");
        Describe(file, w);

        w.WriteLine();
        w.WriteLine("metadata:");
        foreach (var (key, value) in file.Metadata.Entries)
        {
            string text = value.ToString();
            if (text.Length > 120) text = text[..117] + "...";
            w.WriteLine($"  {key} = {text.ReplaceLineEndings("\\n")}");
        }
        if (tensors)
        {
            w.WriteLine();
            w.WriteLine($"  {"tensor",-36} {"type",-6} {"shape",-22} {"bytes",12}");
            foreach (var t in file.Tensors)
                w.WriteLine($"  {t.Name,-36} {t.Type,-6} {t.ShapeText,-22} {t.ByteSize.ToString("N0", CultureInfo.InvariantCulture),12}");
        }
        return 0;
    }

    private static void Describe(GgufFile file, TextWriter w)
    {
        if (!ModelLoader.SupportedArchitectures.Contains(file.Architecture))
        {
            w.WriteLine($"support:       architecture '{file.Architecture}' is not supported by this build (supported: {string.Join(", ", ModelLoader.SupportedArchitectures)})");
            return;
        }
        var c = ModelShape.FromMetadata(file.Metadata);
        w.WriteLine($"layers:        {c.Layers}, embedding {c.EmbeddingLength}, vocabulary {c.VocabSize}, context {c.ContextLength}");
        w.WriteLine($"attention:     {c.Heads} heads, {c.KvHeads} KV heads, head dim k/v {c.KeyLength}/{c.ValueLength}, rope dims {c.RopeDimensions}, rope base {c.RopeFreqBase}" +
                    (c.RopeScaling != "none" ? $", rope scaling {c.RopeScaling} ×{c.RopeScalingFactor} (original context {c.RopeOriginalContext})" : ""));
        if (c.IsMla)
            w.WriteLine($"MLA:           q_lora_rank {c.QLoraRank}, kv_lora_rank {c.KvLoraRank}, qk head dim {c.KeyLengthMla} (rope {c.RopeDimensions}), v head dim {c.ValueLengthMla}");
        if (c.IsSparse)
            w.WriteLine($"sparse attn:   lightning indexer {c.IndexerHeads} heads × {c.IndexerKeyLength}, each query attends to the top {c.IndexerTopK} tokens");
        if (c.RecurrentLayers is { } recurrent)
        {
            string pattern = string.Concat(recurrent.Select(r => r ? 'L' : 'A'));
            w.WriteLine($"linear attn:   Gated DeltaNet in {recurrent.Count(r => r)} of {recurrent.Count} layers, {c.SsmKeyHeads} key / {c.SsmValueHeads} value heads × {c.SsmStateSize}, conv kernel {c.SsmConvKernel}");
            w.WriteLine($"layer pattern: {(pattern.Length > 64 ? pattern[..64] + "…" : pattern)} (L linear attention, A full attention)");
        }
        if (c.NextnLayers > 0) w.WriteLine($"MTP:           {c.NextnLayers} NextN layer(s) after the main stack (--mtp drafts with it)");
        if (c.FeedForwardLength > 0) w.WriteLine($"feed-forward:  {c.FeedForwardLength}");
        if (c.IsMoe)
            w.WriteLine($"experts:       {c.ExpertCount} experts, {c.ExpertUsedCount} active, {c.ExpertSharedCount} shared, expert FFN {c.ExpertFeedForwardLength}, " +
                        $"leading dense layers {c.LeadingDenseBlockCount}, gating {c.ExpertGating}, weights norm {c.ExpertWeightsNorm}, scale {c.ExpertWeightsScale}");
        try
        {
            using var model = ModelLoader.Load(GgufFile.Open(file.Path));
            long perToken = model.KvCacheBytesPerToken();
            w.WriteLine($"KV cache:      {perToken:N0} bytes per token (F32{(c.IsMla ? ", compressed MLA latent" : "")}{(c.IsSparse ? " and indexer keys" : "")}{(c.IsHybrid ? ", full-attention layers only" : "")}), {Size(perToken * c.ContextLength)} at full context");
            if (model.IsRecurrent)
                w.WriteLine($"state:         {model.RecurrentStateBytes:N0} bytes per sequence ({Size(model.RecurrentStateBytes)}: convolution windows and delta-rule states, whatever the context length)");
        }
        catch (Exception e) when (e is NotSupportedException or InvalidDataException)
        {
            w.WriteLine($"support:       cannot load: {e.Message}");
        }
    }

    internal static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
