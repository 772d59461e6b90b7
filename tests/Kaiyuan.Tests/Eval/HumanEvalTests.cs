using System.Diagnostics;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Tests.Eval;

/// <summary>HumanEval's execution-based scoring against the reference harness's facts, and the sandbox against hostile code.</summary>
public sealed class HumanEvalTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void RequirePython()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("python3", "--version") { RedirectStandardOutput = true, RedirectStandardError = true });
            p!.WaitForExit(10_000);
            if (p.ExitCode == 0) return;
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
        Assert.Skip("python3 is not installed: HumanEval's tests run in Python");
    }

    [Fact]
    public async Task EveryCanonicalSolutionPasses()
    {
        RequirePython();
        var problems = HumanEvalTask.LoadProblems(Fixtures.Require("eval", "humaneval", "HumanEval.jsonl.gz"));
        Assert.Equal(164, problems.Count);
        var samples = problems.Values.Select(p => (p.TaskId, p.CanonicalSolution)).ToList();
        var (passAtK, results) = await HumanEvalTask.ScoreAsync(problems, samples, [1], new CodeSandbox(TimeSpan.FromSeconds(20)), 2, Ct);
        var failed = results.Where(r => r.Result.Outcome != SandboxOutcome.Passed).Select(r => $"{r.TaskId}: {r.Result.Outcome} {r.Result.Output}").ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        Assert.Equal(1.0, passAtK[1]);
    }

    [Fact]
    public async Task TheExampleSamplesScoreAsTheReferenceHarnessAndTheHostileOnesAreContained()
    {
        RequirePython();
        var problems = HumanEvalTask.LoadProblems(Fixtures.Require("eval", "humaneval", "example_problem.jsonl"));
        var samples = HumanEvalTask.LoadSamples(Fixtures.Require("eval", "humaneval", "example_samples.jsonl"));
        var clock = Stopwatch.StartNew();
        var (passAtK, results) = await HumanEvalTask.ScoreAsync(problems, samples, [1, 10], new CodeSandbox(TimeSpan.FromSeconds(3)), 3, Ct);
        Assert.Equal(0.5, passAtK[1], 12);
        Assert.False(passAtK.ContainsKey(10)); // six samples: no pass@10, as the reference harness
        Assert.Equal(
            [SandboxOutcome.Failed, SandboxOutcome.TimedOut, SandboxOutcome.Failed, SandboxOutcome.Passed, SandboxOutcome.Passed, SandboxOutcome.Passed],
            results.Select(r => r.Result.Outcome));
        // The sleeping sample was stopped at the limit, not waited for (10 s).
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(9), $"{clock.Elapsed}");
    }

    [Fact]
    public async Task HostileProgramsCannotDeleteFilesStartProgramsReachTheNetworkOrRunOn()
    {
        RequirePython();
        var sandbox = new CodeSandbox(TimeSpan.FromSeconds(3));
        string victim = Path.Combine(Path.GetTempPath(), $"kaiyuan-victim-{Guid.NewGuid():N}");
        File.WriteAllText(victim, "keep me");
        try
        {
            string escaped = victim.Replace("\\", "\\\\");
            Assert.Equal(SandboxOutcome.Failed, (await sandbox.RunAsync($"import os\nos.remove('{escaped}')\n", Ct)).Outcome);
            Assert.Equal(SandboxOutcome.Failed, (await sandbox.RunAsync($"import shutil\nshutil.rmtree('{Path.GetDirectoryName(escaped)}')\n", Ct)).Outcome);
            Assert.Equal(SandboxOutcome.Failed, (await sandbox.RunAsync("import subprocess\nsubprocess.run(['true'])\n", Ct)).Outcome);
            Assert.Equal(SandboxOutcome.Failed, (await sandbox.RunAsync("import os\nos.fork()\n", Ct)).Outcome);
            Assert.True(File.Exists(victim));
            Assert.Equal(SandboxOutcome.TimedOut, (await sandbox.RunAsync("while True:\n    pass\n", Ct)).Outcome);
            Assert.Equal(SandboxOutcome.Failed, (await sandbox.RunAsync("x = bytearray(4 << 30)\n", Ct)).Outcome);
            if (CodeSandbox.IsolatesNetwork)
            {
                var net = await sandbox.RunAsync("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n", Ct);
                Assert.Equal(SandboxOutcome.Failed, net.Outcome);
                Assert.Contains("unreachable", net.Output, StringComparison.OrdinalIgnoreCase);
            }
            Assert.Equal(SandboxOutcome.Passed, (await sandbox.RunAsync("print(sum(range(10)))\n", Ct)).Outcome);
        }
        finally
        {
            File.Delete(victim);
        }
    }
}
