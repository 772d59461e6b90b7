using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// Turns the parsed answer (content, reasoning and tool-call deltas) into the Responses API's output items, in the order
/// the model wrote them: a reasoning item, a message, function calls. Each run of one kind is one item; each call is one.
/// With an event sink it also says so as it goes, with the typed streaming events; without one it only builds the items,
/// so a stream and a whole response are built by the same code and cannot differ.
/// </summary>
internal sealed class ResponseOutput(Func<string, JsonObject, Task>? emit = null)
{
    private enum Kind { None, Reasoning, Message, Call }

    private readonly JsonArray _items = [];
    private readonly StringBuilder _text = new();
    private readonly StringBuilder _reasoning = new();
    private readonly StringBuilder _outputText = new();
    private Kind _open;
    private JsonObject? _item;
    private string _itemId = "";
    private int _callIndex = -1;
    private string _pendingSpace = "";
    private bool _hasMessage;

    /// <summary>The finished output items.</summary>
    public JsonArray Items => _items;

    /// <summary>The messages' text, joined (the SDKs' output_text).</summary>
    public string OutputText => _outputText.ToString();

    /// <summary>All reasoning text.</summary>
    public string Reasoning => _reasoning.ToString();

    public int CallCount { get; private set; }

    public static string NewId(string prefix) => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    public async Task AddAsync(IEnumerable<ChatDelta> deltas)
    {
        foreach (var d in deltas) await AddAsync(d);
    }

    public async Task AddAsync(ChatDelta d)
    {
        switch (d.Kind)
        {
            case ChatDeltaKind.Content:
                string text = d.Text;
                if (_open != Kind.Message)
                {
                    // Whitespace between items (after a reasoning block, before a call) is not an answer of its own.
                    if (string.IsNullOrWhiteSpace(text))
                    {
                        _pendingSpace += text;
                        return;
                    }
                    text = _pendingSpace + text;
                    await OpenAsync(Kind.Message, null);
                }
                await DeltaAsync(text);
                break;
            case ChatDeltaKind.Reasoning:
                if (_open != Kind.Reasoning) await OpenAsync(Kind.Reasoning, null);
                _reasoning.Append(d.Text);
                await DeltaAsync(d.Text);
                break;
            default:
                if (_open != Kind.Call || d.Index != _callIndex) await OpenAsync(Kind.Call, d);
                await DeltaAsync(d.Text);
                break;
        }
    }

    /// <summary>
    /// Closes the last item: "incomplete" when the answer was cut off. An answer with neither a message nor a call still
    /// gets a message (perhaps empty), as OpenAI's always has one.
    /// </summary>
    public async Task FinishAsync(bool incomplete)
    {
        string status = incomplete ? "incomplete" : "completed";
        if (!_hasMessage && CallCount == 0 && _open != Kind.Message)
        {
            await CloseAsync("completed");
            string space = _pendingSpace;
            await OpenAsync(Kind.Message, null);
            await DeltaAsync(space);
        }
        await CloseAsync(status);
    }

