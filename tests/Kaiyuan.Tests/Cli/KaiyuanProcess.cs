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

    /// <summary>
    /// Starts <c>kaiyuan serve</c> (the arguments after "serve"), waits for its "serving" line, and returns the process,
    /// the address it names and that line; its output is drained from then on, so it never blocks on a full pipe.
    /// </summary>
    public static async Task<(Process Process, Uri Address, string Banner)> StartServeAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "kaiyuan.dll"));
        psi.ArgumentList.Add("serve");
        foreach (var a in args) psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        _ = process.StandardOutput.ReadToEndAsync();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        while (await process.StandardError.ReadLineAsync(timeout.Token) is { } line)
        {
            var url = System.Text.RegularExpressions.Regex.Match(line, @"http://[^/\s]+/");
            if (!line.StartsWith("kaiyuan: serving", StringComparison.Ordinal) || !url.Success) continue;
            _ = process.StandardError.ReadToEndAsync();
            return (process, new Uri(url.Value), line);
        }
        process.Kill(entireProcessTree: true);
        throw new InvalidOperationException("kaiyuan serve ended before it said where it listens");
    }
}
