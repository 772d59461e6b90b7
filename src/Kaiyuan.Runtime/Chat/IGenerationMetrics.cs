namespace Kaiyuan.Chat;

/// <summary>Told about each generation's tokens and latencies (the server's <c>/metrics</c> counts them).</summary>
public interface IGenerationMetrics
{
    /// <summary>A request was submitted with <paramref name="n"/> prompt tokens.</summary>
    void PromptTokens(int n);
    /// <summary>A token was generated.</summary>
    void GeneratedToken();
    /// <summary>A request's first token came <paramref name="seconds"/> after it was submitted.</summary>
    void TimeToFirstToken(double seconds);
    /// <summary>A token came <paramref name="seconds"/> after the one before it.</summary>
    void InterTokenLatency(double seconds);
}
