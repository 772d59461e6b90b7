using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Templates;

/// <summary>Everything a chat template is rendered with.</summary>
public sealed record ChatRenderRequest
{
    /// <summary>OpenAI-style messages (a JSON array of objects).</summary>
    public required JsonNode Messages { get; init; }

    /// <summary>OpenAI function-tool list; null leaves the template variable <c>tools</c> undefined.</summary>
    public JsonNode? Tools { get; init; }

    /// <summary>The template variable <c>add_generation_prompt</c>: end the prompt by opening the assistant's turn.</summary>
    public bool AddGenerationPrompt { get; init; } = true;
    /// <summary>The template variable <c>bos_token</c>: the text of the model's beginning-of-sequence token.</summary>
    public string BosToken { get; init; } = "";
    /// <summary>The template variable <c>eos_token</c>: the text of the model's end-of-sequence token.</summary>
    public string EosToken { get; init; } = "";

    /// <summary>
    /// Join text content parts ([{type:"text",text:...}]) into one string with "\n" (as llama.cpp does);
    /// null decides by the template: flatten unless it reads content parts itself.
    /// </summary>
    public bool? FlattenContentParts { get; init; }

    /// <summary>More variables, e.g. <c>enable_thinking</c>.</summary>
    public IReadOnlyDictionary<string, JsonNode?>? Extra { get; init; }
}

/// <summary>
/// Renders OpenAI-style chat requests into a prompt with a model's chat template, the way Hugging Face
/// transformers and llama.cpp call these templates.
/// </summary>
public sealed class ChatFormatter
{
    /// <summary>Parses <paramref name="templateSource"/> (a Jinja chat template) with <paramref name="options"/>, or the defaults when null.</summary>
    /// <exception cref="TemplateException">The template does not parse.</exception>
    public ChatFormatter(string templateSource, TemplateOptions? options = null)
        : this(new JinjaTemplate(templateSource, options))
    {
    }

    /// <summary>Uses an already parsed template.</summary>
    public ChatFormatter(JinjaTemplate template)
    {
        Template = template;
        string src = template.Source;
        SupportsContentParts = src.Contains("'text'", StringComparison.Ordinal) || src.Contains("\"text\"", StringComparison.Ordinal)
            || src.Contains(".text", StringComparison.Ordinal);
    }

    /// <summary>The chat template rendered.</summary>
    public JinjaTemplate Template { get; }

    /// <summary>Whether the template itself handles content given as a list of typed parts.</summary>
    public bool SupportsContentParts { get; }

    /// <summary>Renders the prompt for <paramref name="request"/>.</summary>
    /// <exception cref="TemplateException">The messages are not a JSON array, or the template failed or raised an error.</exception>
    public string Render(ChatRenderRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var vars = new Dictionary<string, Value>(StringComparer.Ordinal)
        {
            ["messages"] = NormalizeMessages(request.Messages, request.FlattenContentParts ?? !SupportsContentParts),
            ["add_generation_prompt"] = Value.From(request.AddGenerationPrompt),
            ["bos_token"] = new StringValue(request.BosToken),
            ["eos_token"] = new StringValue(request.EosToken),
        };
        if (request.Tools is not null)
            vars["tools"] = Value.FromJson(request.Tools);
        if (request.Extra is not null)
            foreach (var (k, v) in request.Extra)
                vars[k] = Value.FromJson(v);
        return Template.Render(vars);
    }

    /// <summary>Renders the prompt for the given fields of a <see cref="ChatRenderRequest"/>.</summary>
    /// <exception cref="TemplateException">The messages are not a JSON array, or the template failed or raised an error.</exception>
    public string Render(JsonNode messages, JsonNode? tools = null, bool addGenerationPrompt = true, string bosToken = "",
        string eosToken = "", IReadOnlyDictionary<string, JsonNode?>? extra = null) =>
        Render(new ChatRenderRequest
        {
            Messages = messages,
            Tools = tools,
            AddGenerationPrompt = addGenerationPrompt,
            BosToken = bosToken,
            EosToken = eosToken,
            Extra = extra,
        });

    /// <summary>
    /// Converts messages to template values; tool-call arguments given as a JSON string are parsed to an object,
    /// since templates iterate them (as llama.cpp and transformers do).
    /// </summary>
    private static Value NormalizeMessages(JsonNode messages, bool flattenParts)
    {
        var v = Value.FromJson(messages);
        if (v is not ListValue list) throw new TemplateException("messages must be a JSON array");
        foreach (var m in list.Items)
        {
            if (flattenParts && m is DictValue withParts && withParts.Get("content") is ListValue parts)
            {
                var texts = parts.Items.OfType<DictValue>()
                    .Where(p => p.Get("type") is StringValue { V: "text" } && p.Get("text") is StringValue)
                    .Select(p => ((StringValue)p.Get("text")!).V);
                withParts.Set("content", new StringValue(string.Join("\n", texts)));
            }
            if (m is not DictValue msg || msg.Get("tool_calls") is not ListValue calls) continue;
            foreach (var call in calls.Items)
            {
                if (call is not DictValue c || c.Get("function") is not DictValue fn) continue;
                if (fn.Get("arguments") is StringValue s && TryParseJson(s.V) is { } parsed)
                    fn.Set("arguments", parsed);
            }
        }
        return v;
    }

    private static Value? TryParseJson(string s)
    {
        try
        {
            using var doc = JsonDocument.Parse(s);
            return Value.FromJsonElement(doc.RootElement);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
