using System.Text;
using System.Text.Json;
using Kaiyuan.Templates;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>Template text (the real chat templates, mutated) rendered with a conversation that has tools and tool calls.</summary>
internal sealed class JinjaTarget : FuzzTarget
{
    private static readonly TemplateOptions Options = new()
    {
        MaxOutputLength = 1 << 20,
        MaxLoopIterations = 200_000,
        MaxRenderTime = TimeSpan.FromSeconds(2),
        Clock = () => new DateTime(2026, 12, 2),
    };

    private static readonly JsonElement Context = JsonDocument.Parse("""
        {"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Weather in Paris?"},
          {"role":"assistant","content":"","reasoning_content":"Use the tool.","tool_calls":[{"id":"c1","type":"function",
            "function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
          {"role":"tool","tool_call_id":"c1","content":"sunny"},{"role":"user","content":[{"type":"text","text":"Thanks"}]}],
         "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object",
           "properties":{"city":{"type":"string"}},"required":["city"]}}}],
         "add_generation_prompt":true,"bos_token":"<s>","eos_token":"</s>","enable_thinking":true}
        """).RootElement;

    public override string Name => "jinja";

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
        [.. Directory.GetFiles(Path.Combine(fixtures, "chat-templates"), "*.jinja").Order(StringComparer.Ordinal).Select(File.ReadAllBytes)];

    public override IReadOnlyList<byte[]> Dictionary => Words("{{", "}}", "{%", "%}", "{%-", "-%}", "{#", "#}", " for x in ", "endfor",
        " if ", "endif", " else ", "macro", "endmacro", "call", " set ", "namespace(", "loop.index", "loop.cycle(", "|tojson",
        "|safe", "|join", "|map(attribute=", "|selectattr(", "|items", "raise_exception(", "messages", "[0]", "[-1:]", "[::-1]",
        "range(", "999999999", " * ", " ** ", " ~ ", " recursive", "loop(", "|string", ".split(", ".strip(", "%s", "\"", "'",
        "(", ")", "[", "]", " is defined", " in ", " not ", "super()", "self.", "caller()");

    public override void Run(byte[] input)
    {
        try
        {
            new JinjaTemplate(Encoding.UTF8.GetString(input), Options).Render(Context);
        }
        catch (TemplateException)
        {
        }
    }
}
