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

    private const string ContextJson = """
        {"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Weather in Paris?"},
          {"role":"assistant","content":"","reasoning_content":"Use the tool.","tool_calls":[{"id":"c1","type":"function",
            "function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
          {"role":"tool","tool_call_id":"c1","content":"sunny"},{"role":"user","content":[{"type":"text","text":"Thanks"}]}],
         "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object",
           "properties":{"city":{"type":"string"}},"required":["city"]}}}],
         "add_generation_prompt":true,"bos_token":"<s>","eos_token":"</s>","enable_thinking":true}
        """;

    private static readonly JsonElement Context = JsonDocument.Parse(ContextJson).RootElement;
    private readonly List<JinjaTemplate> _templates = [];

    public override string Name => "jinja";
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Templates"];

    // An input is a template ('T' and its text, rendered with the conversation above) or a context ('C' and its JSON,
    // rendered by one of the real templates): what a user's template file or a request's messages and tools can hold.
    public override void Setup(string fixtures)
    {
        foreach (var file in TemplateFiles(fixtures)) _templates.Add(new JinjaTemplate(File.ReadAllText(file), Options));
    }

    private static IEnumerable<string> TemplateFiles(string fixtures) =>
        Directory.GetFiles(Path.Combine(fixtures, "chat-templates"), "*.jinja").Order(StringComparer.Ordinal);

    public override IReadOnlyList<byte[]> Seeds(string fixtures) =>
    [
        .. TemplateFiles(fixtures).Select(f => (byte[])[(byte)'T', .. File.ReadAllBytes(f)]),
        .. Enumerable.Range(0, 4).Select(i => (byte[])[(byte)'C', (byte)i, .. Encoding.UTF8.GetBytes(ContextJson)]),
    ];

    public override IReadOnlyList<byte[]> Dictionary => Words("{{", "}}", "{%", "%}", "{%-", "-%}", "{#", "#}", " for x in ", "endfor",
        " if ", "endif", " else ", "macro", "endmacro", "call", " set ", "namespace(", "loop.index", "loop.cycle(", "|tojson",
        "|safe", "|join", "|map(attribute=", "|selectattr(", "|items", "raise_exception(", "messages", "[0]", "[-1:]", "[::-1]",
        "range(", "999999999", " * ", " ** ", " ~ ", " recursive", "loop(", "|string", ".split(", ".strip(", "%s", "\"", "'",
        "(", ")", "[", "]", " is defined", " in ", " not ", "super()", "self.", "caller()");

    public override void Run(byte[] input)
    {
        if (input.Length < 2) return;
        try
        {
            if (input[0] != (byte)'C')
            {
                new JinjaTemplate(Encoding.UTF8.GetString(input, 1, input.Length - 1), Options).Render(Context);
                return;
            }
            JsonElement context;
            try
            {
                context = JsonDocument.Parse(input.AsMemory(2)).RootElement;
            }
            catch (JsonException)
            {
                return;
            }
            _templates[input[1] % _templates.Count].Render(context);
        }
        catch (TemplateException)
        {
        }
    }
}
