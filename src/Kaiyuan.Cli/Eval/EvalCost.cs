using System.Globalization;
using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>Where a summary's answers came from: a model in process (paid by the hour), or an endpoint (paid by the token).</summary>
internal enum EvalModelKind
{
    Local,
    Endpoint,
}

/// <summary>
/// What running a local model costs per hour: the machine's own price (<c>--machine-cost-per-hour</c>), its power draw
/// at an electricity price (<c>--power-watts</c> × <c>--electricity-price</c>), or both added (a rented machine's price
/// rarely includes the power of one's own).
/// </summary>
internal sealed record CostRates(double? MachinePerHour = null, double? PowerWatts = null, double? ElectricityPerKwh = null)
{
    public bool HasPower => PowerWatts is not null && ElectricityPerKwh is not null;

    /// <summary>USD per hour of wall time, or null when no rate was given.</summary>
    public double? PerHour => MachinePerHour is null && !HasPower ? null : (MachinePerHour ?? 0) + (HasPower ? PowerWatts!.Value / 1000 * ElectricityPerKwh!.Value : 0);

    public string? Basis => (MachinePerHour is not null, HasPower) switch
    {
        (true, true) => "machine_hour+power",
        (true, false) => "machine_hour",
        (false, true) => "power",
        _ => null,
    };

    /// <summary>Power needs both its numbers; half of it is a mistake worth saying rather than a silent null.</summary>
    public void Validate()
    {
        if ((PowerWatts is null) != (ElectricityPerKwh is null))
            throw new ArgumentException("--power-watts and --electricity-price go together (watts × USD per kWh)");
        if (MachinePerHour < 0 || PowerWatts < 0 || ElectricityPerKwh < 0) throw new ArgumentException("costs and power must not be negative");
    }
}

/// <summary>
/// Fills a summary line's cost (<c>cost_per_1k_tasks_usd</c>, <c>cost_usd</c>, <c>cost_basis</c>, <c>cost_note</c>) from the
/// keys every task writes (<c>model</c>, <c>n</c>, <c>tokens_in</c>, <c>tokens_out</c>, <c>wall_s</c>), so it prices tasks it does not know.
/// An endpoint is priced by its tokens at the model's list price; a local model by the wall-clock time it took (the whole
/// run's, with its <c>--concurrency</c> answers at once, so batching shows as a lower cost) at the machine's hourly rate.
/// Where no price applies the cost is null and <c>cost_note</c> says why: never a guess.
/// </summary>
internal static class EvalCost
{
    public static void Fill(JsonObject summary, EvalModelKind kind, EvalPrices prices, CostRates rates)
    {
        var c = CultureInfo.InvariantCulture;
        summary["model_kind"] = kind == EvalModelKind.Local ? "local" : "endpoint";
        double? total = null;
        string? basis = null, note;
        long n = Number(summary, "n") is { } items ? (long)items : 0;
        if (kind == EvalModelKind.Endpoint)
        {
            string model = (string?)summary["model"] ?? "";
            if (prices.Find(model) is not { } price)
                note = $"no API price for '{model}': add it to {EvalPrices.UserFile} (or a --prices file) as {{\"models\": {{\"{model}\": {{\"input\": USD_PER_1M, \"output\": USD_PER_1M}}}}}}";
            else if (Number(summary, "tokens_in") is not { } tokensIn || Number(summary, "tokens_out") is not { } tokensOut)
                note = "the task reported no token counts";
            else
            {
                total = (tokensIn * price.InputPerMillion + tokensOut * price.OutputPerMillion) / 1e6;
                basis = $"api_prices@{price.AsOf}";
                note = string.Create(c, $"{price.Model}: ${price.InputPerMillion:0.###} in / ${price.OutputPerMillion:0.###} out per 1M tokens ({price.Origin} price)");
            }
        }
        else if (rates.PerHour is not { } perHour)
            note = "local model: give --machine-cost-per-hour USD, or --power-watts W with --electricity-price USD_PER_KWH";
        else if (Number(summary, "wall_s") is not { } wall)
            note = "the task reported no wall time";
        else
        {
            total = wall / 3600 * perHour;
            basis = rates.Basis;
            note = string.Create(c, $"${perHour:0.####}/h for {wall:0.##} s of wall clock");
        }
        summary["cost_usd"] = total is { } t ? Math.Round(t, 8) : null;
        summary["cost_per_1k_tasks_usd"] = total is { } u && n > 0 ? Math.Round(u / n * 1000, 6) : null;
        summary["cost_basis"] = basis;
        summary["cost_note"] = note;
    }

    /// <summary>A numeric key, or null when it is missing or not a number.</summary>
    internal static double? Number(JsonObject o, string key) => Number(o[key]);

    internal static double? Number(JsonNode? node) =>
        // Through the JSON text: a value built in memory from an int or long does not convert with TryGetValue<double>.
        node is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
                              && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) ? d : null;
}
