using System.CommandLine;

namespace Kaiyuan.Cli.Commands;

/// <summary>Speculative decoding's options, spelled the same by generate, run and serve.</summary>
internal sealed class SpeculationArguments
{
    public Option<bool> Lookup { get; } = new("--lookup")
    {
        Description = "Prompt-lookup speculative decoding: propose the tokens that followed the last few tokens earlier in the text and verify them in one pass (same output, faster when the answer copies its input)",
    };

    public Option<int> DraftMax { get; } = new("--draft-max") { Description = "Tokens proposed per step at most (generate and run use at most 6)", DefaultValueFactory = _ => 6 };

    public SpeculationArguments() => Arguments.Range(DraftMax, 1, 64, "must be between 1 and 64");

    public void AddTo(Command command)
    {
        command.Options.Add(Lookup);
        command.Options.Add(DraftMax);
    }

    /// <summary>Draft tokens per step, 0 when speculation is off.</summary>
    public int Read(ParseResult p) => p.GetValue(Lookup) ? p.GetValue(DraftMax) : 0;
}
