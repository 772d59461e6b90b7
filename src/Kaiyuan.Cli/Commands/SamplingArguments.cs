using System.CommandLine;
using Kaiyuan.Sampling;

namespace Kaiyuan.Cli.Commands;

/// <summary>The sampling options `generate` and `run` share, spelled as llama.cpp's tools spell them.</summary>
internal sealed class SamplingArguments
{
    public Option<int> Count { get; } = new("--n-predict", "-n") { Description = "Tokens to generate (-1: until end of generation or a full context)", DefaultValueFactory = _ => -1 };
    public Option<float> Temperature { get; } = new("--temp") { Description = "Temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
    public Option<int> TopK { get; } = new("--top-k") { DefaultValueFactory = _ => 40 };
    public Option<float> TopP { get; } = new("--top-p") { DefaultValueFactory = _ => 0.95f };
    public Option<float> MinP { get; } = new("--min-p") { DefaultValueFactory = _ => 0.05f };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { DefaultValueFactory = _ => 1.0f };
    public Option<ulong?> Seed { get; } = new("--seed", "-s") { Description = "Random seed (same seed, same output)" };

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { Count, Temperature, TopK, TopP, MinP, RepeatPenalty, Seed }) command.Options.Add(o);
    }

    public SamplerOptions Read(ParseResult p) => new()
    {
        Temperature = p.GetValue(Temperature),
        TopK = p.GetValue(TopK),
        TopP = p.GetValue(TopP),
        MinP = p.GetValue(MinP),
        RepeatPenalty = p.GetValue(RepeatPenalty),
        Seed = p.GetValue(Seed),
    };
}
