namespace Kaiyuan.Tests.Tensors;

/// <summary>Locates the shared reference fixtures (../shared/fixtures beside the repository root).</summary>
internal static class TestFixtures
{
    public static string? Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kaiyuan.slnx")))
            {
                string fixtures = Path.Combine(dir.Parent?.FullName ?? dir.FullName, "shared", "fixtures");
                return Directory.Exists(fixtures) ? fixtures : null;
            }
        }

        return null;
    }

    /// <summary>Path of a model fixture, or skips the test with a clear message when the fixtures are absent.</summary>
    public static string ModelOrSkip(string relativePath)
    {
        string? root = Root();
        if (root is null)
        {
            Assert.Skip("Fixtures not found: expected ../shared/fixtures beside the repository root (the folder holding Kaiyuan.slnx).");
        }

        string path = Path.Combine(root, "models", relativePath);
        if (!File.Exists(path))
        {
            Assert.Skip($"Fixture {path} is missing.");
        }

        return path;
    }
}
