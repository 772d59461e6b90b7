using System.CommandLine;
using Kaiyuan.Cli.Commands;

namespace Kaiyuan.Tests.Templates;

public class TemplateCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-template-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static (int Code, string Out, string Err) Invoke(params string[] args)
    {
        var root = new RootCommand { TemplateCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(["template", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void RendersTemplateFileExactly()
    {
        string t = Write("t.jinja", "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{{ flag }}{% if tools is defined %}T{% endif %}");
        string m = Write("m.json", """[{"role":"user","content":"héllo"}]""");
        var (code, output, err) = Invoke("--template", t, "--messages", m, "--var", "flag=true");
        Assert.Equal(0, code);
        Assert.Equal("<user>héllo<assistant>True", output);
        Assert.Equal("", err);

        (code, output, _) = Invoke("--template", t, "--messages", m, "--no-generation-prompt", "--tools", Write("tools.json", "[]"));
        Assert.Equal(0, code);
        Assert.Equal("<user>hélloT", output);
    }

    [Fact]
    public void BadArgumentsFailWithOneLine()
    {
        string m = Write("m.json", "[]");
        var (code, _, err) = Invoke("--messages", m);
        Assert.NotEqual(0, code);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = Invoke("--template", Write("bad.jinja", "{% if %}"), "--messages", m);
        Assert.NotEqual(0, code);
        Assert.Contains("line 1", err);

        (code, _, err) = Invoke("--template", Write("ok.jinja", "x"), "--messages", m, "--var", "novalue");
        Assert.NotEqual(0, code);
        Assert.Contains("key=JSON", err);

        (code, _, err) = Invoke("--template", Write("raise.jinja", "{{ raise_exception('nope') }}"), "--messages", m);
        Assert.NotEqual(0, code);
        Assert.Contains("nope", err);
    }

    [Fact]
    public void ModelOptionNeedsOneSourceAndFailsCleanly()
    {
        string m = Write("m.json", "[]");
        var (code, _, err) = Invoke("-m", Path.Combine(_dir, "missing.gguf"), "--messages", m);
        Assert.NotEqual(0, code);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = Invoke("-m", "x.gguf", "--template", Write("t.jinja", "x"), "--messages", m);
        Assert.NotEqual(0, code);
        Assert.Contains("exactly one", err);
    }

    [Fact]
    public void AcceptsAnOpenAIRequestBody()
    {
        string t = Write("t.jinja", "{{ messages | length }}{{ tools | length }}");
        string m = Write("req.json", """{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}""");
        var (code, output, _) = Invoke("--template", t, "--messages", m);
        Assert.Equal(0, code);
        Assert.Equal("11", output);
    }
}
