namespace Kaiyuan.Chat;

/// <summary>Told about each generation's tokens and latencies (the server's <c>/metrics</c> counts them).</summary>
internal interface IGenerationMetrics
{
    void PromptTokens(int n);
    void GeneratedToken();
    void TimeToFirstToken(double seconds);
    void InterTokenLatency(double seconds);
}
