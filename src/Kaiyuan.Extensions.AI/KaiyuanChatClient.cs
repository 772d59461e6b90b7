using System.Runtime.CompilerServices;
using System.Text.Json;
using Kaiyuan.Chat;
using Microsoft.Extensions.AI;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Kaiyuan.Extensions.AI;

/// <summary>
/// <see cref="IChatClient"/> over a model running in this process: the model's own chat template renders the
/// conversation and tools, tool calls and reasoning come back parsed, JSON-schema output is enforced by the grammar
/// engine, and concurrent callers share the continuous-batching scheduler. Cancelling a call frees its sequence at the
/// next step.
/// </summary>
public sealed class KaiyuanChatClient : IChatClient
{
    private readonly KaiyuanModel _model;
    private readonly bool _ownsModel;

    /// <summary>A client over a loaded model, which stays loaded when the client is disposed.</summary>
    public KaiyuanChatClient(KaiyuanModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        Metadata = new ChatClientMetadata("kaiyuan", null, model.ModelId);
    }

    /// <summary>Loads a model that this client owns: disposing the client unloads it.</summary>
    public KaiyuanChatClient(KaiyuanModelOptions options) : this(KaiyuanModel.Load(options)) => _ownsModel = true;

    /// <summary>Loads a model (a GGUF path or a store reference) with default options; disposing the client unloads it.</summary>
    public KaiyuanChatClient(string model) : this(new KaiyuanModelOptions { Model = model }) { }

    /// <summary>The provider ("kaiyuan") and the model's id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>The model this client runs.</summary>
    public KaiyuanModel Model => _model;

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var generation = await StartAsync(messages, options, cancellationToken).ConfigureAwait(false);
        ChatAnswer answer;
        try
        {
            answer = await generation.CollectAsync().ConfigureAwait(false);
        }
        catch (RequestException e)
        {
            throw ChatRequestMapper.Translate(e);
        }
        var contents = new List<AIContent>();
        if (answer.Reasoning.Length > 0) contents.Add(new TextReasoningContent(answer.Reasoning));
        if (answer.Content.Length > 0 || answer.Calls.Count == 0) contents.Add(new TextContent(answer.Content));
        contents.AddRange(answer.Calls.Select(Call));
        string id = NewId();
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, contents) { MessageId = id })
        {
            ResponseId = id,
            ModelId = _model.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReason(generation.Outcome, answer.Calls.Count),
            Usage = Usage(generation.Outcome),
        };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var generation = await StartAsync(messages, options, cancellationToken).ConfigureAwait(false);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = id,
            MessageId = id,
            ModelId = _model.ModelId,
            CreatedAt = created,
        };
        // Calls go out whole at the end, as MEAI's function invocation expects complete arguments.
        var calls = new ToolCallAccumulator();
        await using (var pieces = generation.ReadAsync().GetAsyncEnumerator(cancellationToken))
        {
            while (true)
            {
                try
                {
                    if (!await pieces.MoveNextAsync().ConfigureAwait(false)) break;
                }
                catch (RequestException e)
                {
                    throw ChatRequestMapper.Translate(e);
                }
                var contents = new List<AIContent>();
                foreach (var delta in pieces.Current.Deltas)
                {
                    switch (delta.Kind)
                    {
                        case ChatDeltaKind.Content: contents.Add(new TextContent(delta.Text)); break;
                        case ChatDeltaKind.Reasoning: contents.Add(new TextReasoningContent(delta.Text)); break;
                        default: calls.Add(delta); break;
                    }
                }
                if (contents.Count > 0) yield return Update(contents);
            }
        }
        var last = new List<AIContent>(calls.Calls.Select(Call)) { new UsageContent(Usage(generation.Outcome)) };
        var final = Update(last);
        final.FinishReason = FinishReason(generation.Outcome, calls.Count);
        yield return final;
    }

    private async Task<ChatGeneration> StartAsync(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancel)
    {
        _model.ThrowIfDisposed();
        var input = ChatRequestMapper.Map(messages, options);
        try
        {
            return await ChatGeneration.StartAsync(null, _model.GrammarTimeout, _model.Runtime, input, cancel).ConfigureAwait(false);
        }
        catch (RequestException e)
        {
            throw ChatRequestMapper.Translate(e);
        }
    }

    private static FunctionCallContent Call(ToolCall call) =>
        FunctionCallContent.CreateFromParsedArguments(call.Arguments, call.Id, call.Name,
            json => JsonSerializer.Deserialize<Dictionary<string, object?>>(json, AIJsonUtilities.DefaultOptions));

    private static ChatFinishReason FinishReason(GenerationOutcome outcome, int calls) =>
        ChatGeneration.EndedWithCalls(outcome, calls) ? ChatFinishReason.ToolCalls
        : outcome.FinishReason == "length" ? ChatFinishReason.Length
        : ChatFinishReason.Stop;

    private static UsageDetails Usage(GenerationOutcome outcome) => new()
    {
        InputTokenCount = outcome.PromptTokens,
        OutputTokenCount = outcome.CompletionTokens,
        TotalTokenCount = outcome.PromptTokens + outcome.CompletionTokens,
        CachedInputTokenCount = outcome.CachedTokens,
    };

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType == typeof(KaiyuanModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Unloads the model when this client loaded it.</summary>
    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
    }
}
