namespace Kaiyuan.Sampling;

/// <summary>Sampling parameters, with llama.cpp's defaults. Temperature 0 (or below) means greedy.</summary>
public sealed record SamplerOptions
{
    /// <summary>Divides the logits before the draw: lower is more deterministic; 0 or below means greedy (argmax). Default 0.8.</summary>
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keeps only the <c>TopK</c> most likely tokens; 0 or below keeps them all. Default 40.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keeps the most likely tokens until their probabilities add up to <c>TopP</c> (nucleus sampling); 1 or above keeps them all. Default 0.95.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drops tokens less likely than <c>MinP</c> times the most likely one; 0 or below drops none. Default 0.05.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>Divides positive logits (multiplies negative ones) of tokens seen in the last <see cref="RepeatLastN"/>; 1 is off (the default).</summary>
    public float RepeatPenalty { get; init; } = 1.0f;
    /// <summary>How many recent tokens (prompt included) the penalties look at; negative means the whole history, 0 none. Default 64.</summary>
    public int RepeatLastN { get; init; } = 64;
    /// <summary>Subtracted once from the logit of every token seen in the penalty window; 0 is off (the default).</summary>
    public float PresencePenalty { get; init; }
    /// <summary>Subtracted from a token's logit for each time it occurs in the penalty window; 0 is off (the default).</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>Seed of the random draw, for reproducible runs; null seeds it randomly.</summary>
    public ulong? Seed { get; init; }
    /// <summary>Added to the logits of the given token ids before penalties and sampling (ids outside the vocabulary are ignored); null for none.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>Greedy decoding: always the most likely token (after bias and penalties).</summary>
    public static SamplerOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>True when <see cref="Temperature"/> is 0 or below, so sampling takes the argmax.</summary>
    public bool IsGreedy => Temperature <= 0;
}
