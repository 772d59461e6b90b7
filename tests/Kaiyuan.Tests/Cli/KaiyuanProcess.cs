using System.Diagnostics;

namespace Kaiyuan.Tests.Cli;

/// <summary>Runs the real <c>kaiyuan</c> executable (built beside the tests) as a separate process.</summary>
public static class KaiyuanProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result RunWithInput(string stdin, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "kaiyuan.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"kaiyuan {string.Join(' ', args)} did not finish in 120 s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Result Run(params string[] args) => RunWithInput("", args);
}
