using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan generate</c>: stream a completion, or with <c>--json</c> print exactly one object
/// <c>{"prompt_ids":[...],"ids":[...],"text":"..."}</c> (plus <c>"logits"</c> with <c>--logits</c>).
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = Arguments.Model();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt text (BOS added as the model's metadata says)" };
        var promptIds = new Option<string>("--prompt-ids") { Description = "Prompt as token ids, e.g. 1,50,100 (used as given)" };
        var sampling = new SamplingArguments();
        var constraint = new ConstraintArguments();
        var speculation = new SpeculationArguments();
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of streaming text" };
        var logits = new Option<bool>("--logits") { Description = "With --json: include the logits that produced each id" };
        var cacheType = Arguments.CacheType();
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Do not stop at end-of-generation tokens" };
        var cmd = new Command("generate", "Generate text from a prompt")
        {
            model, prompt, promptIds, threads, ctxSize, json, logits, ignoreEos, cacheType,
        };
        sampling.AddTo(cmd);
        constraint.AddTo(cmd);
        speculation.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            if ((r.GetValue(prompt) is null) == (r.GetValue(promptIds) is null)) r.AddError("give exactly one of --prompt and --prompt-ids");
        });
        cmd.SetAction(p =>
        {
            return Run(StoreCommands.ResolveModel(p, p.GetValue(model)!), p.GetValue(prompt), p.GetValue(promptIds), p.GetValue(sampling.Count), sampling.Read(p),
                p.GetValue(threads), p.GetValue(ctxSize), p.GetValue(json), p.GetValue(logits), p.GetValue(ignoreEos),
                Arguments.ParseCacheType(p.GetValue(cacheType)), v => constraint.Compile(p, v), speculation.Read(p),
                speculation.DraftModelPath(p), p.GetValue(speculation.DraftMax), speculation.ReadMtp(p));
        });
        return cmd;
    }

    private static int Run(string path, string? promptText, string? promptIdsText, int count, SamplerOptions sampling,
        int threads, int ctxSize, bool json, bool withLogits, bool ignoreEos, Kaiyuan.Gguf.GgmlType cacheType,
        Func<Tokenizer?, Constraints.GrammarConstraint?> grammar, int lookupDraft, string? draftPath, int draftMax, int mtpDraft)
    {
        using var model = ModelLoader.Load(path);
        using var draftModel = draftPath is null ? null : ModelLoader.Load(draftPath);
        var draft = draftModel is null ? null : new Speculative.DraftModel(draftModel, model, draftMax);
        // A file without tokenizer metadata can still run from --prompt-ids; its output is then ids only.
        var tokenizer = model.File.Metadata.Contains("tokenizer.ggml.model") ? Tokenizer.FromGguf(model.File.Metadata) : null;
        // A raw prompt: the grammar applies from the first generated token.
        var constraint = grammar(tokenizer)?.Create();
        int[] promptIds = promptIdsText is not null
            ? Arguments.ParseIds(promptIdsText, "--prompt-ids")
            : (tokenizer ?? throw new NotSupportedException($"{Path.GetFileName(path)} has no tokenizer; use --prompt-ids"))
                .Encode(promptText!, addSpecial: true, parseSpecial: true); // as llama.cpp tokenizes prompts
        foreach (int id in promptIds)
            if (id >= model.VocabSize) throw new ArgumentException($"--prompt-ids: token id {id} is outside the vocabulary (0…{model.VocabSize - 1})");
        InferenceSession session;
        try
        {
            session = new InferenceSession(model, ctxSize, threads, cacheType);
        }
        catch (OutOfMemoryException)
        {
            // The engine's wording also suggests --parallel, which only serve has.
            throw new ArgumentException($"--ctx-size {ctxSize}: the KV cache for that many tokens does not fit in memory; choose a smaller context");
        }
        using var _ = session;
        if (promptIds.Length >= session.ContextLength)
            throw new ContextOverflowException($"the prompt has {promptIds.Length} tokens; the context holds {session.ContextLength}");
        long drafted = 0, accepted = 0;
        var options = new GenerationOptions
        {
            MaxTokens = count,
            KeepLogits = withLogits,
            IgnoreEndOfGeneration = ignoreEos,
            IsEndOfGeneration = tokenizer is null ? null : tokenizer.IsEndOfGeneration,
            Constraint = constraint,
            LookupDraftTokens = lookupDraft,
            Draft = draft,
            MtpDraftTokens = mtpDraft,
            OnVerified = (proposed, taken) => { drafted += proposed; accepted += taken; },
        };
        var ids = new List<int>();
        var allLogits = new List<float[]>();
        var decoder = tokenizer?.CreateStreamingDecoder();
        var clock = Stopwatch.StartNew();
        double promptSeconds = 0;
        foreach (var token in Generator.Generate(session, promptIds, new Sampler(sampling), options))
        {
            if (ids.Count == 0) promptSeconds = clock.Elapsed.TotalSeconds;
            ids.Add(token.Id);
            if (token.Logits is not null) allLogits.Add(token.Logits);
            if (!json && decoder is not null) Console.Out.Write(decoder.Append(token.Id));
        }
        double total = clock.Elapsed.TotalSeconds;
        if (json)
        {
            var output = new Dictionary<string, object>
            {
                ["prompt_ids"] = promptIds,
                ["ids"] = ids,
                ["text"] = tokenizer?.Decode(ids.ToArray()) ?? "",
            };
            if (withLogits) output["logits"] = allLogits;
            Console.Out.WriteLine(JsonSerializer.Serialize(output));
        }
        else
        {
            if (decoder is not null) Console.Out.Write(decoder.Flush());
            Console.Out.WriteLine();
            Console.Out.Flush();
            double genSeconds = Math.Max(1e-9, total - promptSeconds);
            Console.Error.WriteLine($"prompt: {promptIds.Length} tokens, {promptIds.Length / Math.Max(1e-9, promptSeconds):F1} tokens/s | " +
                                    $"generation: {ids.Count} tokens, {Math.Max(0, ids.Count - 1) / genSeconds:F1} tokens/s" +
                                    (drafted > 0 ? $" | drafts: {accepted} of {drafted} accepted ({100.0 * accepted / drafted:F1}%)" : ""));
        }
        return 0;
    }
}
