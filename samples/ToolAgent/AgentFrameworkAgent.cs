using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Samples.ToolAgent;

/// <summary>
/// The same agent with the Microsoft Agent Framework: a <see cref="ChatClientAgent"/> over Kaiyuan's IChatClient holds the
/// instructions and tools, invokes the tools itself, and keeps the conversation in a session across runs.
/// </summary>
public static class AgentFrameworkAgent
{
    /// <summary>Asks each of <paramref name="questions"/> in one session (later questions may refer to earlier answers).</summary>
    public static async Task<List<AgentResponse>> AskAsync(IChatClient model, IEnumerable<string> questions, TextWriter output,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        AIAgent agent = new ChatClientAgent(model, new ChatClientAgentOptions
        {
            Name = "weather",
            ChatOptions = new ChatOptions
            {
                Instructions = "You answer questions about the weather and the time. Use the tools; do not guess.",
                Tools = WeatherAgent.CreateTools(output),
            },
        });

        // A session carries the history from one run to the next.
        AgentSession session = await agent.CreateSessionAsync(cancellationToken);
        List<AgentResponse> responses = [];
        foreach (string question in questions)
        {
            var response = await agent.RunAsync(question, session, new ChatClientAgentRunOptions(options), cancellationToken);
            await output.WriteLineAsync(response.Text);
            responses.Add(response);
        }
        return responses;
    }
}
