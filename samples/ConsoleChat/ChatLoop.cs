using Microsoft.Extensions.AI;

namespace Kaiyuan.Samples.ConsoleChat;

/// <summary>A multi-turn chat in a terminal: the model's reply streams out token by token, and every turn stays in the history.</summary>
public static class ChatLoop
{
    /// <summary>
    /// Reads the user's turns from <paramref name="input"/>, one a line, and streams each reply to <paramref name="output"/>.
    /// An empty line or the end of the input (Ctrl-D in a terminal) ends the chat. Returns the whole conversation.
    /// </summary>
    public static async Task<List<ChatMessage>> RunAsync(IChatClient chat, TextReader input, TextWriter output,
        ChatOptions? options = null, string? systemPrompt = null, CancellationToken cancellationToken = default)
    {
        // The model keeps no state between calls: each call sends the conversation so far.
        List<ChatMessage> history = [];
        if (systemPrompt is not null) history.Add(new ChatMessage(ChatRole.System, systemPrompt));

        while (true)
        {
            await output.WriteAsync("> ");
            await output.FlushAsync(cancellationToken);
            string? line = await input.ReadLineAsync(cancellationToken);
            if (string.IsNullOrWhiteSpace(line)) break;
            history.Add(new ChatMessage(ChatRole.User, line));

            // Print each piece as it is generated, and keep the pieces to add the reply to the history afterwards.
            List<ChatResponseUpdate> updates = [];
            try
            {
                await foreach (var update in chat.GetStreamingResponseAsync(history, options, cancellationToken))
                {
                    await output.WriteAsync(update.Text);
                    await output.FlushAsync(cancellationToken);
                    updates.Add(update);
                }
            }
            catch (ArgumentException e) when (updates.Count == 0)
            {
                // Kaiyuan refuses a request it cannot serve before generating anything, most often a conversation that
                // has outgrown the model's context window. Forget the turns so far and let the user go on.
                await output.WriteLineAsync($"[{e.Message}: starting a new conversation]");
                history.RemoveAll(m => m.Role != ChatRole.System);
                continue;
            }
            await output.WriteLineAsync();
            // MEAI's helper joins the streamed pieces into the assistant's message.
            history.AddMessages(updates);
        }
        return history;
    }
}
