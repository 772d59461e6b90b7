using System.Globalization;

namespace Kaiyuan.Gguf;

/// <summary>One metadata value: a boxed scalar, a string, or a <see cref="GgufArray"/>.</summary>
public readonly record struct GgufValue(GgufValueType Type, object Value)
{
    /// <summary>A <see cref="GgufValueType.String"/> value.</summary>
    public static GgufValue Of(string s) => new(GgufValueType.String, s);
    /// <summary>A <see cref="GgufValueType.UInt32"/> value.</summary>
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    /// <summary>A <see cref="GgufValueType.Int32"/> value.</summary>
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    /// <summary>A <see cref="GgufValueType.UInt64"/> value.</summary>
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    /// <summary>A <see cref="GgufValueType.Float32"/> value.</summary>
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    /// <summary>A <see cref="GgufValueType.Bool"/> value.</summary>
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    /// <summary>A <see cref="GgufValueType.Array"/> value.</summary>
    public static GgufValue Of(GgufArray a) => new(GgufValueType.Array, a);

    /// <summary>The value as text: strings as they are, numbers in the invariant culture (floats round-trippable), arrays abbreviated.</summary>
    public override string ToString() => Value switch
    {
        string s => s,
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        GgufArray a => a.ToString(),
        _ => Convert.ToString(Value, CultureInfo.InvariantCulture) ?? "",
    };
}

/// <summary>
/// A metadata array. Elements live in a typed .NET array: <c>byte[]</c>, <c>int[]</c>, <c>float[]</c>, <c>string[]</c>,
/// <c>bool[]</c>, … or <c>GgufArray[]</c> for nested arrays.
/// </summary>
public sealed class GgufArray(GgufValueType elementType, Array items)
{
    /// <summary>The type of every element.</summary>
    public GgufValueType ElementType { get; } = elementType;
    /// <summary>The elements, in a typed .NET array.</summary>
    public Array Items { get; } = items;
    /// <summary>Number of elements.</summary>
    public int Count => Items.Length;

    /// <summary>A string array over <paramref name="items"/> (held, not copied).</summary>
    public static GgufArray Of(string[] items) => new(GgufValueType.String, items);
    /// <summary>A float32 array over <paramref name="items"/> (held, not copied).</summary>
    public static GgufArray Of(float[] items) => new(GgufValueType.Float32, items);
    /// <summary>An int32 array over <paramref name="items"/> (held, not copied).</summary>
    public static GgufArray Of(int[] items) => new(GgufValueType.Int32, items);

    /// <summary>The element type, the count and the first 8 elements, for display.</summary>
    public override string ToString()
    {
        const int Shown = 8;
        var head = Items.Cast<object>().Take(Shown).Select(o => o is string s ? $"\"{s}\"" : Convert.ToString(o, CultureInfo.InvariantCulture));
        return $"[{ElementType} × {Count}: {string.Join(", ", head)}{(Count > Shown ? ", …" : "")}]";
    }
}

/// <summary>Ordered GGUF key/value metadata with typed accessors that explain what is missing or mistyped.</summary>
public sealed class GgufMetadata
{
    private readonly Dictionary<string, GgufValue> _values = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    /// <summary>Number of keys.</summary>
    public int Count => _order.Count;
    /// <summary>The keys in order (as read from the file, or as first set).</summary>
    public IEnumerable<string> Keys => _order;
    /// <summary>The key/value pairs in key order.</summary>
    public IEnumerable<KeyValuePair<string, GgufValue>> Entries => _order.Select(k => new KeyValuePair<string, GgufValue>(k, _values[k]));

    /// <summary>True when <paramref name="key"/> is present (keys are case-sensitive).</summary>
    public bool Contains(string key) => _values.ContainsKey(key);
    /// <summary>The value of <paramref name="key"/> whatever its type; false when the key is absent.</summary>
    public bool TryGet(string key, out GgufValue value) => _values.TryGetValue(key, out value);

    /// <summary>Adds or replaces a value (replacing keeps the key's original position).</summary>
    public void Set(string key, GgufValue value)
    {
        if (!_values.ContainsKey(key)) _order.Add(key);
        _values[key] = value;
    }

    /// <summary>Removes a key and its value; false when the key was absent.</summary>
    public bool Remove(string key) => _values.Remove(key) && _order.Remove(key);

    /// <summary>The value of <paramref name="key"/> whatever its type; throws when the key is missing.</summary>
    public GgufValue Get(string key) =>
        _values.TryGetValue(key, out var v) ? v : throw new GgufMetadataException($"metadata key '{key}' is missing");

