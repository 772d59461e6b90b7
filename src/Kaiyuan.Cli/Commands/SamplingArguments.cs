using System.CommandLine;
using Kaiyuan.Sampling;

namespace Kaiyuan.Cli.Commands;

/// <summary>The sampling options `generate` and `run` share, spelled as llama.cpp's tools spell them.</summary>
internal sealed class SamplingArguments
{
    public Option<int> Count { get; } = new("--n-predict", "-n") { Description = "Tokens to generate (-1: until end of generation or a full context)", DefaultValueFactory = _ => -1 };
    public Option<float> Temperature { get; } = new("--temp") { Description = "Temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Sample among the k likeliest tokens (0: all)", DefaultValueFactory = _ => 40 };
    public Option<float> TopP { get; } = new("--top-p") { Description = "Sample among the likeliest tokens whose probabilities add up to p (1: all)", DefaultValueFactory = _ => 0.95f };
    public Option<float> MinP { get; } = new("--min-p") { Description = "Drop tokens less likely than p × the likeliest one's probability (0: none)", DefaultValueFactory = _ => 0.05f };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { Description = "Divide the scores of tokens already in the context by this (1: off)", DefaultValueFactory = _ => 1.0f };
    public Option<ulong?> Seed { get; } = new("--seed", "-s") { Description = "Random seed (same seed, same output)" };

    public SamplingArguments()
    {
        Arguments.Range(Count, -1, int.MaxValue, "must be -1 (until end of generation or a full context) or a number of tokens");
        Arguments.Range(Temperature, 0f, 100f, "must be between 0 (greedy) and 100");
        Arguments.Range(TopK, 0, int.MaxValue, "must be 0 (all tokens) or more");
        Arguments.Range(TopP, 0f, 1f, "must be between 0 and 1");
        Arguments.Range(MinP, 0f, 1f, "must be between 0 and 1");
        Arguments.Range(RepeatPenalty, float.Epsilon, 100f, "must be above 0 (1: off)");
    }

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
