using System.Runtime.InteropServices;

namespace Kaiyuan.Kernels;

/// <summary>Puts the calling thread in the OS's lowest scheduling class, for work that must give way at once to latency-bound threads.</summary>
/// <remarks>
/// A long prompt's prefill beside decoding streams keeps its cores busy, and every streamed token then needs a few short
/// hand-offs (scheduler, HTTP writer, the client's reader) that waited up to a scheduler tick behind it (`bench prefix
/// --long 4096`: the streams' gaps came in 4 ms steps). A woken normal thread preempts an idle-class one at once. On
/// Linux <see cref="Thread.Priority"/> changes nothing, so the thread asks the kernel for SCHED_IDLE itself; an
/// unprivileged thread cannot leave that class again, so only threads that keep this role call it.
/// </remarks>
internal static partial class BackgroundThread
{
    private const int SchedIdle = 5;

    /// <summary>Lowers the calling thread; false where the OS refused (it then runs at normal priority).</summary>
    public static bool Lower()
    {
        if (OperatingSystem.IsLinux())
        {
            int priority = 0;
            return SchedSetScheduler(0, SchedIdle, ref priority) == 0;
        }
        Thread.CurrentThread.Priority = ThreadPriority.Lowest;
        return true;
    }

    /// <summary>Linux's scheduling policy of thread <paramref name="tid"/> of this process (5: SCHED_IDLE), read from /proc; null elsewhere.</summary>
    public static int? LinuxPolicy(int tid)
    {
        string path = $"/proc/self/task/{tid}/stat";
        if (!File.Exists(path)) return null;
        string stat = File.ReadAllText(path);
        // Fields after the parenthesised name, which may itself hold spaces; policy is field 41 (the 39th after it).
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[38], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The calling thread's OS id on Linux (what /proc/self/task lists); null elsewhere.</summary>
    public static int? CurrentLinuxThreadId() => OperatingSystem.IsLinux() ? GetTid() : null;

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    [LibraryImport("libc", EntryPoint = "sched_setscheduler")]
    private static partial int SchedSetScheduler(int pid, int policy, ref int priority);
}
