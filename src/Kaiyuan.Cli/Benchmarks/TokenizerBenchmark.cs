using System.Diagnostics;
using System.Text;

using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Benchmarks;

/// <summary>Throughput of our tokenizer against a reference encoder on the same deterministic mixed corpus.</summary>
internal static class TokenizerBenchmark
{
    public sealed record Result(
        double CorpusMegabytes,
        double VocabLoadMilliseconds,
        double OursMegabytesPerSecond,
        int OursTokens,
        double? ReferenceMegabytesPerSecond,
        int? ReferenceTokens);

    private static readonly string[] English =
    [
        "the", "model", "reads", "a", "token", "stream", "and", "writes", "answers", "quickly", "while", "memory", "stays", "small",
        "language", "models", "learn", "patterns", "from", "large", "amounts", "of", "text", "people", "wrote", "over", "many", "years",
        "It's", "we're", "they've", "I'll", "don't", "performance", "matters", "because", "every", "millisecond", "counts", "in",
        "production", "systems", "Hello", "World", "Kaiyuan", "runs", "GGUF", "files", "on", "CPUs", "with", "exact", "parity", "to",
        "llama.cpp", "e.g.", "(see", "below)", "numbers:", "42", "3.14159", "2025-11-29", "100%", "$19.99", "—", "naïve", "café",
    ];

    private static readonly string[] Chinese =
    [
        "人工智能", "语言模型", "正在", "改变", "我们", "的", "世界", "。", "开源", "社区", "贡献", "了", "大量", "代码", "，", "并且",
        "推理", "速度", "非常", "重要", "分词器", "把", "文本", "切分", "成", "词元", "北京", "上海", "深圳", "天气", "很好", "！",
        "机器学习", "需要", "数据", "和", "计算", "资源", "这是", "一个", "测试", "句子", "中文", "与", "English", "混合", "？",
    ];

    private static readonly string[] Code =
    [
        "public static int Add(int a, int b) => a + b;\n",
        "for (int i = 0; i < n; i++) {\n    sum += values[i] * weights[i];\n}\n",
        "def tokenize(text: str) -> list[int]:\n    return [vocab[w] for w in text.split()]\n",
        "if (x != null && x.Length > 0) { Console.WriteLine($\"{x}\"); }\n",
        "const result = await fetch(`/api/v1/items?id=${id}`);\n",
        "    // comment with symbols: <>, [], {}, ==, !=, <=, >=, &&, ||\n",
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id;\n",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n",
        "\t\treturn std::make_unique<Tokenizer>(vocab);\n",
    ];

    /// <summary>About <paramref name="bytes"/> bytes of UTF-8: English prose, Chinese prose and source code paragraphs, the same for a given seed.</summary>
    public static string BuildCorpus(int bytes = 10_000_000, int seed = 20251129)
    {
        var random = new Random(seed);
        var sb = new StringBuilder(bytes);
        long written = 0;
        while (written < bytes)
        {
            int kind = random.Next(4);
            int start = sb.Length;
            if (kind <= 1)
            {
                int words = 20 + random.Next(60);
                for (int i = 0; i < words; i++)
                {
                    if (i > 0) sb.Append(' ');
                    sb.Append(English[random.Next(English.Length)]);
                }
                sb.Append(".\n\n");
            }
            else if (kind == 2)
            {
                int words = 20 + random.Next(60);
                for (int i = 0; i < words; i++) sb.Append(Chinese[random.Next(Chinese.Length)]);
                sb.Append("。\n\n");
            }
            else
            {
                int lines = 3 + random.Next(8);
                for (int i = 0; i < lines; i++) sb.Append(Code[random.Next(Code.Length)]);
                sb.Append('\n');
            }
            written += Encoding.UTF8.GetByteCount(sb.ToString(start, sb.Length - start));
        }
        return sb.ToString();
    }

    /// <summary>
    /// Loads the vocabulary at <paramref name="vocabPath"/> (timed), then encodes <paramref name="corpus"/> single-threaded
    /// <paramref name="runs"/> times with it and with <paramref name="reference"/> (which returns a token count), reporting medians.
    /// </summary>
    public static Result Run(string vocabPath, string corpus, Func<string, int>? reference = null, int runs = 3)
    {
        double mb = Encoding.UTF8.GetByteCount(corpus) / 1e6;
        // Load once to warm the JIT and file cache, then time a second load.
        Tokenizer.FromGguf(vocabPath);
        var sw = Stopwatch.StartNew();
        var tokenizer = Tokenizer.FromGguf(vocabPath);
        double loadMs = sw.Elapsed.TotalMilliseconds;

        int ours = 0;
        double oursSpeed = Median(runs, () => ours = tokenizer.Encode(corpus, addSpecial: false, parseSpecial: false).Length, mb);
        int? refTokens = null;
        double? refSpeed = null;
        if (reference is not null)
        {
            int count = 0;
            refSpeed = Median(runs, () => count = reference(corpus), mb);
            refTokens = count;
        }
        return new Result(mb, loadMs, oursSpeed, ours, refSpeed, refTokens);
    }

    private static double Median(int runs, Action action, double megabytes)
    {
        var speeds = new double[Math.Max(1, runs)];
        for (int i = 0; i < speeds.Length; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            speeds[i] = megabytes / sw.Elapsed.TotalSeconds;
        }
        Array.Sort(speeds);
        return speeds[speeds.Length / 2];
    }
}
