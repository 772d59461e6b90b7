using System.Diagnostics;
using System.Text;

namespace Kaiyuan.Cli.Eval;

/// <summary>How a program ended in the sandbox.</summary>
internal enum SandboxOutcome { Passed, Failed, TimedOut }

/// <summary>The result of one program: how it ended, and the tail of what it printed (to audit a failure).</summary>
internal sealed record SandboxResult(SandboxOutcome Outcome, int? ExitCode, string Output);

/// <summary>
/// Runs untrusted Python (model-written code and its tests) so that it can neither harm the machine nor hang the run:
/// a separate process per program in a throwaway directory, no network (a new network namespace where the kernel
/// allows unprivileged ones), no standard input, a minimal environment, a wall-clock limit that kills the whole
/// process group, and limits set before the program starts that it cannot raise (memory, processes, file size, CPU);
/// the prelude also takes away the functions that delete files, kill processes or start programs.
/// </summary>
internal sealed class CodeSandbox
{
    private static readonly Lazy<bool> CanUnshare = new(() => Probe("unshare", "-rn", "true"));

    private readonly Lazy<string> _interpreter;

    public CodeSandbox(TimeSpan? timeout = null, string python = "python3")
    {
        Timeout = timeout ?? TimeSpan.FromSeconds(3);
        Python = python;
        _interpreter = new Lazy<string>(() => Resolve(python));
    }

    public TimeSpan Timeout { get; }

    public string Python { get; }

    /// <summary>
    /// The interpreter's own executable: a version manager's shim (pyenv) costs most of a second per start, the
    /// interpreter a tenth of that, and 164 problems × n samples start it once each.
    /// </summary>
    private static string Resolve(string python)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(python, ["-c", "import sys; print(sys.executable)"]) { RedirectStandardOutput = true, UseShellExecute = false })
                ?? throw new InvalidOperationException($"cannot start {python}");
            string path = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 && File.Exists(path) ? path : python;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{python} is needed to run code tasks and could not be started: {e.Message}", e);
        }
    }

    /// <summary>True when programs run without network (unprivileged user and network namespaces).</summary>
    public static bool IsolatesNetwork => CanUnshare.Value;

    /// <summary>The prelude run before the program: hard limits, then the dangerous functions removed.</summary>
    internal const string Prelude = """
        import resource as _r, os as _os, sys as _sys
        for _limit, _value in ((_r.RLIMIT_AS, 1 << 30), (_r.RLIMIT_DATA, 1 << 30), (_r.RLIMIT_FSIZE, 1 << 24), (_r.RLIMIT_NPROC, 64), (_r.RLIMIT_CPU, 10)):
            try:
                _r.setrlimit(_limit, (_value, _value))
            except (ValueError, OSError):
                pass
        import builtins as _b, shutil as _sh, subprocess as _sp
        for _name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "unlink", "fchdir", "setuid", "fork", "forkpty",
                      "rename", "renames", "truncate", "replace", "fchmod", "fchown", "chmod", "chown", "chroot", "lchown", "execv", "execve", "spawnv", "popen"):
            if hasattr(_os, _name):
                setattr(_os, _name, None)
        _sh.rmtree = _sh.move = _sh.chown = None
        _sp.Popen = None
        _b.exit = _b.quit = None
        del _r, _os, _b, _sh, _sp, _limit, _value, _name

        """;

    /// <summary>Runs <paramref name="program"/> and waits for it (at most the timeout, then it is killed).</summary>
    public async Task<SandboxResult> RunAsync(string program, CancellationToken cancel = default)
    {
        string dir = Directory.CreateTempSubdirectory("kaiyuan-sandbox-").FullName;
        try
        {
            string file = Path.Combine(dir, "program.py");
            await File.WriteAllTextAsync(file, Prelude + program, Encoding.UTF8, cancel);
            var start = new ProcessStartInfo
            {
                FileName = IsolatesNetwork ? "unshare" : "setsid",
                WorkingDirectory = dir,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (IsolatesNetwork) foreach (string a in new[] { "-rn", "setsid" }) start.ArgumentList.Add(a);
            // Isolated (no user site, no environment variables read), no site packages, no bytecode written.
            foreach (string a in new[] { _interpreter.Value, "-I", "-S", "-B", file }) start.ArgumentList.Add(a);
            start.Environment.Clear();
            start.Environment["PATH"] = "/usr/local/bin:/usr/bin:/bin";
            start.Environment["HOME"] = dir;
            start.Environment["TMPDIR"] = dir;
            start.Environment["PYTHONHASHSEED"] = "0";

            using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {start.FileName}");
            process.StandardInput.Close(); // input() gets end-of-file, never a hang
            var stdout = process.StandardOutput.ReadToEndAsync(cancel);
            var stderr = process.StandardError.ReadToEndAsync(cancel);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            limit.CancelAfter(Timeout);
            try
            {
                await process.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
                cancel.ThrowIfCancellationRequested();
                return new SandboxResult(SandboxOutcome.TimedOut, null, Tail(await stdout + await stderr));
            }
            string output = Tail(await stdout + await stderr);
            return new SandboxResult(process.ExitCode == 0 ? SandboxOutcome.Passed : SandboxOutcome.Failed, process.ExitCode, output);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    private static string Tail(string text) => text.Length <= 2000 ? text : text[^2000..];

    private static bool Probe(string file, params string[] args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false });
            if (p is null) return false;
            if (!p.WaitForExit(5000)) { p.Kill(true); return false; }
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
