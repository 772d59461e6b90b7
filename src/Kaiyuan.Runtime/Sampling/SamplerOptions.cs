namespace Kaiyuan.Sampling;

/// <summary>Sampling parameters, with llama.cpp's defaults. Temperature 0 (or below) means greedy.</summary>
public sealed record SamplerOptions
{
    public float Temperature { get; init; } = 0.8f;
    public int TopK { get; init; } = 40;
    public float TopP { get; init; } = 0.95f;
    public float MinP { get; init; } = 0.05f;
    public float RepeatPenalty { get; init; } = 1.0f;
    public int RepeatLastN { get; init; } = 64;
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    public ulong? Seed { get; init; }
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    public static SamplerOptions Greedy { get; } = new() { Temperature = 0 };

    public bool IsGreedy => Temperature <= 0;
}
