using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Kaiyuan.Cli.Eval;

/// <summary>One CMMLU question: its subject, its row id in the subject's test file, the question, four options and the answer letter.</summary>
internal sealed record CmmluItem(string Subject, string Row, string Question, string[] Options, string Answer);

/// <summary>
/// CMMLU (Chinese multiple choice across 67 subjects), five-shot in the prompt format of CMMLU's own harness: a header
/// naming the subject in Chinese, the subject's <c>dev</c> questions with their answers, then the test question ending
/// <c>答案是：</c>. A local model is scored as that harness scores it: the option letter whose token is most likely next
/// (one forward of the prompt); an endpoint by the letters among its first token's top log-probabilities where it
/// gives them, else by the first option letter of its answer. Accuracy is over all questions (with a Wilson interval);
/// each subject's accuracy and each category's (the mean of its subjects', as CMMLU reports them) are reported too.
/// </summary>
internal sealed partial class CmmluTask(IReadOnlyList<CmmluItem> items, IReadOnlyDictionary<string, (string Header, string[] Shots)> prompts) : IEvalTask
{
    public const string Name = "cmmlu";

    private static readonly string[] Letters = ["A", "B", "C", "D"];

    /// <summary>CMMLU's five categories, in its order.</summary>
    public static readonly string[] Categories = [Stem, Humanities, SocialScience, Other, ChinaSpecific];

    private const string Stem = "STEM", Humanities = "Humanities", SocialScience = "Social Science", Other = "Other", ChinaSpecific = "China specific";

    /// <summary>Each subject's Chinese name (which the prompt's header uses) and categories, from CMMLU's repository.</summary>
    public static readonly IReadOnlyDictionary<string, (string Chinese, string[] Categories)> Subjects = new Dictionary<string, (string, string[])>(StringComparer.Ordinal)
    {
        ["agronomy"] = ("农学", [Other]),
        ["anatomy"] = ("解剖学", [Stem]),
        ["ancient_chinese"] = ("古汉语", [SocialScience, ChinaSpecific]),
        ["arts"] = ("艺术学", [Humanities]),
        ["astronomy"] = ("天文学", [Stem]),
        ["business_ethics"] = ("商业伦理", [SocialScience]),
        ["chinese_civil_service_exam"] = ("中国公务员考试", [SocialScience, ChinaSpecific]),
        ["chinese_driving_rule"] = ("中国驾驶规则", [Other, ChinaSpecific]),
        ["chinese_food_culture"] = ("中国饮食文化", [SocialScience, ChinaSpecific]),
        ["chinese_foreign_policy"] = ("中国外交政策", [SocialScience, ChinaSpecific]),
        ["chinese_history"] = ("中国历史", [Humanities, ChinaSpecific]),
        ["chinese_literature"] = ("中国文学", [Humanities, ChinaSpecific]),
        ["chinese_teacher_qualification"] = ("中国教师资格", [SocialScience, ChinaSpecific]),
        ["clinical_knowledge"] = ("临床知识", [Other]),
        ["college_actuarial_science"] = ("大学精算学", [Stem]),
        ["college_education"] = ("大学教育学", [SocialScience]),
        ["college_engineering_hydrology"] = ("大学工程水文学", [Stem]),
        ["college_law"] = ("大学法律", [Humanities]),
        ["college_mathematics"] = ("大学数学", [Stem]),
        ["college_medical_statistics"] = ("大学医学统计", [Stem]),
        ["college_medicine"] = ("大学医学", [Other]),
        ["computer_science"] = ("计算机科学", [Stem]),
        ["computer_security"] = ("计算机安全", [Other]),
        ["conceptual_physics"] = ("概念物理学", [Stem]),
        ["construction_project_management"] = ("建设工程管理", [Other, ChinaSpecific]),
        ["economics"] = ("经济学", [SocialScience]),
        ["education"] = ("教育学", [SocialScience]),
        ["electrical_engineering"] = ("电气工程", [Stem]),
        ["elementary_chinese"] = ("小学语文", [SocialScience, ChinaSpecific]),
        ["elementary_commonsense"] = ("小学常识", [Other, ChinaSpecific]),
        ["elementary_information_and_technology"] = ("小学信息技术", [Other]),
        ["elementary_mathematics"] = ("初等数学", [Stem]),
        ["ethnology"] = ("民族学", [SocialScience, ChinaSpecific]),
        ["food_science"] = ("食品科学", [Other]),
        ["genetics"] = ("遗传学", [Stem]),
        ["global_facts"] = ("全球事实", [Humanities]),
        ["high_school_biology"] = ("高中生物", [Stem]),
        ["high_school_chemistry"] = ("高中化学", [Stem]),
        ["high_school_geography"] = ("高中地理", [SocialScience]),
        ["high_school_mathematics"] = ("高中数学", [Stem]),
        ["high_school_physics"] = ("高中物理学", [Stem]),
        ["high_school_politics"] = ("高中政治", [SocialScience, ChinaSpecific]),
        ["human_sexuality"] = ("人类性行为", [Other]),
        ["international_law"] = ("国际法学", [Humanities]),
        ["journalism"] = ("新闻学", [SocialScience]),
        ["jurisprudence"] = ("法理学", [Humanities]),
        ["legal_and_moral_basis"] = ("法律与道德基础", [Other]),
        ["logical"] = ("逻辑学", [Humanities]),
        ["machine_learning"] = ("机器学习", [Stem]),
        ["management"] = ("管理学", [SocialScience]),
        ["marketing"] = ("市场营销", [SocialScience]),
        ["marxist_theory"] = ("马克思主义理论", [Humanities]),
        ["modern_chinese"] = ("现代汉语", [SocialScience, ChinaSpecific]),
        ["nutrition"] = ("营养学", [Other]),
        ["philosophy"] = ("哲学", [Humanities]),
        ["professional_accounting"] = ("专业会计", [SocialScience]),
        ["professional_law"] = ("专业法学", [Humanities]),
        ["professional_medicine"] = ("专业医学", [Other]),
        ["professional_psychology"] = ("专业心理学", [SocialScience]),
        ["public_relations"] = ("公共关系", [SocialScience]),
        ["security_study"] = ("安全研究", [SocialScience]),
        ["sociology"] = ("社会学", [SocialScience]),
        ["sports_science"] = ("体育学", [Other]),
        ["traditional_chinese_medicine"] = ("中医中药", [Other, ChinaSpecific]),
        ["virology"] = ("病毒学", [Stem]),
        ["world_history"] = ("世界历史", [Humanities]),
        ["world_religions"] = ("世界宗教", [Humanities]),
    };

