using Kaiyuan.Gguf;
using Kaiyuan.Hub;
using Kaiyuan.Store;

namespace Kaiyuan.Tests.Hub;

/// <summary>A throw-away store in the temp folder (never the user's ~/.kaiyuan) and a small real GGUF to serve.</summary>
internal sealed class TempStore : IDisposable
{
    public ModelStore Store { get; } = new(Path.Combine(Path.GetTempPath(), "kaiyuan-test-store-" + Guid.NewGuid().ToString("N")));

    public ModelPuller Puller(FakeHub hub, HubClient client, List<string>? log = null) =>
        new(Store, client, ModelCatalog.For(Store)) { Log = log is null ? null : m => { lock (log) log.Add(m); }, LockPollInterval = TimeSpan.FromMilliseconds(20) };

    public static HubClient Client(FakeHub hub, string? token = null, int attempts = 5) =>
        new(new HubOptions { Endpoint = hub.Endpoint, Token = token, MaxAttempts = attempts, RetryDelay = TimeSpan.FromMilliseconds(10) });

    public string[] TempFiles(string pattern) => Directory.Exists(Store.TempDir) ? Directory.GetFiles(Store.TempDir, pattern) : [];

    public void Dispose()
    {
        try { Directory.Delete(Store.Root, recursive: true); }
        catch (IOException) { }
    }
}

internal static class TestModels
{
    /// <summary>The bytes of aidreams260K Q6_K from the fixtures, or a small GGUF written here when they are absent.</summary>
    public static byte[] SmallGguf()
    {
        var fixtures = Fixtures.Root;
        if (fixtures is not null)
        {
            var path = Path.Combine(fixtures, "models", "aidreams260K", "aidreams260K-q6_k.gguf");
            if (File.Exists(path)) return File.ReadAllBytes(path);
        }
        var writer = new GgufWriter();
        writer.Metadata.Set("general.architecture", GgufValue.Of("llama"));
        writer.Metadata.Set("general.name", GgufValue.Of("test"));
        writer.Metadata.Set("general.file_type", GgufValue.Of(0u));
        writer.Metadata.Set("llama.context_length", GgufValue.Of(128u));
        var data = new float[64 * 1024];
        for (int i = 0; i < data.Length; i++) data[i] = MathF.Sin(i);
        writer.AddTensor("token_embd.weight", data, 64, 1024);
        using var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }
}
