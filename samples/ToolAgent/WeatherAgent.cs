using System.ComponentModel;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Samples.ToolAgent;

/// <summary>
/// A tool-calling agent with plain Microsoft.Extensions.AI: two C# methods become tools with <see cref="AIFunctionFactory"/>,
/// and <c>UseFunctionInvocation()</c> runs the calls the model makes and sends their results back until it answers.
/// </summary>
public static class WeatherAgent
{
    /// <summary>The agent's tools. Each writes a line to <paramref name="log"/> when it runs, so you can watch the calls.</summary>
    public static IList<AITool> CreateTools(TextWriter log) =>
    [
        AIFunctionFactory.Create(
            ([Description("The city, e.g. Paris")] string city) =>
            {
                log.WriteLine($"[tool] get_weather(city: {city})");
                // A real tool would call a weather service; a sample makes something up from the name.
                string[] skies = ["sunny", "cloudy", "rainy", "windy"];
                int hash = city.Sum(c => (int)c);
                return $"{skies[hash % skies.Length]}, {10 + hash % 20} °C in {city}";
            },
            "get_weather", "Gets the current weather in a city"),
        AIFunctionFactory.Create(
            ([Description("An IANA time zone, e.g. Europe/Paris")] string timeZone) =>
            {
                log.WriteLine($"[tool] get_time(timeZone: {timeZone})");
                // Invariant globalization still knows IANA zones on Linux and macOS; an unknown name is the model's mistake.
                try { return TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, TimeZoneInfo.FindSystemTimeZoneById(timeZone)).ToString("yyyy-MM-dd HH:mm zzz"); }
                catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException) { return $"unknown time zone '{timeZone}'"; }
            },
            "get_time", "Gets the current local time in a time zone"),
    ];

    /// <summary>Asks <paramref name="question"/> with the tools available; writes the tool calls and the answer to <paramref name="output"/>.</summary>
    public static async Task<ChatResponse> AskAsync(IChatClient model, string question, TextWriter output,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        // The middleware sits in front of the model's client: it sees FunctionCallContent in a reply, invokes the
        // matching AIFunction, appends a FunctionResultContent and calls the model again.
        using IChatClient agent = model.AsBuilder()
            .UseFunctionInvocation(configure: invoker => invoker.MaximumIterationsPerRequest = 3)
            .Build();

        options = options?.Clone() ?? new ChatOptions { Temperature = 0 };
        options.Tools = CreateTools(output);

        var response = await agent.GetResponseAsync(question, options, cancellationToken);
        await output.WriteLineAsync(response.Text);
        return response;
    }
}