    /// <summary>The dev questions each prompt shows before the test question.</summary>
    public const int Shots = 5;

    string IEvalTask.Name => Name;

    public int Count => items.Count;

    public int SamplesPerItem => 1;

    public IReadOnlyList<CmmluItem> Items => items;

    /// <summary>
    /// Reads <paramref name="folder"/>'s <c>test/</c> and <c>dev/</c> CSVs: every subject (or those named), the first
    /// <paramref name="limit"/> test questions of each (0: all), so that a small limit still covers every subject.
    /// </summary>
    public static CmmluTask Load(string folder, int limit, IReadOnlyCollection<string>? only)
    {
        string testDir = Path.Combine(folder, "test"), devDir = Path.Combine(folder, "dev");
        if (!Directory.Exists(testDir) || !Directory.Exists(devDir))
            throw new DirectoryNotFoundException($"{folder}: CMMLU's data folder has test/ and dev/ (the CSVs of haonan-li/CMMLU's data/)");
        var subjects = Directory.GetFiles(testDir, "*.csv").Select(f => Path.GetFileNameWithoutExtension(f)).Order(StringComparer.Ordinal).ToList();
        if (only is { Count: > 0 })
        {
            var unknown = only.Where(s => !subjects.Contains(s)).ToList();
            if (unknown.Count > 0) throw new ArgumentException($"--subjects: {string.Join(", ", unknown)} not in {testDir} (known: {string.Join(", ", subjects)})");
            subjects = subjects.Where(only.Contains).ToList();
        }
        if (subjects.Count == 0) throw new FileNotFoundException($"{testDir} has no <subject>.csv");
        var items = new List<CmmluItem>();
        var prompts = new Dictionary<string, (string, string[])>(StringComparer.Ordinal);
        foreach (string subject in subjects)
        {
            string testFile = Path.Combine(testDir, subject + ".csv");
            if (!Subjects.TryGetValue(subject, out var facts)) throw new FormatException($"{testFile}: '{subject}' is not one of CMMLU's 67 subjects");
            var test = ReadQuestions(testFile, subject);
            var dev = ReadQuestions(Path.Combine(devDir, subject + ".csv"), subject);
            prompts[subject] = ($"以下是关于{facts.Chinese}的单项选择题，请直接给出正确答案的选项。\n\n",
                dev.Take(Shots).Select(example => Question(example) + example.Answer + "\n\n").ToArray());
            items.AddRange(limit > 0 ? test.Take(limit) : test);
        }
        return new CmmluTask(items, prompts);
    }