    /// <summary>A string value; throws when the key is missing or holds another type.</summary>
    public string GetString(string key) => As<string>(key, GgufValueType.String);
    /// <summary>A string value, or null when the key is absent; throws when it holds another type.</summary>
    public string? GetStringOrNull(string key) => _values.ContainsKey(key) ? GetString(key) : null;
    /// <summary>A boolean value; throws when the key is missing or holds another type.</summary>
    public bool GetBool(string key) => As<bool>(key, GgufValueType.Bool);
    /// <summary>A boolean value, or <paramref name="fallback"/> when the key is absent.</summary>
    public bool GetBool(string key, bool fallback) => _values.ContainsKey(key) ? GetBool(key) : fallback;

    /// <summary>Any integer type, range-checked into a long (models write u32, i32 or u64 for the same key).</summary>
    public long GetInteger(string key)
    {
        var v = Get(key);
        return v.Value switch
        {
            byte b => b,
            sbyte sb => sb,
            ushort us => us,
            short s => s,
            uint ui => ui,
            int i => i,
            long l => l,
            ulong ul when ul <= long.MaxValue => (long)ul,
            _ => throw WrongType(key, v, "an integer"),
        };
    }

    /// <summary>As <see cref="GetInteger(string)"/>, or <paramref name="fallback"/> when the key is absent.</summary>
    public long GetInteger(string key, long fallback) => _values.ContainsKey(key) ? GetInteger(key) : fallback;

    /// <summary>An integer that must fit an int and be at least <paramref name="min"/>.</summary>
    public int GetInt32(string key, int min = 0)
    {
        long v = GetInteger(key);
        if (v < min || v > int.MaxValue) throw new GgufMetadataException($"metadata key '{key}' = {v} is out of range");
        return (int)v;
    }

    /// <summary>As <see cref="GetInt32(string, int)"/>, or <paramref name="fallback"/> as it is when the key is absent.</summary>
    public int GetInt32(string key, int fallback, int min) => _values.ContainsKey(key) ? GetInt32(key, min) : fallback;

    /// <summary>A float32 or float64 value.</summary>
    public float GetFloat(string key)
    {
        var v = Get(key);
        return v.Value switch
        {
            float f => f,
            double d => (float)d,
            _ => throw WrongType(key, v, "a float"),
        };
    }

    /// <summary>As <see cref="GetFloat(string)"/>, or <paramref name="fallback"/> when the key is absent.</summary>
    public float GetFloat(string key, float fallback) => _values.ContainsKey(key) ? GetFloat(key) : fallback;

    /// <summary>An array value; throws when the key is missing or holds another type.</summary>
    public GgufArray GetArray(string key) => As<GgufArray>(key, GgufValueType.Array);
    /// <summary>An array value, or null when the key is absent; throws when it holds another type.</summary>
    public GgufArray? GetArrayOrNull(string key) => _values.ContainsKey(key) ? GetArray(key) : null;

    /// <summary>An array of strings; throws when the key is missing or holds anything else.</summary>
    public string[] GetStringArray(string key) => ArrayOf<string>(key, GgufValueType.String);
    /// <summary>An array of float32 (not float64); throws when the key is missing or holds anything else.</summary>
    public float[] GetFloatArray(string key) => ArrayOf<float>(key, GgufValueType.Float32);

    /// <summary>An array of any integer element type, as ints.</summary>
    public int[] GetInt32Array(string key)
    {
        var a = GetArray(key);
        var result = new int[a.Count];
        for (int i = 0; i < result.Length; i++)
        {
            object o = a.Items.GetValue(i)!;
            long v = o switch
            {
                byte b => b,
                sbyte sb => sb,
                ushort us => us,
                short s => s,
                uint ui => ui,
                int n => n,
                long l => l,
                ulong ul when ul <= long.MaxValue => (long)ul,
                _ => throw new GgufMetadataException($"metadata key '{key}' is an array of {a.ElementType}, expected integers"),
            };
            if (v < int.MinValue || v > int.MaxValue) throw new GgufMetadataException($"metadata key '{key}'[{i}] = {v} is out of range");
            result[i] = (int)v;
        }
        return result;
    }

    private T As<T>(string key, GgufValueType expected)
    {
        var v = Get(key);
        return v.Value is T t ? t : throw WrongType(key, v, expected.ToString());
    }

    private T[] ArrayOf<T>(string key, GgufValueType elementType)
    {
        var a = GetArray(key);
        return a.Items as T[] ?? throw new GgufMetadataException(
            $"metadata key '{key}' is an array of {a.ElementType}, expected an array of {elementType}");
    }

    private static GgufMetadataException WrongType(string key, GgufValue v, string expected) =>
        new($"metadata key '{key}' holds {v.Type}, expected {expected}");
}
