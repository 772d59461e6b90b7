using System.Text.Json.Nodes;
using Kaiyuan.Templates;

namespace Kaiyuan.Tests.Templates;

public class ChatFormatterTests
{
    private static JsonNode J(string json) => JsonNode.Parse(json)!;

    [Fact]
    public void ToolsAreUndefinedWhenNull()
    {
        var f = new ChatFormatter("{{ tools is defined }}|{{ tools is none }}");
        Assert.Equal("False|False", f.Render(J("[]")));
        Assert.Equal("True|False", f.Render(J("[]"), J("[]")));
    }

    [Fact]
    public void StandardVariablesAndExtras()
    {
        var f = new ChatFormatter("{{ bos_token }}{% for m in messages %}{{ m.role }}{% endfor %}{{ add_generation_prompt }}{{ enable_thinking }}{{ eos_token }}");
        string s = f.Render(J("""[{"role": "user", "content": "x"}]"""), null, addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>",
            extra: new Dictionary<string, JsonNode?> { ["enable_thinking"] = JsonValue.Create(false) });
        Assert.Equal("<s>userFalseFalse</s>", s);
    }

    [Fact]
    public void StringArgumentsAreParsedForTheTemplate()
    {
        var f = new ChatFormatter("{% for tc in messages[0].tool_calls %}{{ tc.function.name }}:{{ tc.function.arguments.city }}:{{ tc.function.arguments | tojson }}{% endfor %}");
        string s = f.Render(J("""[{"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "w", "arguments": "{\"city\": \"Paris\"}"}}]}]"""));
        Assert.Equal("w:Paris:{\"city\": \"Paris\"}", s);
        s = f.Render(J("""[{"role": "assistant", "tool_calls": [{"function": {"name": "w", "arguments": {"city": "Rome"}}}]}]"""));
        Assert.Equal("w:Rome:{\"city\": \"Rome\"}", s);
    }

    [Fact]
    public void ToolResultsAndReasoningReachTheTemplate()
    {
        var f = new ChatFormatter("{% for m in messages %}{{ m.role }}:{{ m.tool_call_id }}:{{ m.reasoning_content }}:{{ m.content }};{% endfor %}");
        string s = f.Render(J("""[{"role": "assistant", "reasoning_content": "r", "content": "c"}, {"role": "tool", "tool_call_id": "call_1", "content": "42"}]"""));
        Assert.Equal("assistant::r:c;tool:call_1::42;", s);
    }

    [Fact]
    public void ContentPartsAreFlattenedForTemplatesThatExpectStrings()
    {
        var parts = """[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}, {"type": "text", "text": "b"}]}]""";
        var plain = new ChatFormatter("{{ messages[0].content }}");
        Assert.False(plain.SupportsContentParts);
        Assert.Equal("a\nb", plain.Render(J(parts)));

        var typed = new ChatFormatter("{% for p in messages[0].content %}{{ p.text }}{% endfor %}");
        Assert.True(typed.SupportsContentParts);
        Assert.Equal("ab", typed.Render(J(parts)));
    }

    [Fact]
    public void RaiseExceptionCarriesTheMessage()
    {
        var f = new ChatFormatter("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}");
        var ex = Assert.Throws<TemplateRaisedException>(() => f.Render(J("""[{"role": "system", "content": "s"}]""")));
        Assert.Equal("System role not supported", ex.TemplateMessage);
    }
}