    /// <summary>A question as CMMLU's harness writes it, up to the answer: <c>题目：…\nA. …\nB. …\nC. …\nD. …\n答案是：</c>.</summary>
    public static string Question(CmmluItem item)
    {
        var text = new StringBuilder("题目：").Append(item.Question);
        for (int i = 0; i < Letters.Length; i++) text.Append('\n').Append(Letters[i]).Append(". ").Append(item.Options[i]);
        return text.Append("\n答案是：").ToString();
    }

    /// <summary>The five-shot prompt of an item.</summary>
    public string Prompt(CmmluItem item) => Prompt(item, prompts[item.Subject].Shots);

    private string Prompt(CmmluItem item, IEnumerable<string> shots) => prompts[item.Subject].Header + string.Concat(shots) + Question(item);

    /// <summary>
    /// The prompt that fits the model: five-shot, or, where that is too long for its context, with the longest examples
    /// (by characters) left out one at a time (as CMMLU's harness shortens a prompt), down to none.
    /// </summary>
    public string Prompt(CmmluItem item, IEvalModel model)
    {
        for (int shots = Shots; ; shots--)
        {
            string prompt = Prompt(item, shots);
            if (shots == 0 || model.Fits(prompt)) return prompt;
        }
    }

    /// <summary>The prompt with <paramref name="count"/> examples: the longest (by characters) left out first.</summary>
    private string Prompt(CmmluItem item, int count)
    {
        var shots = prompts[item.Subject].Shots.ToList();
        while (shots.Count > count) shots.Remove(shots.MaxBy(s => s.Length)!);
        return Prompt(item, shots);
    }

    /// <summary>An endpoint's context is not known beforehand: a prompt it refuses as too long is asked again with one example fewer.</summary>
    public EvalRequest? Shorten(int index, EvalRequest refused)
    {
        int examples = AnsweredExample().Count(refused.Prompt);
        return examples == 0 ? null : refused with { Prompt = Prompt(items[index], examples - 1) };
    }

