using System.CommandLine;

namespace Kaiyuan.Cli.Commands;

/// <summary>Speculative decoding's options, spelled the same by generate, run and serve.</summary>
internal sealed class SpeculationArguments
{
    public Option<bool> Lookup { get; } = new("--lookup")
    {
        Description = "Prompt-lookup speculative decoding: propose the tokens that followed the last few tokens earlier in the text and verify them in one pass (same output, faster when the answer copies its input)",
    };

    public Option<string> ModelDraft { get; } = new("--model-draft", "-md")
    {
        Description = "Speculative decoding with a draft model: a smaller GGUF (path or store reference) with the same vocabulary proposes tokens greedily and the model verifies them in one pass (same output; sampled output keeps its distribution). Not with --lookup",
    };

    public Option<bool> Mtp { get; } = new("--mtp")
    {
        Description = "Speculative decoding with the model's own multi-token-prediction (NextN) layer, which DeepSeek-V3 and GLM-4.5 files carry: it proposes tokens and the model verifies them in one pass (same output; sampled output keeps its distribution). Not with --lookup or --model-draft",
    };

    public Option<int> DraftMax { get; } = new("--draft-max") { Description = "Tokens proposed per step at most (generate and run use at most 6)", DefaultValueFactory = _ => 6 };

    public SpeculationArguments() => Arguments.Range(DraftMax, 1, 64, "must be between 1 and 64");

    public void AddTo(Command command)
    {
        command.Options.Add(Lookup);
        command.Options.Add(ModelDraft);
        command.Options.Add(Mtp);
        command.Options.Add(DraftMax);
        // One proposer per sequence: both would need a rule for merging proposals, which neither output would gain from.
        command.Validators.Add(r =>
        {
            if ((r.GetValue(Lookup) ? 1 : 0) + (r.GetValue(ModelDraft) is not null ? 1 : 0) + (r.GetValue(Mtp) ? 1 : 0) > 1)
                r.AddError("choose one of --lookup, --model-draft and --mtp");
        });
    }

    /// <summary>Prompt-lookup draft tokens per step, 0 when it is off.</summary>
    public int Read(ParseResult p) => p.GetValue(Lookup) ? p.GetValue(DraftMax) : 0;

    /// <summary>Multi-token-prediction draft tokens per step, 0 when it is off.</summary>
    public int ReadMtp(ParseResult p) => p.GetValue(Mtp) ? p.GetValue(DraftMax) : 0;

    /// <summary>The draft model's file (a store reference resolved), null when there is none.</summary>
    public string? DraftModelPath(ParseResult p) => p.GetValue(ModelDraft) is { } given ? StoreCommands.ResolveModel(p, given) : null;
}
