using Microsoft.Win32.SafeHandles;

namespace Kaiyuan.Kernels;

/// <summary>
/// How long threads have waited for a CPU while runnable, from Linux's per-thread scheduler statistics
/// (<c>/proc/thread-self/schedstat</c>: time on the CPU, time waiting on a run queue, slices, in nanoseconds). Each
/// thread opens its own file once; reading it later, from any thread, is one allocation-free <c>pread</c>.
/// Elsewhere (no such file) <see cref="Supported"/> is false and nothing is measured.
/// </summary>
internal sealed class RunQueueClock : IDisposable
{
    private const string SelfPath = "/proc/thread-self/schedstat";
    private readonly SafeFileHandle?[] _handles;
    [ThreadStatic] private static SafeFileHandle? t_callerHandle;

    public RunQueueClock(int slots) => _handles = new SafeFileHandle?[slots];

    public static bool Supported { get; } = OperatingSystem.IsLinux() && File.Exists(SelfPath);

    /// <summary>Opens the calling thread's statistics for <paramref name="slot"/>.</summary>
    public void Register(int slot) => _handles[slot] = Open();

    /// <summary>Nanoseconds <paramref name="slot"/>'s thread has spent runnable but waiting; -1 when unknown.</summary>
    public long WaitNanoseconds(int slot) => Read(_handles[slot]);

    /// <summary>The same for the calling thread (callers of a pool change; each keeps its own file open).</summary>
    public static long CallerWaitNanoseconds() => Read(t_callerHandle ??= Open());

    private static SafeFileHandle? Open()
    {
        try { return File.OpenHandle(SelfPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static long Read(SafeFileHandle? handle)
    {
        if (handle is null) return -1;
        Span<byte> text = stackalloc byte[128];
        int length;
        try { length = RandomAccess.Read(handle, text, 0); }
        catch (IOException) { return -1; }
        // "<run ns> <wait ns> <slices>\n": the second number.
        int i = 0;
        while (i < length && text[i] != (byte)' ') i++;
        long wait = 0;
        bool digits = false;
        for (i++; i < length && text[i] is >= (byte)'0' and <= (byte)'9'; i++)
        {
            wait = wait * 10 + (text[i] - '0');
            digits = true;
        }
        return digits ? wait : -1;
    }

    public void Dispose()
    {
        foreach (var handle in _handles) handle?.Dispose();
    }
}