    private static List<CmmluItem> ReadQuestions(string path, string subject)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing (each subject has a test and a dev file)");
        var rows = Csv.Read(path);
        if (rows.Count == 0 || rows[0].Fields.Count != 7 || !rows[0].Fields.Skip(1).SequenceEqual(["Question", "A", "B", "C", "D", "Answer"]))
            throw new FormatException($"{path}:1: not CMMLU's header ',Question,A,B,C,D,Answer'");
        var questions = new List<CmmluItem>();
        foreach (var (line, f) in rows.Skip(1))
        {
            if (f.Count != 7) throw new FormatException($"{path}:{line}: {f.Count} fields, CMMLU's rows have 7 (id, question, four options, answer)");
            string answer = f[6].Trim();
            if (!Letters.Contains(answer)) throw new FormatException($"{path}:{line}: the answer '{f[6]}' is not A, B, C or D");
            questions.Add(new CmmluItem(subject, f[0], f[1], [f[2], f[3], f[4], f[5]], answer));
        }
        return questions;
    }

    /// <summary>The next token only: its letters' log-probabilities decide (with one token to read, where they cannot).</summary>
    public EvalRequest Request(int index, int sample, IEvalModel model) => new() { Prompt = Prompt(items[index], model), Raw = true, MaxTokens = 1, Choices = Letters };

    public Task<EvalRecord> ScoreAsync(EvalRecord answered, EvalAnswer answer, CancellationToken cancel)
    {
        var item = items[answered.Index];
        var (choice, how) = Choose(answer, Letters);
        return Task.FromResult(answered with
        {
            Id = $"{item.Subject}/{item.Row}",
            Subject = item.Subject,
            Reference = item.Answer,
            Extracted = choice,
            Correct = choice == item.Answer,
            Detail = how,
        });
    }

    /// <summary>
    /// The chosen letter: the most likely by log-probability where the model gave them (the first of equals), else the
    /// first letter that stands alone in the answer; null when neither says.
    /// </summary>
    public static (string? Choice, string How) Choose(EvalAnswer answer, IReadOnlyList<string> letters)
    {
        if (answer.ChoiceLogprobs is { Count: > 0 } logprobs)
        {
            string? best = null;
            foreach (string letter in letters)
                if (logprobs.TryGetValue(letter, out double lp) && (best is null || lp > logprobs[best])) best = letter;
            return (best, "logprobs");
        }
        return (FirstLetter(answer.Content, letters), "generated");
    }

    /// <summary>The first of <paramref name="letters"/> in <paramref name="text"/> that is not part of a word ("B" in "答案是B", not the "A" of "Answer").</summary>
    public static string? FirstLetter(string text, IReadOnlyList<string> letters)
    {
        foreach (Match m in StandaloneCapital().Matches(text))
            if (letters.Contains(m.Value)) return m.Value;
        return null;
    }

    [GeneratedRegex("(?<![A-Za-z])[A-Z](?![A-Za-z])")]
    private static partial Regex StandaloneCapital();

    /// <summary>An example's end in a prompt: its answer letter and the blank line.</summary>
    [GeneratedRegex("\n答案是：[ABCD]\n\n")]
    private static partial Regex AnsweredExample();

    public EvalResult Summarize(string model, IReadOnlyList<EvalRecord> records, string recordsPath)
    {
        int n = records.Count, correct = records.Count(r => r.Correct == true);
        var (low, high) = Statistics.Wilson(correct, n);
        double score = n == 0 ? 0 : (double)correct / n;
        var bySubject = records.GroupBy(r => r.Subject ?? "").OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => (N: g.Count(), Accuracy: g.Average(r => r.Correct == true ? 1.0 : 0.0)), StringComparer.Ordinal);
        var byCategory = new Dictionary<string, double>();
        foreach (string category in Categories)
        {
            var accuracies = bySubject.Where(s => Subjects.TryGetValue(s.Key, out var f) && f.Categories.Contains(category)).Select(s => s.Value.Accuracy).ToList();
            if (accuracies.Count > 0) byCategory[category] = accuracies.Average();
        }
        double subjectMean = bySubject.Count == 0 ? 0 : bySubject.Values.Average(s => s.Accuracy);
        int byLogprobs = records.Count(r => r.Detail == "logprobs");
        int shortened = records.Count(r => AnsweredExample().Count(r.Prompt) < Shots);
        var categories = new JsonObject();
        foreach (var (category, accuracy) in byCategory) categories[category] = accuracy;
        var subjects = new JsonObject();
        foreach (var (subject, s) in bySubject) subjects[subject] = new JsonObject { ["accuracy"] = s.Accuracy, ["n"] = s.N };
        var c = CultureInfo.InvariantCulture;
        var lines = new List<string>
        {
            $"{Name} · {model} · {n} questions, {bySubject.Count} subjects, {Shots}-shot",
            EvalReport.ScoreLine("accuracy", score, low, high),
            string.Create(c, $"  mean of subjects {subjectMean:P1} (CMMLU's average); scored by log-probabilities {byLogprobs}, by the generated letter {n - byLogprobs}")
                + (shortened > 0 ? $"; {shortened} prompts with fewer than {Shots} examples (the context is short)" : ""),
            "  " + string.Join("  ", byCategory.Select(p => string.Create(c, $"{p.Key} {p.Value:P1}"))),
        };
        var cells = bySubject.Select(s => string.Create(c, $"{s.Key,-38} {s.Value.Accuracy,7:P1} ({s.Value.N})")).ToList();
        for (int i = 0; i < cells.Count; i += 2) lines.Add("    " + string.Join("   ", cells.Skip(i).Take(2)));
        return new EvalResult(Name, model, "accuracy", score, low, high, n)
        {
            Extra = new JsonObject
            {
                ["shots"] = Shots,
                ["subject_mean"] = subjectMean,
                ["scored_by_logprobs"] = byLogprobs,
                ["fewer_shots"] = shortened,
                ["categories"] = categories,
                ["subjects"] = subjects,
            },
            Lines = lines,
        };
    }
}
