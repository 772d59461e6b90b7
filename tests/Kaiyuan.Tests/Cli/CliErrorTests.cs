using System.Net;
using System.Net.Sockets;

namespace Kaiyuan.Tests.Cli;

/// <summary>Mistakes on the command line: one clear line naming the flag or file, and a non-zero exit.</summary>
public sealed class CliErrorTests
{
    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static void OneLineError(KaiyuanProcess.Result r, string mentions)
    {
        Assert.NotEqual(0, r.ExitCode);
        Assert.True(Lines(r.Stderr).Length == 1, r.Stderr);
        Assert.Contains(mentions, r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ServeErrorsAreOneLineAndABadHostNeverListensEverywhere()
    {
        string model = Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf");
        using (var taken = new TcpListener(IPAddress.Loopback, 0))
        {
            taken.Start();
            int port = ((IPEndPoint)taken.LocalEndpoint).Port;
            OneLineError(KaiyuanProcess.Run("serve", "-m", model, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)), port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var damaged = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(damaged, File.ReadAllBytes(model)[..5000]);
            // The "serving … (loading…)" line comes first; the load error itself is said once.
            var r = KaiyuanProcess.Run("serve", "-m", damaged, "--port", "0");
            Assert.NotEqual(0, r.ExitCode);
            Assert.Single(Lines(r.Stderr), l => l.Contains("truncated", StringComparison.Ordinal));
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        }
        finally { File.Delete(damaged); }

        OneLineError(KaiyuanProcess.Run("serve", "-m", model, "--port", "0", "--host", "999.1.1.1"), "999.1.1.1");
        OneLineError(KaiyuanProcess.Run("serve", "-m", model, "--port", "0", "--host", "typo.invalid"), "typo.invalid");
    }

    [Fact]
    public void AnUnknownCommandIsNamedAndTheCommandsListed()
    {
        var unknown = KaiyuanProcess.Run("frobnicate");
        OneLineError(unknown, "unknown command 'frobnicate'");
        Assert.Contains("generate", unknown.Stderr, StringComparison.Ordinal);
        Assert.Contains("serve", unknown.Stderr, StringComparison.Ordinal);

        var bare = KaiyuanProcess.Run();
        Assert.DoesNotContain("Required command", bare.Stdout + bare.Stderr, StringComparison.Ordinal);
        Assert.Contains("serve", bare.Stdout, StringComparison.Ordinal);
        Assert.Contains("generate", bare.Stdout, StringComparison.Ordinal);
    }
}

/// <summary>Raw .NET messages and silently accepted nonsense: each mistake is one line naming the flag or file.</summary>
public sealed class CliInputTests
{
    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static void OneLineError(KaiyuanProcess.Result r, params string[] mentions)
    {
        Assert.True(r.ExitCode != 0, $"exit 0: {r.Stdout}");
        Assert.True(Lines(r.Stderr).Length == 1, r.Stderr);
        Assert.StartsWith("kaiyuan", r.Stderr, StringComparison.Ordinal);
        foreach (string m in mentions) Assert.Contains(m, r.Stderr, StringComparison.Ordinal);
        foreach (string leak in new[] { "   at ", "(Parameter", "LineNumber", "Could not find a part of the path" })
            Assert.DoesNotContain(leak, r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void DotNetMessagesDoNotLeak()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-q4_0.gguf");
        string dir = Directory.CreateTempSubdirectory("kaiyuan-cli").FullName;
        try
        {
            string bad = Path.Combine(dir, "messages.json");
            File.WriteAllText(bad, "{bad");
            string template = Path.Combine(dir, "template.jinja");
            File.WriteAllText(template, "{{ messages[0].content }}");
            OneLineError(KaiyuanProcess.Run("template", "--template", template, "--messages", bad), "--messages", bad, "line 1");

            string missing = Path.Combine(dir, "no", "such", "out.gguf");
            OneLineError(KaiyuanProcess.Run("quantize", model, missing, "Q8_0"), Path.Combine(dir, "no", "such"));

            OneLineError(KaiyuanProcess.Run("generate", "-m", model, "--prompt-ids", "1,99999", "-n", "1", "-t", "1"), "--prompt-ids", "99999");
            OneLineError(KaiyuanProcess.Run("detokenize", "-m", model, "--ids", "1,99999999"), "--ids", "99999999");

            var huge = KaiyuanProcess.Run("generate", "-m", model, "-p", "hi", "-c", "100000000", "-n", "1", "-t", "1");
            OneLineError(huge, "--ctx-size");
            Assert.DoesNotContain("--parallel", huge.Stderr, StringComparison.Ordinal);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("--n-predict", "-n", "-5")]
    [InlineData("--ctx-size", "--ctx-size", "-3")]
    [InlineData("--top-p", "--top-p", "7")]
    [InlineData("--temp", "--temp", "-1")]
    [InlineData("--threads", "-t", "1000000")]
    [InlineData("--min-p", "--min-p", "2")]
    [InlineData("--top-k", "--top-k", "-1")]
    [InlineData("--repeat-penalty", "--repeat-penalty", "0")]
    public void OutOfRangeSettingsAreRefused(string flag, string given, string value)
    {
        string model = Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf");
        string[] count = given == "-n" ? [] : ["-n", "1"];
        OneLineError(KaiyuanProcess.Run(["generate", "-m", model, "-p", "hi", .. count, given, value]), flag);
    }

    [Fact]
    public void TokenizeHasNoDashTAndEveryFlagHasOneHelpText()
    {
        string model = Fixtures.ModelPath("qwen2", "qwen2-q4_0.gguf");
        var dashT = KaiyuanProcess.Run("tokenize", "-m", model, "-t", "hello");
        Assert.NotEqual(0, dashT.ExitCode);
        Assert.Equal("", dashT.Stdout);
        Assert.Equal(0, KaiyuanProcess.Run("tokenize", "-m", model, "--text", "hello").ExitCode);

        var help = KaiyuanProcess.Run("generate", "--help").Stdout;
        string Line(string flag) => Lines(help).Single(l => l.Contains(flag + " <", StringComparison.Ordinal));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(Line("--threads"), "default"));
        foreach (string flag in new[] { "--top-k", "--top-p", "--min-p", "--repeat-penalty" })
            Assert.Matches(@">\s+\S+.*\[default", Line(flag));
    }

    [Fact]
    public void RunTakesThePromptAsAnArgumentAsOllamaDoes()
    {
        string model = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        var asArgument = KaiyuanProcess.Run("run", model, "Once upon a time", "-n", "12", "--temp", "0", "-t", "1");
        var asOption = KaiyuanProcess.Run("run", model, "-p", "Once upon a time", "-n", "12", "--temp", "0", "-t", "1");
        Assert.Equal(0, asArgument.ExitCode);
        Assert.Equal(asOption.Stdout, asArgument.Stdout);
        Assert.Contains("there was a little girl", asArgument.Stdout, StringComparison.Ordinal);
        var both = KaiyuanProcess.Run("run", model, "Once", "-p", "upon");
        Assert.NotEqual(0, both.ExitCode);
        Assert.Contains("give the prompt once", both.Stderr, StringComparison.Ordinal);
    }
}
