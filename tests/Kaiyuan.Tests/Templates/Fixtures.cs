namespace Kaiyuan.Tests.Templates;

/// <summary>Locates the shared chat-template fixtures (../shared/fixtures next to the repository).</summary>
internal static class Fixtures
{
    private static readonly Lazy<string?> Dir = new(() =>
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Kaiyuan.slnx")))
            {
                var dir = Path.Combine(d.Parent?.FullName ?? d.FullName, "shared", "fixtures", "chat-templates");
                return Directory.Exists(dir) ? dir : null;
            }
        }
        return null;
    });

    public static string? ChatTemplatesDir => Dir.Value;

    public static string RequireDir()
    {
        if (Dir.Value is null)
            Assert.Skip("chat-template fixtures not found (expected ../shared/fixtures/chat-templates next to the repository)");
        return Dir.Value!;
    }

    public static string ReadTemplate(string file) => File.ReadAllText(Path.Combine(RequireDir(), file));
}
