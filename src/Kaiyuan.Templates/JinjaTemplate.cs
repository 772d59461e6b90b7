using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Templates;

/// <summary>
/// A parsed Jinja2 template. Parse once, render many times, from any number of threads.
/// Rendering is sandboxed: templates only see JSON-like values and the bounded budgets of <see cref="TemplateOptions"/>.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Stmt> _body;

    /// <summary>Parses <paramref name="source"/> with <paramref name="options"/>, or <see cref="TemplateOptions.Default"/> when null.</summary>
    /// <exception cref="TemplateException">A syntax error, or nesting deeper than the parser allows.</exception>
    public JinjaTemplate(string source, TemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        Options = options ?? TemplateOptions.Default;
        try
        {
            _body = Parser.Parse(source, Options);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException("template nesting too deep");
        }
    }

    /// <summary>The template's source text.</summary>
    public string Source { get; }
    /// <summary>The options the template was parsed with and renders under.</summary>
    public TemplateOptions Options { get; }

    /// <summary>Renders with variables given as JSON nodes; a null node is Python None.</summary>
    public string Render(IEnumerable<KeyValuePair<string, JsonNode?>> variables)
    {
        var root = new Frame(null);
        foreach (var (k, v) in variables) root.Vars[k] = Value.FromJson(v);
        return RenderFrame(root);
    }

    /// <summary>Renders with the properties of a JSON object as variables.</summary>
    public string Render(JsonObject variables) => Render((IEnumerable<KeyValuePair<string, JsonNode?>>)variables);

    /// <summary>Renders with the properties of a JSON element (an object) as variables.</summary>
    /// <exception cref="TemplateException">The element is not an object, or holds a string that is not valid Unicode
    /// (invalid UTF-8, or an escaped lone surrogate, which the JSON reader accepts but cannot turn into text).</exception>
    public string Render(JsonElement variables)
    {
        if (variables.ValueKind != JsonValueKind.Object) throw new TemplateException($"the variables must be a JSON object, not {variables.ValueKind}");
        var root = new Frame(null);
        try
        {
            foreach (var p in variables.EnumerateObject()) root.Vars[p.Name] = Value.FromJsonElement(p.Value);
        }
        catch (InvalidOperationException e)
        {
            throw new TemplateException($"the variables hold a string that is not valid Unicode: {e.Message}", inner: e);
        }
        return RenderFrame(root);
    }

    internal string Render(Dictionary<string, Value> variables)
    {
        var root = new Frame(null);
        foreach (var (k, v) in variables) root.Vars[k] = v;
        return RenderFrame(root);
    }

    private string RenderFrame(Frame root)
    {
        // A child frame keeps the caller's variables apart from what the template sets at top level.
        var ip = new Interpreter(Options, new Frame(root));
        try
        {
            Stmt.ExecAll(ip, _body);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException("template nesting too deep", ip.Line);
        }
        catch (TemplateException e) when (e.Line == 0 && e is not TemplateRaisedException)
        {
            // Helpers outside the interpreter throw without a location; add the statement's line.
            throw new TemplateException(e.RawMessage, ip.Line, 0, e);
        }
        return ip.Output;
    }
}
