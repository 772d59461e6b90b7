using System.Text.Json;

namespace Kaiyuan.Tests.Models;

/// <summary>llama.cpp's reference outputs for a fixture model (see ../shared/fixtures/README.md §2).</summary>
public sealed record GoldenCase(string Prompt, int[] PromptIds, float[][]? PromptLogits, int[] Ids, string Text, float[][] Logits, float[] Margins);

public static class Goldens
{
    private static readonly Dictionary<string, GoldenCase[]> Cache = new();

    public static GoldenCase[] Load(string folder, string type)
    {
        string path = Fixtures.ModelPath(folder, $"goldens-{type}.json");
        lock (Cache)
        {
            if (Cache.TryGetValue(path, out var cached)) return cached;
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var cases = doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
                c.GetProperty("prompt").GetString()!,
                Ints(c.GetProperty("prompt_ids")),
                c.TryGetProperty("prompt_logits", out var pl) ? Matrix(pl) : null,
                Ints(c.GetProperty("ids")),
                c.GetProperty("text").GetString()!,
                Matrix(c.GetProperty("logits")),
                c.GetProperty("margins").EnumerateArray().Select(e => e.GetSingle()).ToArray())).ToArray();
            return Cache[path] = cases;
        }
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    private static float[][] Matrix(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
