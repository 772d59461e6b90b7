namespace Kaiyuan.Cli.Commands;

/// <summary>
/// What this process holds in memory now, as Linux accounts it: the resident pages of one mapped file (the model's
/// weights that were read, from /proc/self/smaps) and anonymous memory (KV cache, buffers, the managed heap, from
/// /proc/self/status).
/// </summary>
internal sealed record ResidentMemory(long FileBytes, long AnonymousBytes)
{
    /// <summary>The current figures for the mapping of <paramref name="mappedFile"/>, or null where /proc is not there to read (not Linux).</summary>
    public static ResidentMemory? Read(string mappedFile)
    {
        const string Status = "/proc/self/status", Maps = "/proc/self/smaps";
        if (!File.Exists(Status) || !File.Exists(Maps)) return null;
        long anonymous = -1;
        foreach (string line in File.ReadLines(Status))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anonymous = Kilobytes(line);
        string path = RealPath(mappedFile);
        long file = 0;
        bool inFile = false;
        foreach (string line in File.ReadLines(Maps))
        {
            // A mapping's header line ends with its path; its "Rss:" line follows among the figures.
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-')) inFile = line.EndsWith(" " + path, StringComparison.Ordinal);
            else if (inFile && line.StartsWith("Rss:", StringComparison.Ordinal)) file += Math.Max(0, Kilobytes(line));
        }
        return anonymous < 0 ? null : new ResidentMemory(file, anonymous);
    }

    /// <summary>The path with every symbolic link along it resolved, as the kernel names the mapping.</summary>
    private static string RealPath(string file)
    {
        string path = Path.GetPathRoot(Path.GetFullPath(file))!;
        foreach (string part in Path.GetFullPath(file)[path.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            path = Path.Combine(path, part);
            FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target) path = Path.GetFullPath(target.FullName);
        }
        return path;
    }

    private static long Kilobytes(string line)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], out long kb) ? kb * 1024 : -1;
    }
}
