using System.Globalization;
using System.Text.Json;
using System.Text.Unicode;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>Typed, validated access to a JSON request body; every problem is a 400 that names the parameter.</summary>
internal sealed class JsonRequest(JsonElement root)
{
    public JsonElement Root { get; } = root;

    public static async Task<JsonRequest> ReadAsync(HttpRequest request, CancellationToken cancel)
    {
        if (request.ContentLength is 0) throw RequestException.BadRequest("the request body is empty");
        // The body is read whole (its size is bounded by the server's request body limit) to check its UTF-8 first: the
        // JSON reader leaves a string's bytes unchecked until the string is read, deep in a handler, which would be a 500.
        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body, cancel).ConfigureAwait(false);
        var bytes = body.GetBuffer().AsMemory(0, (int)body.Length);
        if (!Utf8.IsValid(bytes.Span)) throw RequestException.BadRequest("the request body is not valid UTF-8", code: "invalid_json");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw RequestException.BadRequest($"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("the request body must be a JSON object", code: "invalid_json");
        if (FindUnreadableString(doc.RootElement) is { } path)
            throw RequestException.BadRequest($"the request body has a string that is not valid UTF-16 (an escaped lone surrogate) at ${path}", code: "invalid_json");
        request.HttpContext.Response.RegisterForDispose(doc);
        return new JsonRequest(doc.RootElement);
    }

    /// <summary>
    /// The path of a string or property name whose escapes decode to a lone surrogate (<c>"\ud800"</c>), which the JSON
    /// reader accepts but cannot turn into a string; null when every one reads. The document's depth is bounded by the reader.
    /// </summary>
    private static string? FindUnreadableString(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                try
                {
                    _ = e.GetString();
                    return null;
                }
                catch (InvalidOperationException)
                {
                    return "";
                }
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (FindUnreadableString(item) is { } rest) return $"[{i}]{rest}";
                    i++;
                }
                return null;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = p.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return "";
                    }
                    if (FindUnreadableString(p.Value) is { } rest) return $".{name}{rest}";
                }
                return null;
            default:
                return null;
        }
    }

    public bool Has(string name) => Root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    // Something other than an object (an array item that should have been one) has no members, rather than throwing.
    public JsonElement? Get(string name) =>
        Root.ValueKind == JsonValueKind.Object && Root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.String) throw RequestException.BadRequest($"'{name}' must be a string", name);
        return v.GetString();
    }

    public bool Bool(string name, bool fallback)
    {
        if (Get(name) is not { } v) return fallback;
        if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw RequestException.BadRequest($"'{name}' must be a boolean", name);
        return v.GetBoolean();
    }

    public double? Number(string name, double min, double max) => ReadNumber(Get(name), name, min, max);

    public int? Int(string name, int min, int max)
    {
        var d = Number(name, min, max);
        if (d is null) return null;
        if (d != Math.Floor(d.Value)) throw RequestException.BadRequest($"'{name}' must be an integer", name);
        return (int)d.Value;
    }

    public static double? ReadNumber(JsonElement? element, string name, double min, double max)
    {
        if (element is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d)) throw RequestException.BadRequest($"'{name}' must be a number", name);
        if (d < min || d > max)
            throw RequestException.BadRequest($"'{name}' must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}", name);
        return d;
    }

    /// <summary>A string or an array of strings (OpenAI's "stop").</summary>
    public IReadOnlyList<string> Strings(string name, int maxCount)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw RequestException.BadRequest($"'{name}' must be a string or an array of strings", name);
        var list = v.EnumerateArray().Select(e => e.GetString()!).Where(s => s.Length > 0).ToList();
        if (list.Count > maxCount) throw RequestException.BadRequest($"'{name}' takes at most {maxCount} entries", name);
        return list;
    }

    /// <summary>A seed: any non-negative or negative 64-bit integer.</summary>
    public ulong? Seed(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw RequestException.BadRequest($"'{name}' must be an integer", name);
        if (v.TryGetInt64(out long l)) return unchecked((ulong)l);
        if (v.TryGetUInt64(out ulong u)) return u;
        throw RequestException.BadRequest($"'{name}' must be an integer", name);
    }
}
