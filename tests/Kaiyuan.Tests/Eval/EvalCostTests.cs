using System.Text.Json.Nodes;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Tests.Eval;

/// <summary>Cost per 1,000 tasks against hand-computed cases, and the price table's loading, overriding and matching.</summary>
public sealed class EvalCostTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-prices-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PriceFile(string json)
    {
        string path = Path.Combine(_dir, $"prices-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>The shipped prices alone, whatever this machine's KAIYUAN_HOME holds.</summary>
    private string NoUserPrices() => PriceFile("""{"models": {}}""");

    private static JsonObject Summary(string model, int n, long tokensIn, long tokensOut, double wallSeconds) => new()
    {
        ["task"] = "gsm8k",
        ["model"] = model,
        ["metric"] = "exact_match",
        ["score"] = 0.5,
        ["ci95"] = new JsonArray(0.4, 0.6),
        ["n"] = n,
        ["tokens_in"] = tokensIn,
        ["tokens_out"] = tokensOut,
        ["tokens_per_s"] = 10.0,
        ["ttft_ms"] = 100.0,
        ["cost_per_1k_tasks_usd"] = null,
        ["wall_s"] = wallSeconds,
    };

    private static double Cost(JsonObject o, string key) => (double)o[key]!;

    [Fact]
    public void ApiCostIsTokensTimesListPricePerThousandTasks()
    {
        var prices = EvalPrices.Load(PriceFile("""{"as_of": "2026-01-02", "models": {"test-model": {"input": 2.00, "output": 8.00}}}"""));
        var summary = Summary("test-model", 500, 110_000, 82_000, wallSeconds: 500);
        EvalCost.Fill(summary, EvalModelKind.Endpoint, prices, new CostRates(MachinePerHour: 99));
        // 110,000 × $2/1M + 82,000 × $8/1M = $0.22 + $0.656 = $0.876 for 500 items: $1.752 per 1,000 (the machine rate is not an endpoint's).
        Assert.Equal(0.876, Cost(summary, "cost_usd"), 9);
        Assert.Equal(1.752, Cost(summary, "cost_per_1k_tasks_usd"), 9);
        Assert.Equal("api_prices@2026-01-02", (string)summary["cost_basis"]!);
        Assert.Equal("endpoint", (string)summary["model_kind"]!);
    }

    [Fact]
    public void LocalCostIsWallTimeTimesTheHourlyRate()
    {
        var prices = EvalPrices.Load(NoUserPrices());
        var machine = Summary("qwen3-8b", 500, 1, 1, wallSeconds: 3600);
        EvalCost.Fill(machine, EvalModelKind.Local, prices, new CostRates(MachinePerHour: 0.40));
        Assert.Equal(0.40, Cost(machine, "cost_usd"), 9); // one hour at $0.40
        Assert.Equal(0.80, Cost(machine, "cost_per_1k_tasks_usd"), 9); // for 500 items
        Assert.Equal("machine_hour", (string)machine["cost_basis"]!);

        var power = Summary("qwen3-8b", 100, 1, 1, wallSeconds: 7200);
        EvalCost.Fill(power, EvalModelKind.Local, prices, new CostRates(PowerWatts: 65, ElectricityPerKwh: 0.30));
        // 65 W × 2 h = 0.13 kWh × $0.30 = $0.039 for 100 items: $0.39 per 1,000.
        Assert.Equal(0.039, Cost(power, "cost_usd"), 9);
        Assert.Equal(0.39, Cost(power, "cost_per_1k_tasks_usd"), 9);
        Assert.Equal("power", (string)power["cost_basis"]!);

        var both = Summary("qwen3-8b", 1000, 1, 1, wallSeconds: 1800);
        EvalCost.Fill(both, EvalModelKind.Local, prices, new CostRates(0.50, 100, 0.25));
        // ($0.50 + 0.1 kW × $0.25) per hour × 0.5 h = $0.2625 for 1,000 items.
        Assert.Equal(0.2625, Cost(both, "cost_usd"), 9);
        Assert.Equal(0.2625, Cost(both, "cost_per_1k_tasks_usd"), 9);
        Assert.Equal("machine_hour+power", (string)both["cost_basis"]!);
    }

    [Fact]
    public void NoPriceMeansNoCostAndANoteNeverAGuess()
    {
        var prices = EvalPrices.Load(NoUserPrices());
        var local = Summary("qwen3-8b", 10, 1, 1, 60);
        EvalCost.Fill(local, EvalModelKind.Local, prices, new CostRates());
        Assert.Null(local["cost_per_1k_tasks_usd"]);
        Assert.Null(local["cost_usd"]);
        Assert.Contains("--machine-cost-per-hour", (string)local["cost_note"]!);

        var unknown = Summary("claude-opus-9", 10, 1000, 1000, 60);
        EvalCost.Fill(unknown, EvalModelKind.Endpoint, prices, new CostRates(MachinePerHour: 1));
        Assert.Null(unknown["cost_per_1k_tasks_usd"]);
        Assert.Contains("no API price for 'claude-opus-9'", (string)unknown["cost_note"]!);

        var half = Assert.Throws<ArgumentException>(() => new CostRates(PowerWatts: 65).Validate());
        Assert.Contains("--electricity-price", half.Message);
    }

    [Fact]
    public void ShippedPricesAreDatedAndMatchSnapshotsButNeverAShorterName()
    {
        var prices = EvalPrices.Load(NoUserPrices());
        Assert.Matches(@"^\d{4}-\d{2}-\d{2}$", prices.ShippedAsOf);
        Assert.Equal(0.40, prices.Find("gpt-4.1-mini-2025-04-14")!.InputPerMillion);
        Assert.Equal(2.50, prices.Find("openai/gpt-4o")!.InputPerMillion);
        Assert.Equal(15.00, prices.Find("claude-sonnet-4-20250514")!.OutputPerMillion);
        Assert.Equal("claude-3-5-haiku", prices.Find("claude-3-5-haiku-latest")!.Model);
        Assert.Equal(0.56, prices.Find("deepseek-chat")!.InputPerMillion);
        // An unlisted version must not take the price of a listed prefix (claude-opus-4 is $15/$75; later Opus models are not).
        Assert.Null(prices.Find("claude-opus-4-7"));
        Assert.Null(prices.Find("gpt-4.1-mega"));
        Assert.Null(prices.Find("qwen3"));
    }

    [Fact]
    public void AUserFileOverridesAndExtendsTheShippedPrices()
    {
        var prices = EvalPrices.Load(PriceFile("""
            // comments are allowed
            {"as_of": "2027-01-01", "models": {
              "gpt-4o": {"input": 1.00, "output": 4.00},
              "my-vllm": {"input": 0.01, "output": 0.02, "as_of": "2027-02-02"},
            }}
            """));
        var gpt4o = prices.Find("gpt-4o-2024-08-06")!;
        Assert.Equal((1.00, 4.00, "2027-01-01", "user"), (gpt4o.InputPerMillion, gpt4o.OutputPerMillion, gpt4o.AsOf, gpt4o.Origin));
        Assert.Equal("2027-02-02", prices.Find("my-vllm")!.AsOf);
        Assert.Equal("shipped", prices.Find("gpt-4.1")!.Origin);
    }

    [Theory]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("""{"as_of": "2026-01-01"}""", "expected {\"as_of\"")]
    [InlineData("""{"models": {"m": {"input": -1, "output": 2}}}""", "model 'm': \"input\" must be a non-negative number")]
    [InlineData("""{"models": {"m": {"input": 1}}}""", "model 'm': \"output\" must be")]
    [InlineData("""{"models": {"m": "cheap"}}""", "model 'm': expected")]
    public void AMalformedPriceFileIsAnErrorNamingTheFile(string json, string message)
    {
        string path = PriceFile(json);
        var e = Assert.Throws<FormatException>(() => EvalPrices.Load(path));
        Assert.StartsWith(path + ":", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AMissingPriceFileIsAnErrorNamingTheFile()
    {
        string path = Path.Combine(_dir, "absent.json");
        var e = Assert.Throws<FileNotFoundException>(() => EvalPrices.Load(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TheUserFileLivesInTheStoreRoot() =>
        Assert.Equal(Path.Combine(Kaiyuan.Store.ModelStore.DefaultRoot(), "prices.json"), EvalPrices.UserFile);
}
