using System.CommandLine;
using System.Globalization;
using Kaiyuan.Gguf;
using Kaiyuan.Hub;
using Kaiyuan.Quantization;
using Kaiyuan.Store;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan pull</c>, <c>list</c>, <c>show</c> and <c>rm</c>: the local model store.</summary>
internal static class StoreCommands
{
    /// <summary>The store a command works on: <c>--store</c>, else <c>KAIYUAN_HOME</c>, else <c>~/.kaiyuan</c>.</summary>
    internal static ModelStore StoreOf(ParseResult p) => p.GetValue(CommandLine.StoreRoot) is { Length: > 0 } root ? new ModelStore(root) : ModelStore.Default();

    /// <summary>A model argument (file path or store reference) resolved to a GGUF path.</summary>
    internal static string ResolveModel(ParseResult p, string refOrPath) => ModelReference.Resolve(refOrPath, StoreOf(p));

    public static Command Pull()
    {
        var reference = new Argument<string>("model") { Description = "hf.co/OWNER/REPO[:QUANT], hf.co/OWNER/REPO/FILE.gguf, or an alias such as " + ModelCatalog.DefaultAlias };
        var cmd = new Command("pull", "Download a GGUF model from the Hugging Face Hub into the local store (HF_TOKEN, HF_ENDPOINT honoured)") { reference };
        cmd.SetAction(async (p, ct) =>
        {
            var m = await PullAsync(StoreOf(p), p.GetValue(reference)!, ct);
            Console.Out.WriteLine($"pulled {m.Reference} ({InfoCommand.Size(m.Size)}, sha256 {m.Sha256[..12]})");
            return 0;
        });
        return cmd;
    }

    /// <summary>Pulls a reference into the store with a progress bar and notes on stderr.</summary>
    internal static async Task<StoreManifest> PullAsync(ModelStore store, string reference, CancellationToken ct)
    {
        using var hub = new HubClient(HubOptions.FromEnvironment());
        var bar = new ProgressBar("pulling");
        var puller = new ModelPuller(store, hub, ModelCatalog.For(store))
        {
            Progress = bar.Report,
            Log = message =>
            {
                bar.Finish();
                Console.Error.WriteLine(message);
            },
        };
        try
        {
            return await puller.PullAsync(reference, ct);
        }
        finally
        {
            bar.Finish();
        }
    }

    /// <summary>
    /// A model argument resolved to a GGUF path, pulling it first when it is a store reference not pulled yet (as
    /// <c>ollama run</c> does).
    /// </summary>
    internal static string ResolveOrPull(ParseResult p, string refOrPath)
    {
        var store = StoreOf(p);
        try
        {
            return ModelReference.Resolve(refOrPath, store);
        }
        catch (ModelNotFoundException) when (ModelReference.TryParse(refOrPath, ModelCatalog.For(store)) is not null)
        {
            Console.Error.WriteLine($"{refOrPath} is not in the local store; pulling it");
            PullAsync(store, refOrPath, CancellationToken.None).GetAwaiter().GetResult();
            return ModelReference.Resolve(refOrPath, store);
        }
    }

