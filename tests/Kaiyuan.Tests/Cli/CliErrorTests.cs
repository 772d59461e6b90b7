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