    private async Task OpenAsync(Kind kind, ChatDelta? call)
    {
        await CloseAsync("completed");
        _pendingSpace = "";
        _open = kind;
        _text.Clear();
        int index = _items.Count;
        switch (kind)
        {
            case Kind.Message:
                _hasMessage = true;
                _itemId = NewId("msg_");
                _item = new JsonObject { ["id"] = _itemId, ["type"] = "message", ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray() };
                await Emit("response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = _item.DeepClone() });
                await Emit("response.content_part.added", Part(index, new JsonObject { ["part"] = TextPart("") }));
                break;
            case Kind.Reasoning:
                _itemId = NewId("rs_");
                _item = new JsonObject { ["id"] = _itemId, ["type"] = "reasoning", ["summary"] = new JsonArray() };
                await Emit("response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = _item.DeepClone() });
                await Emit("response.reasoning_summary_part.added", Summary(index, new JsonObject { ["part"] = SummaryPart("") }));
                break;
            default:
                CallCount++;
                _callIndex = call!.Index;
                _itemId = NewId("fc_");
                _item = new JsonObject
                {
                    ["id"] = _itemId,
                    ["type"] = "function_call",
                    ["status"] = "in_progress",
                    ["call_id"] = call.Id ?? NewId("call_"),
                    ["name"] = call.Name ?? "",
                    ["arguments"] = "",
                };
                await Emit("response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = _item.DeepClone() });
                break;
        }
    }

    private async Task DeltaAsync(string delta)
    {
        if (delta.Length == 0) return;
        _text.Append(delta);
        int index = _items.Count;
        switch (_open)
        {
            case Kind.Message:
                _outputText.Append(delta);
                await Emit("response.output_text.delta", Part(index, new JsonObject { ["delta"] = delta, ["logprobs"] = new JsonArray() }));
                break;
            case Kind.Reasoning:
                await Emit("response.reasoning_summary_text.delta", Summary(index, new JsonObject { ["delta"] = delta }));
                break;
            case Kind.Call:
                await Emit("response.function_call_arguments.delta", new JsonObject { ["item_id"] = _itemId, ["output_index"] = index, ["delta"] = delta });
                break;
        }
    }

    private async Task CloseAsync(string status)
    {
        if (_open == Kind.None) return;
        var item = _item!;
        int index = _items.Count;
        string text = _text.ToString();
        switch (_open)
        {
            case Kind.Message:
                item["status"] = status;
                item["content"] = new JsonArray(TextPart(text));
                await Emit("response.output_text.done", Part(index, new JsonObject { ["text"] = text, ["logprobs"] = new JsonArray() }));
                await Emit("response.content_part.done", Part(index, new JsonObject { ["part"] = TextPart(text) }));
                break;
            case Kind.Reasoning:
                item["summary"] = new JsonArray(SummaryPart(text));
                await Emit("response.reasoning_summary_text.done", Summary(index, new JsonObject { ["text"] = text }));
                await Emit("response.reasoning_summary_part.done", Summary(index, new JsonObject { ["part"] = SummaryPart(text) }));
                break;
            case Kind.Call:
                // A call without arguments takes none; its deltas still add up to what the item says.
                if (text.Length == 0) await DeltaAsync(text = "{}");
                item["status"] = status;
                item["arguments"] = text;
                await Emit("response.function_call_arguments.done", new JsonObject
                {
                    ["item_id"] = _itemId,
                    ["output_index"] = index,
                    ["name"] = item["name"]?.DeepClone(),
                    ["arguments"] = text,
                });
                break;
        }
        _items.Add(item);
        _open = Kind.None;
        _item = null;
        await Emit("response.output_item.done", new JsonObject { ["output_index"] = index, ["item"] = item.DeepClone() });
    }

    private JsonObject Part(int index, JsonObject fields)
    {
        var e = new JsonObject { ["item_id"] = _itemId, ["output_index"] = index, ["content_index"] = 0 };
        Move(fields, e);
        return e;
    }

    private JsonObject Summary(int index, JsonObject fields)
    {
        var e = new JsonObject { ["item_id"] = _itemId, ["output_index"] = index, ["summary_index"] = 0 };
        Move(fields, e);
        return e;
    }

    /// <summary>Moves <paramref name="from"/>'s properties, in order, to the end of <paramref name="to"/>.</summary>
    public static void Move(JsonObject from, JsonObject to)
    {
        foreach (string name in from.Select(p => p.Key).ToList())
        {
            var value = from[name];
            from.Remove(name);
            to[name] = value;
        }
    }

    /// <summary>A message's content part: its text, no annotations, no logprobs.</summary>
    private static JsonObject TextPart(string text) =>
        new() { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray() };

    private static JsonObject SummaryPart(string text) => new() { ["type"] = "summary_text", ["text"] = text };

    private Task Emit(string type, JsonObject fields) => emit is null ? Task.CompletedTask : emit(type, fields);
}
