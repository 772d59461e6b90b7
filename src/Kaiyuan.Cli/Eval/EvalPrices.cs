using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Kaiyuan.Cli.Eval;

/// <summary>One API model's list price in USD per million tokens, and where it came from.</summary>
internal sealed record ModelPrice(string Model, double InputPerMillion, double OutputPerMillion, string AsOf, string Origin);

/// <summary>
/// API prices: the shipped table (Eval/prices.json, dated by its <c>as_of</c>) with a user's file laid over it
/// (<c>KAIYUAN_HOME/prices.json</c>, or <c>--prices FILE</c>): the user's entries add models or replace shipped ones.
/// A model name matches an entry exactly, or after dropping a provider prefix ("openai/gpt-4o") and a trailing snapshot
/// suffix ("-2025-04-14", "-20250514", "-0905", "-latest"); never by a shorter name, so an unlisted model gets no price
/// instead of a neighbour's.
/// </summary>
internal sealed partial class EvalPrices
{
    private readonly Dictionary<string, ModelPrice> _prices;

    private EvalPrices(Dictionary<string, ModelPrice> prices, string shippedAsOf)
    {
        _prices = prices;
        ShippedAsOf = shippedAsOf;
    }

    /// <summary>The date of the shipped table.</summary>
    public string ShippedAsOf { get; }

    public int Count => _prices.Count;

    /// <summary>The file a user's prices are read from when no <c>--prices</c> is given: <c>KAIYUAN_HOME/prices.json</c> (else <c>~/.kaiyuan/prices.json</c>).</summary>
    public static string UserFile => Path.Combine(Kaiyuan.Store.ModelStore.DefaultRoot(), "prices.json");

    /// <summary>
    /// The shipped prices with <paramref name="overrides"/> laid over them; when it is null, <see cref="UserFile"/> if it exists.
    /// A named file that is missing or malformed is an error naming the file.
    /// </summary>
    public static EvalPrices Load(string? overrides = null)
    {
        using var shipped = typeof(EvalPrices).Assembly.GetManifestResourceStream("Kaiyuan.Cli.Eval.prices.json")
                            ?? throw new InvalidOperationException("the shipped price table is missing from the build");
        var prices = new Dictionary<string, ModelPrice>(StringComparer.OrdinalIgnoreCase);
        string asOf = Read(shipped, "shipped prices.json", "shipped", prices);
        string? file = overrides ?? (File.Exists(UserFile) ? UserFile : null);
        if (file is not null)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"{file}: no such price file");
            using var stream = File.OpenRead(file);
            Read(stream, file, "user", prices);
        }
        return new EvalPrices(prices, asOf);
    }

    /// <summary>Reads a price file into <paramref name="into"/>; returns its <c>as_of</c>. Errors name <paramref name="name"/>.</summary>
    private static string Read(Stream stream, string name, string origin, Dictionary<string, ModelPrice> into)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(stream, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new FormatException($"{name}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("models", out var models) || models.ValueKind != JsonValueKind.Object)
                throw new FormatException($"{name}: expected {{\"as_of\": \"YYYY-MM-DD\", \"models\": {{\"MODEL\": {{\"input\": USD_PER_1M, \"output\": USD_PER_1M}}}}}}");
            // A user's file may leave out its date: its prices are then reported as the file's.
            string asOf = root.TryGetProperty("as_of", out var date) && date.ValueKind == JsonValueKind.String ? date.GetString()! : Path.GetFileName(name);
            foreach (var model in models.EnumerateObject())
            {
                if (model.Value.ValueKind != JsonValueKind.Object)
                    throw new FormatException($"{name}: model '{model.Name}': expected {{\"input\": USD_PER_1M, \"output\": USD_PER_1M}}");
                double input = Price(model, "input", name), output = Price(model, "output", name);
                // An entry's own date (its source's) wins over the file's.
                string entryDate = model.Value.TryGetProperty("as_of", out var own) && own.ValueKind == JsonValueKind.String ? own.GetString()! : asOf;
                into[model.Name] = new ModelPrice(model.Name, input, output, entryDate, origin);
            }
            return asOf;
        }
    }

    private static double Price(JsonProperty model, string key, string file)
    {
        if (!model.Value.TryGetProperty(key, out var value) || value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double usd) || usd < 0 || !double.IsFinite(usd))
            throw new FormatException($"{file}: model '{model.Name}': \"{key}\" must be a non-negative number of USD per 1M tokens");
        return usd;
    }

    /// <summary>The price of <paramref name="model"/> (an API's model name), or null when neither it nor its base name is listed.</summary>
    public ModelPrice? Find(string model)
    {
        foreach (string candidate in Candidates(model))
            if (_prices.TryGetValue(candidate, out var price)) return price;
        return null;
    }

    /// <summary>The names tried in turn: as given, without a provider prefix, then each without a snapshot suffix.</summary>
    internal static IEnumerable<string> Candidates(string model)
    {
        string name = model.Trim();
        yield return name;
        int slash = name.LastIndexOf('/');
        if (slash >= 0 && slash < name.Length - 1)
        {
            name = name[(slash + 1)..];
            yield return name;
        }
        string stripped = Snapshot().Replace(name, "");
        if (stripped.Length > 0 && stripped != name) yield return stripped;
    }

    [GeneratedRegex(@"-(latest|\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$", RegexOptions.CultureInvariant)]
    private static partial Regex Snapshot();

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Count} prices as of {ShippedAsOf}");
}
