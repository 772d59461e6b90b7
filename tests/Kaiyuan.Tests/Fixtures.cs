namespace Kaiyuan.Tests;

/// <summary>Finds the reference data in <c>../shared/fixtures</c> beside the repository root.</summary>
public static class Fixtures
{
    public static string? RepoRoot { get; } = FindRepoRoot();

    public static string? Root { get; } = RepoRoot is null ? null : ExistingDir(Path.Combine(RepoRoot, "..", "shared", "fixtures"));

    /// <summary>The path of a fixture file or folder; skips the calling test when the fixtures are absent.</summary>
    public static string Require(params string[] parts)
    {
        if (Root is null) Assert.Skip("../shared/fixtures is absent (a clone outside the Kaiyuan workspace): fixture tests are skipped");
        var path = Path.GetFullPath(Path.Combine([Root, .. parts]));
        if (!File.Exists(path) && !Directory.Exists(path)) Assert.Skip($"fixture {Path.Combine(parts)} is absent");
        return path;
    }

    public static string ModelPath(string folder, string file) => Require("models", folder, file);

    private static string? FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Kaiyuan.slnx"))) return dir.FullName;
        return null;
    }

    private static string? ExistingDir(string path) => Directory.Exists(path) ? Path.GetFullPath(path) : null;
}