    public static Command List()
    {
        var catalog = new Option<bool>("--catalog") { Description = "List the catalog's aliases instead of the pulled models" };
        var cmd = new Command("list", "List the models in the local store") { catalog };
        cmd.Aliases.Add("ls");
        cmd.SetAction(p =>
        {
            var store = StoreOf(p);
            var w = Console.Out;
            if (p.GetValue(catalog))
            {
                w.WriteLine($"{"ALIAS",-20} {"REPOSITORY",-48} {"QUANT",-8} DESCRIPTION");
                foreach (var (alias, e) in ModelCatalog.For(store).Entries.OrderBy(x => x.Key, StringComparer.Ordinal))
                    w.WriteLine($"{alias,-20} {e.Repo,-48} {e.File ?? e.Quant,-8} {e.Description}");
                return 0;
            }
            var all = store.List();
            if (all.Count == 0)
            {
                w.WriteLine($"no models in {store.Root}; pull one with `kaiyuan pull {ModelCatalog.DefaultAlias}` (see `kaiyuan list --catalog`)");
                return 0;
            }
            w.WriteLine($"{"NAME",-64} {"QUANT",-8} {"SIZE",10} {"ID",-12} PULLED");
            foreach (var m in all)
            {
                string name = m.Aliases.Length > 0 ? $"{m.Reference} ({string.Join(", ", m.Aliases)})" : m.Reference;
                w.WriteLine($"{name,-64} {m.Quant ?? "-",-8} {InfoCommand.Size(m.Size),10} {m.Sha256[..12],-12} " +
                            m.PulledAt.ToLocalTime().ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture));
            }
            return 0;
        });
        return cmd;
    }

    public static Command Show()
    {
        var model = new Argument<string>("model") { Description = "A store reference or a GGUF file path" };
        var template = new Option<bool>("--template") { Description = "Print only the chat template" };
        var cmd = new Command("show", "Show a model's architecture, size, quantization, context length and chat template") { model, template };
        cmd.SetAction(p =>
        {
            var store = StoreOf(p);
            string text = p.GetValue(model)!;
            string path = ModelReference.Resolve(text, store);
            using var file = GgufFile.Open(path);
            var md = file.Metadata;
            string? chatTemplate = md.GetStringOrNull("tokenizer.chat_template");
            var w = Console.Out;
            if (p.GetValue(template))
            {
                if (chatTemplate is null) throw new InvalidDataException($"{text} has no chat template (tokenizer.chat_template)");
                w.WriteLine(chatTemplate);
                return 0;
            }
            var manifest = File.Exists(text) ? null : ModelReference.TryParse(text, ModelCatalog.For(store))?.FindIn(store);
            string arch = file.Architecture;
            long parameters = file.Tensors.Sum(t => t.ElementCount);
            w.WriteLine($"  model         {(manifest is not null ? manifest.Reference : path)}");
            if (manifest is not null) w.WriteLine($"  file          {path}");
            if (md.GetStringOrNull("general.name") is { } name) w.WriteLine($"  name          {name}");
            w.WriteLine($"  architecture  {arch}");
            w.WriteLine($"  parameters    {Count(parameters)}");
            w.WriteLine($"  size          {InfoCommand.Size(file.FileSize)}");
            string mix = md.Contains("general.file_type") ? FileTypes.Name(md.GetInteger("general.file_type")) : "not recorded";
            w.WriteLine($"  quantization  {mix} (tensors: {string.Join(", ", file.TypeSummary().Select(s => $"{s.Type}×{s.Count}"))})");
            if (md.Contains($"{arch}.context_length")) w.WriteLine($"  context       {md.GetInteger($"{arch}.context_length")}");
            if (md.Contains($"{arch}.embedding_length")) w.WriteLine($"  embedding     {md.GetInteger($"{arch}.embedding_length")}");
            if (md.Contains($"{arch}.block_count")) w.WriteLine($"  layers        {md.GetInteger($"{arch}.block_count")}");
            if (md.Contains($"{arch}.expert_count")) w.WriteLine($"  experts       {md.GetInteger($"{arch}.expert_count")} ({md.GetInteger($"{arch}.expert_used_count", 0)} used)");
            if (md.GetStringOrNull("tokenizer.ggml.model") is { } tok) w.WriteLine($"  tokenizer     {tok}");
            if (chatTemplate is null) w.WriteLine("  chat template none (completion only: `run` uses the raw prompt)");
            else
            {
                var lines = chatTemplate.ReplaceLineEndings("\n").Split('\n');
                w.WriteLine($"  chat template {lines.Length} lines, {chatTemplate.Length} characters (--template prints it):");
                foreach (var line in lines.Take(6)) w.WriteLine($"    {line}");
                if (lines.Length > 6) w.WriteLine("    ...");
            }
            return 0;
        });
        return cmd;
    }

    public static Command Remove()
    {
        var model = new Argument<string>("model") { Description = "A store reference (as `kaiyuan list` shows it, or an alias)" };
        var cmd = new Command("rm", "Remove a model from the local store") { model };
        cmd.SetAction(p =>
        {
            var store = StoreOf(p);
            string text = p.GetValue(model)!;
            var reference = ModelReference.TryParse(text, ModelCatalog.For(store));
            if (reference is null)
            {
                if (File.Exists(text)) throw new ArgumentException($"{text} is a file, not a store reference; `rm` only removes models from the store");
                throw new ModelNotFoundException($"'{text}' is not a store reference (see `kaiyuan list`)");
            }
            var m = reference.FindIn(store) ?? throw new ModelNotFoundException($"'{text}' is not in the local store ({store.Root}); see `kaiyuan list`");
            bool freed = store.Remove(m);
            Console.Out.WriteLine(freed ? $"removed {m.Reference} ({InfoCommand.Size(m.Size)} freed)" : $"removed {m.Reference} (its data is still used by another reference)");
            return 0;
        });
        return cmd;
    }

    private static string Count(long n) => n switch
    {
        >= 1_000_000_000 => $"{n / 1e9:F2}B",
        >= 1_000_000 => $"{n / 1e6:F2}M",
        >= 1_000 => $"{n / 1e3:F1}K",
        _ => n.ToString(CultureInfo.InvariantCulture),
    };
}
