using System.Text.Json;
using System.Text.Json.Nodes;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Constraints;

/// <summary>Options of the JSON Schema compiler.</summary>
internal sealed record JsonSchemaOptions
{
    /// <summary>
    /// Longest run of spaces and tabs allowed between JSON tokens, after at most two line breaks (pretty-printed
    /// indentation fits, and so does the blank line models put after a reasoning block; a sampled model cannot loop on
    /// whitespace, nor fill an answer with blank lines).
    /// </summary>
    public int MaxWhitespace { get; init; } = 20;
}

/// <summary>
/// Compiles JSON Schema (draft 4 to 2020-12, OpenAPI's <c>nullable</c>) to a grammar over the bytes of a JSON
/// document, so that every output the grammar allows validates against the schema. Properties come in definition
/// order (optional ones may be left out; other properties, where allowed, only after them); whitespace between
/// tokens is bounded. What cannot be enforced exactly is a <see cref="GrammarException"/> naming the keyword and its
/// JSON pointer, never a silently looser grammar.
/// </summary>
internal static class JsonSchemaGrammar
{
    /// <summary>The grammar of documents valid against the schema (JSON text; parse errors are <see cref="GrammarException"/>).</summary>
    public static Grammar Compile(string schemaJson, JsonSchemaOptions? options = null)
    {
        using var doc = ParseDocument(schemaJson);
        return Compile(doc.RootElement, options);
    }

    /// <summary>The grammar of documents valid against the schema.</summary>
    public static Grammar Compile(JsonElement schema, JsonSchemaOptions? options = null)
    {
        options ??= new JsonSchemaOptions();
        var grammar = new Grammar();
        var node = AddTo(grammar, schema, options);
        var ws = Whitespace(options);
        grammar.Root = grammar.AddRule("root", Seq(ws, node, ws));
        return grammar;
    }

    /// <summary>Any JSON value, whitespace bounded as in <see cref="JsonSchemaOptions.MaxWhitespace"/>.</summary>
    public static Grammar AnyValue(JsonSchemaOptions? options = null) => Compile("true", options);

    /// <summary>Any JSON object (for <c>response_format: json_object</c>).</summary>
    public static Grammar AnyObject(JsonSchemaOptions? options = null) => Compile("{\"type\":\"object\"}", options);

    /// <summary>
    /// The grammar node of a schema inside a larger grammar (tool-call arguments embedded in a model's tool-call
    /// syntax): adds the schema's rules to <paramref name="grammar"/> and returns the node for the value (no
    /// surrounding whitespace).
    /// </summary>
    public static GrammarNode AddTo(Grammar grammar, JsonElement schema, JsonSchemaOptions? options = null)
    {
        try
        {
            return new SchemaCompiler(grammar, schema, options ?? new JsonSchemaOptions()).CompileRoot();
        }
        catch (InvalidOperationException e)
        {
            // A keyword whose value has the wrong JSON type somewhere the compiler did not check it first.
            throw new GrammarException($"malformed schema: {e.Message}");
        }
    }

    internal static GrammarNode Whitespace(JsonSchemaOptions options)
    {
        int max = Math.Max(0, options.MaxWhitespace);
        var blanks = Repeat(Chars(CodepointSet.Of(" \t")), 0, max);
        if (max == 0) return Empty;
        var lineBreak = Alt(Literal("\n"), Literal("\r\n"), Literal("\r"));
        return Seq(Repeat(lineBreak, 0, 2), blanks);
    }

    internal static JsonDocument ParseDocument(string json)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 512 });
        }
        catch (JsonException e)
        {
            throw new GrammarException($"the schema is not valid JSON: {e.Message}");
        }
    }
}

/// <summary>A schema location: an element of the schema document (or of a schema derived from it), identified by its pointer.</summary>
internal sealed class Loc(JsonElement element, string id, string where, Uri baseUri)
{
    public JsonElement El { get; } = element;
    /// <summary>Unique key: the JSON pointer for the document, a prefixed one for derived schemas.</summary>
    public string Id { get; } = id;
    /// <summary>Where to point a message: "#" + the JSON pointer (of the origin, for derived schemas).</summary>
    public string Where { get; } = where;
    public Uri Base { get; } = baseUri;
    public Sch? Parsed { get; set; }
    public List<List<Loc>>? Expanded { get; set; }
    public bool Expanding { get; set; }
    public int ExpandingAt { get; set; }
    public Loc? Negated { get; set; }
    public override string ToString() => Id;
}

/// <summary>A conjunction of schema locations (all must hold); the empty one allows everything.</summary>
internal sealed class Conj
{
    public static readonly Conj True = new([]);
    public IReadOnlyList<Loc> Locs { get; }
    public string Key { get; }

    private Conj(List<Loc> locs)
    {
        Locs = locs;
        Key = string.Join("\u0001", locs.Select(l => l.Id));
    }

    public static Conj Of(IEnumerable<Loc> locs)
    {
        var list = locs.DistinctBy(l => l.Id).OrderBy(l => l.Id, StringComparer.Ordinal).ToList();
        return list.Count == 0 ? True : new Conj(list);
    }

    public static Conj Of(Loc loc) => Of([loc]);
    public Conj And(Conj other) => other.Locs.Count == 0 ? this : Locs.Count == 0 ? other : Of(Locs.Concat(other.Locs));
}

/// <summary>
/// A set of keys: matching one of AnyPatterns (none: any key), not one of NotNames, matching none of NotPatterns, and
/// (when KeyNot is set) not a valid instance of that schema.
/// </summary>
internal sealed record MemberKeys(List<string> AnyPatterns, HashSet<string> NotNames, List<string> NotPatterns, Loc? KeyNot);

/// <summary>The object keywords of one schema: its properties, patterns and what other keys may hold.</summary>
internal sealed record ObjPart(List<(string Name, Loc Schema)> Props, List<(string Pattern, Loc Schema, string Where)> Patterns, Loc? Additional);

/// <summary>
/// The plain (non-combinator) constraints of a schema, or of several merged: what an instance must satisfy, per type.
/// </summary>
internal sealed class Sch
{
    public const int TNull = 1, TBool = 2, TObj = 4, TArr = 8, TStr = 16, TInt = 32, TFrac = 64, TAll = 127, TNum = TInt | TFrac;

    public int Types = TAll;
    public string Where = "#";
    public List<List<JsonElement>> Enums = [];
    public List<JsonElement> NotValues = [];
    // strings
    public long MinLen;
    public long MaxLen = -1;
    public List<(string Pattern, string Where)> Patterns = [];
    public List<(string Pattern, string Where)> NotPatterns = [];
    public List<(string Format, string Where)> Formats = [];
    // numbers
    public Dec? Min, Max;
    public bool MinExcl, MaxExcl;
    public List<Dec> Steps = [];
    // arrays
    public List<Conj> Prefix = [];
    public Conj Rest = Conj.True;
    public long MinItems;
    public long MaxItems = -1;
    public string? UniqueWhere;
    /// <summary>Some item satisfies each of these (contains).</summary>
    public List<(Conj Schema, string Where)> Contains = [];
    // objects
    public List<ObjPart> Parts = [];
    public List<string> Required = [];
    public long MinProps;
    public long MaxProps = -1;
    public List<(Loc Schema, string Where)> PropertyNames = [];
    /// <summary>"Some member has a key in Keys and a value in Value (null: any)": negated object keywords.</summary>
    public List<(MemberKeys Keys, Loc? Value, string Where)> Exists = [];

    public void LowerBound(Dec value, bool exclusive)
    {
        if (Min is not { } m || value > m) { Min = value; MinExcl = exclusive; }
        else if (value.CompareTo(m) == 0) MinExcl |= exclusive;
    }

    public void UpperBound(Dec value, bool exclusive)
    {
        if (Max is not { } m || value < m) { Max = value; MaxExcl = exclusive; }
        else if (value.CompareTo(m) == 0) MaxExcl |= exclusive;
    }

    /// <summary>No constraint at all.</summary>
    public bool IsTrivial =>
        Types == TAll && Enums.Count == 0 && NotValues.Count == 0 && MinLen == 0 && MaxLen < 0 && Patterns.Count == 0 &&
        NotPatterns.Count == 0 && Formats.Count == 0 && Min is null && Max is null && Steps.Count == 0 && Prefix.Count == 0 &&
        Rest.Locs.Count == 0 && MinItems == 0 && MaxItems < 0 && UniqueWhere is null && Parts.Count == 0 && Required.Count == 0 &&
        MinProps == 0 && MaxProps < 0 && PropertyNames.Count == 0 && Exists.Count == 0 && Contains.Count == 0;

    /// <summary>Adds the constraints of <paramref name="o"/> (a conjunction).</summary>
    public void Add(Sch o)
    {
        Types &= o.Types;
        Enums.AddRange(o.Enums);
        NotValues.AddRange(o.NotValues);
        MinLen = Math.Max(MinLen, o.MinLen);
        if (o.MaxLen >= 0) MaxLen = MaxLen < 0 ? o.MaxLen : Math.Min(MaxLen, o.MaxLen);
        Patterns.AddRange(o.Patterns);
        NotPatterns.AddRange(o.NotPatterns);
        foreach (var f in o.Formats) if (!Formats.Any(x => x.Format == f.Format)) Formats.Add(f);
        if (o.Min is { } lo) LowerBound(lo, o.MinExcl);
        if (o.Max is { } hi) UpperBound(hi, o.MaxExcl);
        Steps.AddRange(o.Steps);
        int n = Math.Max(Prefix.Count, o.Prefix.Count);
        var prefix = new List<Conj>(n);
        for (int i = 0; i < n; i++)
            prefix.Add((i < Prefix.Count ? Prefix[i] : Rest).And(i < o.Prefix.Count ? o.Prefix[i] : o.Rest));
        Prefix = prefix;
        Rest = Rest.And(o.Rest);
        MinItems = Math.Max(MinItems, o.MinItems);
        if (o.MaxItems >= 0) MaxItems = MaxItems < 0 ? o.MaxItems : Math.Min(MaxItems, o.MaxItems);
        UniqueWhere ??= o.UniqueWhere;
        Contains.AddRange(o.Contains);
        Parts.AddRange(o.Parts);
        foreach (var r in o.Required) if (!Required.Contains(r)) Required.Add(r);
        MinProps = Math.Max(MinProps, o.MinProps);
        if (o.MaxProps >= 0) MaxProps = MaxProps < 0 ? o.MaxProps : Math.Min(MaxProps, o.MaxProps);
        PropertyNames.AddRange(o.PropertyNames);
        Exists.AddRange(o.Exists);
    }
}

/// <summary>
/// One compilation: schema locations, <c>$ref</c> resolution, the expansion of combinators into alternatives of
/// merged plain schemas (<see cref="Sch"/>), and the grammar each of those becomes.
/// </summary>
internal sealed partial class SchemaCompiler
{
    public const int MaxDepth = 128;
    public const int MaxEnumValues = 10_000;
    public const int MaxTerms = 1_024;
    /// <summary>Counts beyond this (maxLength, maxItems, maxProperties) are cut to it: longer output is refused, never wrongly allowed.</summary>
    public const int MaxCount = 10_000;
    private const string InternalRoot = "https://kaiyuan.invalid/schema.json";
    private const string LocRef = "kaiyuan-loc:";
    private const string NegRef = "kaiyuan-not:";
    private const string PrivatePrefix = "$kaiyuan-";

    private readonly Grammar _g;
    private readonly JsonSchemaOptions _options;
    private readonly GrammarNode _ws, _sep, _colon;
    private readonly Loc _root;
    private readonly Dictionary<string, Loc> _locs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Loc> _resources = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Loc> _anchors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Entry> _conjMemo = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GrammarNode> _nodeMemo = new(StringComparer.Ordinal);
    private readonly bool _refAlone;
    private int _derived;
    private int? _anyValueRule;
    private int _work;

    /// <summary>How many property/item descents the current checks are in (see <see cref="PendingExpansion"/>).</summary>
    private int _descent;

    /// <summary>A check reached a schema whose expansion is still under way (recursion): the check answers conservatively.</summary>
    private sealed class PendingExpansion : Exception;

    private sealed class Entry
    {
        public GrammarNode? Node;
        public int Rule = -1;
    }

    public SchemaCompiler(Grammar grammar, JsonElement schema, JsonSchemaOptions options)
    {
        _g = grammar;
        _options = options;
        // Whitespace and the separators as shared rules: a call instead of MaxWhitespace states at every use.
        var ws = JsonSchemaGrammar.Whitespace(options);
        _ws = options.MaxWhitespace <= 2 ? ws : SharedRule($"jsonschema:ws{options.MaxWhitespace}", ws);
        _sep = SharedRule($"jsonschema:comma{options.MaxWhitespace}", Seq(ws, Literal(","), ws));
        _colon = SharedRule($"jsonschema:colon{options.MaxWhitespace}", Seq(ws, Literal(":"), ws));
        var rootBase = new Uri(InternalRoot);
        if (schema.ValueKind == JsonValueKind.Object && IdOf(schema) is { } id && TryUri(rootBase, id, out var declared))
            rootBase = declared;
        CheckDepth(schema);
        _root = new Loc(schema, "", "#", rootBase);
        _refAlone = schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$schema", out var dialect) &&
            dialect.ValueKind == JsonValueKind.String && System.Text.RegularExpressions.Regex.IsMatch(dialect.GetString()!, @"draft-0[3-7]\b");
        _locs[""] = _root;
        _resources[InternalRoot] = _root;
        RegisterResources(_root, 0);
    }

    /// <summary>Refuses documents nested deeper than any real schema (the compiler recurses on nesting), without recursing.</summary>
    private static void CheckDepth(JsonElement schema)
    {
        var stack = new Stack<(JsonElement, int)>();
        stack.Push((schema, 0));
        while (stack.Count > 0)
        {
            var (el, depth) = stack.Pop();
            if (depth > 4 * MaxDepth) throw new GrammarException($"the schema is nested deeper than {4 * MaxDepth} levels");
            if (el.ValueKind == JsonValueKind.Object) foreach (var p in el.EnumerateObject()) stack.Push((p.Value, depth + 1));
            else if (el.ValueKind == JsonValueKind.Array) foreach (var item in el.EnumerateArray()) stack.Push((item, depth + 1));
        }
    }

    /// <summary>A rule of fixed meaning, defined once per grammar (several schemas may be added to one grammar).</summary>
    private GrammarNode SharedRule(string name, GrammarNode body)
    {
        if (_g.Find(name) is { } existing && _g.IsDefined(existing)) return Ref(existing);
        return Ref(_g.AddRule(name, body));
    }

    /// <summary>The node of the whole schema's value; a schema no value satisfies is an error (nothing to generate).</summary>
    public GrammarNode CompileRoot()
    {
        var node = Emit(Conj.Of(_root), 0);
        if (IsNothing(node)) throw new GrammarException("the schema at # allows no JSON value at all");
        return node;
    }

    // ---------------------------------------------------------------- locations and $ref

    private static string? IdOf(JsonElement el)
    {
        if (el.TryGetProperty("$id", out var id) && id.ValueKind == JsonValueKind.String) return id.GetString();
        if (el.TryGetProperty("id", out id) && id.ValueKind == JsonValueKind.String) return id.GetString();
        return null;
    }

    private static bool TryUri(Uri baseUri, string reference, out Uri result)
    {
        try
        {
            result = new Uri(baseUri, reference);
            return true;
        }
        catch (UriFormatException)
        {
            result = baseUri;
            return false;
        }
    }

    private static string WithoutFragment(Uri uri) => uri.GetLeftPart(UriPartial.Query);

    /// <summary>Finds every <c>$id</c> and <c>$anchor</c> in the document so refs to them resolve here.</summary>
    private void RegisterResources(Loc loc, int depth)
    {
        if (depth > 2 * MaxDepth) return;
        var el = loc.El;
        if (el.ValueKind == JsonValueKind.Object)
        {
            string doc = WithoutFragment(loc.Base);
            _resources.TryAdd(doc, loc);
            if (IdOf(el) is { } id && id.StartsWith('#') && id.Length > 1) _anchors.TryAdd(doc + id, loc);
            if (el.TryGetProperty("$anchor", out var anchor) && anchor.ValueKind == JsonValueKind.String)
                _anchors.TryAdd(doc + "#" + anchor.GetString(), loc);
            foreach (var p in el.EnumerateObject())
                if (p.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Array && !IsValueKeyword(p.Name))
                    RegisterResources(Child(loc, p.Name), depth + 1);
        }
        else if (el.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var _ in el.EnumerateArray()) RegisterResources(Child(loc, (i++).ToString(System.Globalization.CultureInfo.InvariantCulture)), depth + 1);
        }
    }

    /// <summary>Keywords whose value is JSON data, not schemas (their "$id" keys mean nothing).</summary>
    private static bool IsValueKeyword(string name) => name is "enum" or "const" or "default" or "examples" or "example";

    private static string EscapeToken(string token) => token.Replace("~", "~0").Replace("/", "~1");

    /// <summary>The location of member <paramref name="token"/> (object key or array index) of <paramref name="parent"/>.</summary>
    private Loc Child(Loc parent, string token)
    {
        string id = parent.Id + "/" + EscapeToken(token);
        if (_locs.TryGetValue(id, out var loc)) return loc;
        JsonElement el;
        if (parent.El.ValueKind == JsonValueKind.Object) el = parent.El.GetProperty(token);
        else el = parent.El[int.Parse(token, System.Globalization.CultureInfo.InvariantCulture)];
        var baseUri = parent.Base;
        if (el.ValueKind == JsonValueKind.Object && IdOf(el) is { } sub && !sub.StartsWith('#') && TryUri(baseUri, sub, out var u)) baseUri = u;
        string where = id.StartsWith('!') ? parent.Where : "#" + id;
        loc = new Loc(el, id, where, baseUri);
        _locs[id] = loc;
        return loc;
    }

    private Loc? Navigate(Loc start, string pointer)
    {
        if (pointer.Length == 0) return start;
        if (pointer[0] != '/') return null;
        var loc = start;
        foreach (var raw in pointer[1..].Split('/'))
        {
            string token = raw.Replace("~1", "/").Replace("~0", "~");
            if (loc.El.ValueKind == JsonValueKind.Object)
            {
                if (!loc.El.TryGetProperty(token, out _)) return null;
            }
            else if (loc.El.ValueKind == JsonValueKind.Array)
            {
                if (!int.TryParse(token, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i) || i >= loc.El.GetArrayLength()) return null;
                token = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
            else return null;
            loc = Child(loc, token);
        }
        return loc;
    }

    /// <summary>The target of <c>$ref</c> <paramref name="reference"/> written at <paramref name="from"/>.</summary>
    private Loc Resolve(Loc from, string reference)
    {
        if (from.Id.StartsWith('!'))
        {
            if (reference.StartsWith(LocRef, StringComparison.Ordinal)) return _locs[reference[LocRef.Length..]];
            if (reference.StartsWith(NegRef, StringComparison.Ordinal)) return Negate(_locs[reference[NegRef.Length..]]);
        }
        if (!TryUri(from.Base, reference, out var uri))
            throw new GrammarException($"$ref '{reference}' at {from.Where} is not a valid URI reference");
        string doc = WithoutFragment(uri);
        string fragment = Uri.UnescapeDataString(uri.Fragment.StartsWith('#') ? uri.Fragment[1..] : uri.Fragment);
        if (!_resources.TryGetValue(doc, out var resource))
            throw new GrammarException($"$ref '{reference}' at {from.Where} points outside the schema (remote references are not supported)");
        Loc? target;
        if (fragment.Length == 0) target = resource;
        else if (fragment[0] == '/') target = Navigate(resource, fragment) ?? (resource != _root ? Navigate(_root, fragment) : null);
        else target = _anchors.GetValueOrDefault(doc + "#" + fragment);
        return target ?? throw new GrammarException($"$ref '{reference}' at {from.Where} points to nothing in the schema");
    }

    /// <summary>A schema made up here (negations, dependencies) as a location of its own.</summary>
    private Loc Derived(JsonNode schema, Loc origin)
    {
        var el = JsonSerializer.SerializeToElement(schema);
        string id = "!" + (_derived++).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var loc = new Loc(el, id, origin.Where, origin.Base);
        _locs[id] = loc;
        return loc;
    }

    private static JsonObject RefTo(Loc loc) => new() { ["$ref"] = LocRef + loc.Id };
    private static JsonObject NotRefTo(Loc loc) => new() { ["$ref"] = NegRef + loc.Id };

    private void Tick(string where)
    {
        if (++_work > 2_000_000)
            throw new GrammarException($"the schema takes too long to compile (stopped at {where})");
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- plain keywords of one location

    private static readonly HashSet<string> Unsupported = new(StringComparer.Ordinal)
    {
        "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef",
    };

    private static GrammarException Bad(string keyword, Loc loc, string? why = null) => Bad(keyword, loc.Where, why);

    private static GrammarException Bad(string keyword, string where, string? why = null) =>
        new($"unsupported keyword '{keyword}' at {where}{(why is null ? "" : ": " + why)}");

    private static GrammarException Invalid(string keyword, Loc loc, string why) =>
        new($"invalid '{keyword}' at {loc.Where}: {why}");

    private static int TypeBits(string name, Loc loc) => name switch
    {
        "null" => Sch.TNull,
        "boolean" => Sch.TBool,
        "object" => Sch.TObj,
        "array" => Sch.TArr,
        "string" => Sch.TStr,
        "integer" => Sch.TInt,
        "number" => Sch.TNum,
        "any" => Sch.TAll,
        _ => throw Invalid("type", loc, $"unknown type '{name}'"),
    };

    private static long Count(JsonElement v, string keyword, Loc loc)
    {
        if (v.ValueKind == JsonValueKind.Number && Dec.TryParse(v.GetRawText(), out var d) && d.IsInteger && d.Sign >= 0)
            return d > new Dec(long.MaxValue / 4, 0) ? long.MaxValue / 4 : (long)(d.Mantissa * System.Numerics.BigInteger.Pow(10, d.Exponent));
        throw Invalid(keyword, loc, "expected a non-negative integer");
    }

    private static Dec Number(JsonElement v, string keyword, Loc loc)
    {
        if (v.ValueKind == JsonValueKind.Number && Dec.TryParse(v.GetRawText(), out var d)) return d;
        throw Invalid(keyword, loc, "expected a number (within ±1e" + Dec.MaxExponent + ")");
    }

    /// <summary>The plain keywords of <paramref name="loc"/> (not $ref, allOf, anyOf, oneOf, not, if, dependencies: those expand).</summary>
    private Sch Parse(Loc loc)
    {
        if (loc.Parsed is { } done) return done;
        var s = new Sch { Where = loc.Where };
        var el = loc.El;
        if (el.ValueKind == JsonValueKind.False) { s.Types = 0; return loc.Parsed = s; }
        if (el.ValueKind == JsonValueKind.True) return loc.Parsed = s;
        if (el.ValueKind != JsonValueKind.Object)
            throw new GrammarException($"the schema at {loc.Where} must be an object or a boolean, not {el.ValueKind.ToString().ToLowerInvariant()}");
        bool nullable = false;
        JsonElement? exclusiveMinFlag = null, exclusiveMaxFlag = null;
        bool derived = loc.Id.StartsWith('!');
        foreach (var p in el.EnumerateObject())
        {
            var v = p.Value;
            // The compiler's own keywords mean something only in the schemas it derives (a user's are unknown keywords).
            if (!derived && p.Name.StartsWith(PrivatePrefix, StringComparison.Ordinal)) continue;
            switch (p.Name)
            {
                case "type":
                    if (v.ValueKind == JsonValueKind.String) s.Types = TypeBits(v.GetString()!, loc);
                    else if (v.ValueKind == JsonValueKind.Array)
                    {
                        int t = 0;
                        foreach (var item in v.EnumerateArray())
                        {
                            if (item.ValueKind != JsonValueKind.String) throw Invalid("type", loc, "expected type names");
                            t |= TypeBits(item.GetString()!, loc);
                        }
                        s.Types = t;
                    }
                    else throw Invalid("type", loc, "expected a string or an array");
                    break;
                case "enum":
                    if (v.ValueKind != JsonValueKind.Array) throw Invalid("enum", loc, "expected an array");
                    if (v.GetArrayLength() > MaxEnumValues) throw Bad("enum", loc, $"more than {MaxEnumValues:N0} values");
                    s.Enums.Add([.. v.EnumerateArray()]);
                    break;
                case "const":
                    s.Enums.Add([v]);
                    break;
                case "$kaiyuan-not-enum":
                    s.NotValues.AddRange(v.EnumerateArray());
                    break;
                case "$kaiyuan-types":
                    s.Types = v.GetInt32();
                    break;
                case "$kaiyuan-not-pattern":
                    s.NotPatterns.Add((v.GetString()!, loc.Where));
                    break;
                case "$kaiyuan-some-member":
                    {
                        var spec = Child(loc, p.Name);
                        List<string> Strings(string k) => v.TryGetProperty(k, out var a) ? [.. a.EnumerateArray().Select(x => x.GetString()!)] : [];
                        var keys = new MemberKeys(Strings("anyPatterns"), [.. Strings("notNames")], Strings("notPatterns"),
                            v.TryGetProperty("keyNot", out _) ? Child(spec, "keyNot") : null);
                        s.Exists.Add((keys, v.TryGetProperty("value", out _) ? Child(spec, "value") : null, loc.Where));
                        break;
                    }
                case "nullable":
                    nullable = v.ValueKind == JsonValueKind.True;
                    break;
                case "minLength": s.MinLen = Count(v, p.Name, loc); break;
                case "maxLength": s.MaxLen = Count(v, p.Name, loc); break;
                case "pattern":
                    if (v.ValueKind != JsonValueKind.String) throw Invalid("pattern", loc, "expected a string");
                    s.Patterns.Add((v.GetString()!, loc.Where));
                    break;
                case "format":
                    {
                        if (v.ValueKind != JsonValueKind.String) break;
                        string f = v.GetString()!;
                        if (JsonSchemaFormats.IsAnnotation(f)) break;
                        if (!JsonSchemaFormats.IsNumeric(f) && JsonSchemaFormats.String(f) is null)
                            throw new GrammarException($"unsupported format '{f}' at {loc.Where}");
                        s.Formats.Add((f, loc.Where));
                        break;
                    }
                case "minimum": s.LowerBound(Number(v, p.Name, loc), false); break;
                case "maximum": s.UpperBound(Number(v, p.Name, loc), false); break;
                case "exclusiveMinimum":
                    if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) exclusiveMinFlag = v;
                    else s.LowerBound(Number(v, p.Name, loc), true);
                    break;
                case "exclusiveMaximum":
                    if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) exclusiveMaxFlag = v;
                    else s.UpperBound(Number(v, p.Name, loc), true);
                    break;
                case "multipleOf":
                    {
                        var d = Number(v, p.Name, loc);
                        if (d.Sign <= 0) throw Invalid("multipleOf", loc, "must be positive");
                        s.Steps.Add(d);
                        break;
                    }
                case "items":
                    if (v.ValueKind == JsonValueKind.Array)
                    {
                        if (el.TryGetProperty("prefixItems", out _)) break; // 2020-12 keeps the array form for nothing
                        var items = Child(loc, "items");
                        for (int i = 0; i < v.GetArrayLength(); i++) s.Prefix.Add(Conj.Of(Child(items, i.ToString(System.Globalization.CultureInfo.InvariantCulture))));
                        if (el.TryGetProperty("additionalItems", out _)) s.Rest = Conj.Of(Child(loc, "additionalItems"));
                    }
                    else s.Rest = Conj.Of(Child(loc, "items"));
                    break;
                case "prefixItems":
                    {
                        if (v.ValueKind != JsonValueKind.Array) throw Invalid("prefixItems", loc, "expected an array");
                        var items = Child(loc, "prefixItems");
                        for (int i = 0; i < v.GetArrayLength(); i++) s.Prefix.Add(Conj.Of(Child(items, i.ToString(System.Globalization.CultureInfo.InvariantCulture))));
                        break;
                    }
                case "minItems": s.MinItems = Count(v, p.Name, loc); break;
                case "maxItems": s.MaxItems = Count(v, p.Name, loc); break;
                case "uniqueItems":
                    if (v.ValueKind == JsonValueKind.True) s.UniqueWhere = loc.Where;
                    break;
                case "required":
                    if (v.ValueKind == JsonValueKind.Array)
                        foreach (var r in v.EnumerateArray())
                        {
                            if (r.ValueKind != JsonValueKind.String) throw Invalid("required", loc, "expected property names");
                            if (!s.Required.Contains(r.GetString()!)) s.Required.Add(r.GetString()!);
                        }
                    break;
                case "minProperties": s.MinProps = Count(v, p.Name, loc); break;
                case "maxProperties": s.MaxProps = Count(v, p.Name, loc); break;
                case "propertyNames":
                    s.PropertyNames.Add((Child(loc, "propertyNames"), loc.Where + "/propertyNames"));
                    break;
                case "unevaluatedProperties" or "unevaluatedItems":
                    if (v.ValueKind == JsonValueKind.True || (v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any())) break;
                    throw Bad(p.Name, loc);
                case "contains":
                    {
                        long minC = el.TryGetProperty("minContains", out var mc) ? Count(mc, "minContains", loc) : 1;
                        if (el.TryGetProperty("maxContains", out _)) throw Bad("maxContains", loc);
                        if (minC > 1) throw Bad("minContains", loc, "only 0 or 1 is supported");
                        if (minC == 1) s.Contains.Add((Conj.Of(Child(loc, "contains")), loc.Where));
                        break;
                    }
                case "minContains" or "maxContains":
                    break;

                default:
                    if (Unsupported.Contains(p.Name)) throw Bad(p.Name, loc);
                    break;
            }
        }
        if (exclusiveMinFlag is { ValueKind: JsonValueKind.True } && s.Min is { } lo && el.TryGetProperty("minimum", out _)) s.MinExcl = true;
        if (exclusiveMaxFlag is { ValueKind: JsonValueKind.True } && s.Max is { } hi && el.TryGetProperty("maximum", out _)) s.MaxExcl = true;
        if (nullable && el.TryGetProperty("type", out _)) s.Types |= Sch.TNull;
        // Object keywords as one part (they interact: additionalProperties means "keys not named or matched here").
        bool hasProps = el.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object;
        bool hasPatterns = el.TryGetProperty("patternProperties", out var pats) && pats.ValueKind == JsonValueKind.Object;
        bool hasAdditional = el.TryGetProperty("additionalProperties", out _);
        if (hasProps || hasPatterns || hasAdditional)
        {
            var part = new ObjPart([], [], null);
            if (hasProps)
            {
                var container = Child(loc, "properties");
                foreach (var p in props.EnumerateObject())
                {
                    var child = Child(container, p.Name);
                    part.Props.Add((p.Name, child));
                    // Draft 3 wrote "required": true on the property itself.
                    if (p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.True && !s.Required.Contains(p.Name))
                        s.Required.Add(p.Name);
                }
            }
            if (hasPatterns)
            {
                var container = Child(loc, "patternProperties");
                foreach (var p in pats.EnumerateObject()) part.Patterns.Add((p.Name, Child(container, p.Name), container.Where));
            }
            if (hasAdditional) part = part with { Additional = Child(loc, "additionalProperties") };
            s.Parts.Add(part);
        }
        return loc.Parsed = s;
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- combinators: disjunctive normal form

    private static readonly List<List<Loc>> TrueTerms = [[]];

    /// <summary>
    /// The alternatives a conjunction of locations stands for: each a list of locations whose plain keywords all hold.
    /// $ref and allOf are inlined, anyOf/oneOf/if/dependencies multiply out (bounded by <see cref="MaxTerms"/>).
    /// </summary>
    private List<List<Loc>> Expand(Conj c, int depth)
    {
        var terms = TrueTerms;
        foreach (var loc in c.Locs) terms = And(terms, ExpandLoc(loc, depth), loc);
        return terms;
    }

    private List<List<Loc>> ExpandLoc(Loc loc, int depth)
    {
        if (loc.Expanded is { } done) return done;
        if (loc.Expanding)
        {
            // Reached again with no value in between: a loop. Reached again from a check on a property or item
            // (a proof that branches exclude each other, a value check): recursion whose expansion is not ready yet.
            if (loc.ExpandingAt == _descent) throw new GrammarException($"$ref loop at {loc.Where}: the schema refers to itself without any value in between");
            throw new PendingExpansion();
        }
        if (depth > MaxDepth) throw new GrammarException($"schema nesting deeper than {MaxDepth} at {loc.Where}");
        Tick(loc.Where);
        var el = loc.El;
        if (el.ValueKind != JsonValueKind.Object) return loc.Expanded = [[loc]];
        loc.Expanding = true;
        loc.ExpandingAt = _descent;
        try
        {
            // A location with nothing but combinators and annotations adds no term of its own (so the many places
            // that only say "$ref" share one compiled target).
            bool hasRef = el.TryGetProperty("$ref", out var r) && r.ValueKind == JsonValueKind.String;
            // Drafts 3 to 7 ignore everything beside "$ref".
            if (hasRef && _refAlone) return loc.Expanded = ExpandLoc(Resolve(loc, r.GetString()!), depth + 1);
            List<List<Loc>> terms = Parse(loc).IsTrivial ? [[]] : [[loc]];
            if (hasRef) terms = And(terms, ExpandLoc(Resolve(loc, r.GetString()!), depth + 1), loc);
            if (el.TryGetProperty("allOf", out var all))
            {
                var container = ArrayChild(loc, "allOf", all);
                for (int i = 0; i < all.GetArrayLength(); i++) terms = And(terms, ExpandLoc(Item(container, i), depth + 1), loc);
            }
            if (el.TryGetProperty("anyOf", out var any))
            {
                var container = ArrayChild(loc, "anyOf", any);
                var alts = new List<List<Loc>>();
                for (int i = 0; i < any.GetArrayLength(); i++) alts.AddRange(ExpandLoc(Item(container, i), depth + 1));
                terms = And(terms, alts, loc);
            }
            if (el.TryGetProperty("dependencies", out var deps)) terms = Dependencies(loc, "dependencies", deps, terms, depth);
            if (el.TryGetProperty("dependentRequired", out deps)) terms = Dependencies(loc, "dependentRequired", deps, terms, depth);
            if (el.TryGetProperty("dependentSchemas", out deps)) terms = Dependencies(loc, "dependentSchemas", deps, terms, depth);
            if (el.TryGetProperty("not", out _))
            {
                Loc negated;
                try { negated = Negate(Child(loc, "not")); }
                catch (GrammarException e) when (!e.Message.StartsWith("$ref", StringComparison.Ordinal)) { throw Bad("not", loc, e.Message); }
                terms = And(terms, ExpandLoc(negated, depth + 1), loc);
            }
            if (el.TryGetProperty("if", out _) && (el.TryGetProperty("then", out _) || el.TryGetProperty("else", out _)))
            {
                var cond = Child(loc, "if");
                Loc notCond;
                try { notCond = Negate(cond); }
                catch (GrammarException e) { throw Bad("if", loc, e.Message); }
                var yes = ExpandLoc(cond, depth + 1);
                if (el.TryGetProperty("then", out _)) yes = And(yes, ExpandLoc(Child(loc, "then"), depth + 1), loc);
                var no = ExpandLoc(notCond, depth + 1);
                if (el.TryGetProperty("else", out _)) no = And(no, ExpandLoc(Child(loc, "else"), depth + 1), loc);
                terms = And(terms, [.. yes, .. no], loc);
            }
            if (el.TryGetProperty("oneOf", out var one)) terms = OneOf(loc, one, terms, depth);
            return loc.Expanded = terms;
        }
        finally
        {
            loc.Expanding = false;
        }
    }

    private Loc ArrayChild(Loc loc, string keyword, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array) throw Invalid(keyword, loc, "expected an array of schemas");
        return Child(loc, keyword);
    }

    private Loc Item(Loc container, int i) => Child(container, i.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Every combination of one alternative from each side, dropping those that cannot hold.</summary>
    private List<List<Loc>> And(List<List<Loc>> a, List<List<Loc>> b, Loc where, int limit = MaxTerms)
    {
        if (b.Count == 1 && b[0].Count == 0) return a;
        if (a.Count == 1 && a[0].Count == 0) return b;
        var result = new List<List<Loc>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var x in a)
            foreach (var y in b)
            {
                var term = new List<Loc>(x.Count + y.Count);
                term.AddRange(x);
                foreach (var l in y) if (!term.Contains(l)) term.Add(l);
                if (!seen.Add(string.Join("\u0001", term.Select(l => l.Id)))) continue;
                if (a.Count * b.Count > 1 && !Satisfiable(Merge(term))) continue;
                result.Add(term);
                Tick(where.Where);
                if (result.Count > limit)
                    throw new GrammarException($"the combinators at {where.Where} expand to more than {limit:N0} alternatives");
            }
        return result;
    }

    /// <summary>The merged plain keywords of a term.</summary>
    private Sch Merge(List<Loc> term)
    {
        var s = new Sch();
        if (term.Count > 0) s.Where = term[0].Where;
        foreach (var loc in term) s.Add(Parse(loc));
        return s;
    }

    /// <summary>Cheap checks that a merged schema allows nothing (so combinations of exclusive alternatives vanish).</summary>
    private bool Satisfiable(Sch s)
    {
        if (s.Types == 0) return false;
        if (s.Enums.Count > 0 && !FilteredEnum(s, quick: true).Any()) return false;
        int types = s.Types;
        if ((types & Sch.TStr) != 0 && s.MaxLen >= 0 && s.MinLen > s.MaxLen) types &= ~Sch.TStr;
        if ((types & Sch.TNum) != 0 && new NumberConstraint(s.Min, s.MinExcl, s.Max, s.MaxExcl, false, null).IsEmptyRange()) types &= ~Sch.TNum;
        if ((types & Sch.TArr) != 0 && s.MaxItems >= 0 && s.MinItems > s.MaxItems) types &= ~Sch.TArr;
        if ((types & Sch.TObj) != 0 && ((s.MaxProps >= 0 && s.MinProps > s.MaxProps) || s.Required.Any(r => Forbidden(s, r)))) types &= ~Sch.TObj;
        return types != 0;
    }

    /// <summary>Some part of the object keywords rules the property out (a false schema).</summary>
    private bool Forbidden(Sch s, string name) => PropertyConj(s, name).Locs.Any(l => l.El.ValueKind == JsonValueKind.False);

    private List<List<Loc>> Dependencies(Loc loc, string keyword, JsonElement deps, List<List<Loc>> terms, int depth)
    {
        if (deps.ValueKind != JsonValueKind.Object) throw Invalid(keyword, loc, "expected an object");
        var container = Child(loc, keyword);
        foreach (var d in deps.EnumerateObject())
        {
            // "if the property is present then ..." = absent, or present with the rest.
            var absent = new JsonObject { ["properties"] = new JsonObject { [d.Name] = false } };
            JsonNode present;
            if (d.Value.ValueKind == JsonValueKind.Array)
            {
                var req = new JsonArray { d.Name };
                foreach (var r in d.Value.EnumerateArray()) req.Add(r.GetString());
                present = new JsonObject { ["required"] = req };
            }
            else if (keyword != "dependentRequired")
                present = new JsonObject
                {
                    ["required"] = new JsonArray { d.Name },
                    ["allOf"] = new JsonArray { RefTo(Child(container, d.Name)) },
                };
            else throw Invalid(keyword, loc, "expected arrays of property names");
            var either = Derived(new JsonObject { ["anyOf"] = new JsonArray { absent, present } }, loc);
            terms = And(terms, ExpandLoc(either, depth + 1), loc);
        }
        return terms;
    }

    /// <summary>
    /// oneOf: exactly one branch. When the branches provably exclude each other it is anyOf; otherwise each branch
    /// with the others negated, where they can be; else a compile error.
    /// </summary>
    private List<List<Loc>> OneOf(Loc loc, JsonElement one, List<List<Loc>> context, int depth)
    {
        var container = ArrayChild(loc, "oneOf", one);
        int n = one.GetArrayLength();
        var branches = new List<List<List<Loc>>>();
        for (int i = 0; i < n; i++) branches.Add(ExpandLoc(Item(container, i), depth + 1));
        // Branches that cannot hold together with the rest of the schema play no part.
        var live = new List<int>();
        for (int i = 0; i < n; i++)
            if (branches[i].Any(t => context.Any(c => Satisfiable(Merge([.. c, .. t]))))) live.Add(i);
        // Branch i holds and every branch that might overlap it does not (the provably exclusive ones cannot hold anyway).
        var overlap = new bool[n, n];
        for (int x = 0; x < live.Count; x++)
            for (int y = x + 1; y < live.Count; y++)
                overlap[live[x], live[y]] = overlap[live[y], live[x]] = !Exclusive(branches[live[x]], branches[live[y]], context, depth);
        var alts = new List<List<Loc>>();
        if (!live.Any(i => live.Any(j => overlap[i, j])))
        {
            foreach (int i in live) alts.AddRange(branches[i]);
            return And(context, alts, loc);
        }
        string? why = null;
        var failed = new List<int>();
        foreach (int i in live)
        {
            try
            {
                var term = branches[i];
                foreach (int j in live)
                    if (overlap[i, j]) term = And(term, ExpandLoc(Negate(Item(container, j)), depth + 1), loc, MaxTerms / 4);
                alts.AddRange(term);
                if (alts.Count > MaxTerms) throw new GrammarException($"the combinators at {loc.Where} expand to more than {MaxTerms:N0} alternatives");
            }
            catch (GrammarException e)
            {
                why ??= e.Message;
                failed.Add(i);
            }
        }
        if (failed.Count == 0) return And(context, alts, loc);
        // Too costly (or impossible) to negate: keep only objects carrying a property whose schemas in overlapping
        // branches exclude each other. That refuses some valid instances (those without it), never admits an invalid one.
        if (Discriminator(branches, live, overlap, context, depth) is { } key)
        {
            alts.Clear();
            var tag = Derived(new JsonObject { ["type"] = "object", ["required"] = new JsonArray { key } }, loc);
            foreach (int i in live)
                alts.AddRange(live.Any(j => overlap[i, j]) ? And(branches[i], [[tag]], loc) : branches[i]);
            return And(context, alts, loc);
        }
        // Else leave out the branches that could not be kept apart from the others (sound, but they are never produced).
        if (alts.Count > 0 && failed.Count < live.Count) return And(context, alts, loc);
        throw Bad("oneOf", loc, "its branches may overlap (and cannot be told apart: " + why + ")");
    }

    /// <summary>A property on which every overlapping pair of branches has mutually exclusive schemas.</summary>
    private string? Discriminator(List<List<List<Loc>>> branches, List<int> live, bool[,] overlap, List<List<Loc>> context, int depth)
    {
        var candidates = new List<string>();
        foreach (int i in live)
            foreach (var t in branches[i])
                foreach (var c in context)
                    foreach (var name in PropertyNames(Merge([.. c, .. t])))
                        if (!candidates.Contains(name)) candidates.Add(name);
        foreach (var name in candidates.Take(64))
        {
            bool ok = true;
            foreach (int i in live)
                foreach (int j in live)
                {
                    if (!ok || j <= i || !overlap[i, j]) continue;
                    foreach (var c in context)
                        foreach (var a in branches[i])
                            foreach (var b in branches[j])
                            {
                                if (!ok) break;
                                var sa = Merge([.. c, .. a]);
                                var sb = Merge([.. c, .. b]);
                                if (!Satisfiable(sa) || !Satisfiable(sb)) continue;
                                // The property must be possible on both sides (else requiring it drops a branch).
                                if (Forbidden(sa, name) || Forbidden(sb, name) || !DisjointConj(PropertyConj(sa, name), PropertyConj(sb, name), depth + 1)) ok = false;
                            }
                }
            if (ok) return name;
        }
        return null;
    }

    private bool Exclusive(List<List<Loc>> a, List<List<Loc>> b, List<List<Loc>> context, int depth)
    {
        foreach (var c in context)
            foreach (var x in a)
                foreach (var y in b)
                {
                    var sx = Merge([.. c, .. x]);
                    var sy = Merge([.. c, .. y]);
                    if (!Satisfiable(sx) || !Satisfiable(sy)) continue;
                    if (!Disjoint(sx, sy, depth)) return false;
                }
        return true;
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- negation (not, if/else, overlapping oneOf)

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "default", "examples", "example", "$schema", "$id", "id", "$comment", "readOnly", "writeOnly",
        "deprecated", "contentMediaType", "contentEncoding", "$defs", "definitions", "$anchor", "$dynamicAnchor", "$recursiveAnchor",
        "$vocabulary", "nullable", "discriminator", "xml", "externalDocs",
    };

    /// <summary>A keyword JSON Schema defines, so negating a schema that has it must understand it (others are annotations).</summary>
    private static bool IsKnownKeyword(string k) => k is "type" or "enum" or "const" or "pattern" or "format" or "minimum" or "maximum"
        or "exclusiveMinimum" or "exclusiveMaximum" or "multipleOf" or "minLength" or "maxLength" or "items" or "prefixItems"
        or "additionalItems" or "minItems" or "maxItems" or "uniqueItems" or "contains" or "minContains" or "maxContains"
        or "properties" or "patternProperties" or "additionalProperties" or "required" or "minProperties" or "maxProperties"
        or "propertyNames" or "dependencies" or "dependentRequired" or "dependentSchemas" or "allOf" or "anyOf" or "oneOf"
        or "not" or "if" or "then" or "else" or "$ref" or "$dynamicRef" or "$recursiveRef" or "unevaluatedProperties"
        or "unevaluatedItems" or "$kaiyuan-not-enum" or "$kaiyuan-types" or "$kaiyuan-not-pattern" or "$kaiyuan-some-member";

    /// <summary>
    /// A schema that holds exactly where <paramref name="x"/> does not: a conjunction of keywords negates into the
    /// alternatives of each keyword negated; a type-specific keyword negated holds only for its type (the keyword
    /// itself lets every other type through).
    /// </summary>
    private Loc Negate(Loc x)
    {
        if (x.Negated is { } done) return done;
        var el = x.El;
        JsonNode result;
        if (el.ValueKind == JsonValueKind.True) result = false;
        else if (el.ValueKind == JsonValueKind.False) result = true;
        else if (el.ValueKind != JsonValueKind.Object) throw new GrammarException($"the schema at {x.Where} must be an object or a boolean");
        else
        {
            var alts = new List<JsonNode>();
            bool exMinFlag = el.TryGetProperty("exclusiveMinimum", out var exMin) && exMin.ValueKind == JsonValueKind.True;
            bool exMaxFlag = el.TryGetProperty("exclusiveMaximum", out var exMax) && exMax.ValueKind == JsonValueKind.True;
            bool derived = x.Id.StartsWith('!');
            foreach (var p in el.EnumerateObject())
            {
                var v = p.Value;
                if (!derived && p.Name.StartsWith(PrivatePrefix, StringComparison.Ordinal)) continue;
                JsonNode Raw() => JsonNode.Parse(v.GetRawText())!;
                JsonObject Typed(string type, string k, JsonNode value) => new() { ["type"] = type, [k] = value };
                long Num() => Count(v, p.Name, x);
                switch (p.Name)
                {
                    case "type":
                        {
                            var typeOnly = new JsonObject { ["type"] = Raw() };
                            if (el.TryGetProperty("nullable", out var nl) && nl.ValueKind == JsonValueKind.True) typeOnly["nullable"] = true;
                            int t = Parse(Derived(typeOnly, x)).Types;
                            alts.Add(new JsonObject { ["$kaiyuan-types"] = Sch.TAll & ~t });
                            break;
                        }
                    case "$kaiyuan-types": alts.Add(new JsonObject { ["$kaiyuan-types"] = Sch.TAll & ~v.GetInt32() }); break;
                    case "enum": alts.Add(new JsonObject { ["$kaiyuan-not-enum"] = Raw() }); break;
                    case "const": alts.Add(new JsonObject { ["$kaiyuan-not-enum"] = new JsonArray { Raw() } }); break;
                    case "$kaiyuan-not-enum": alts.Add(new JsonObject { ["enum"] = Raw() }); break;
                    case "pattern": alts.Add(Typed("string", "$kaiyuan-not-pattern", Raw())); break;
                    case "$kaiyuan-not-pattern": alts.Add(Typed("string", "pattern", Raw())); break;
                    case "minimum": alts.Add(Typed("number", exMinFlag ? "maximum" : "exclusiveMaximum", Raw())); break;
                    case "maximum": alts.Add(Typed("number", exMaxFlag ? "minimum" : "exclusiveMinimum", Raw())); break;
                    case "exclusiveMinimum": if (v.ValueKind == JsonValueKind.Number) alts.Add(Typed("number", "maximum", Raw())); break;
                    case "exclusiveMaximum": if (v.ValueKind == JsonValueKind.Number) alts.Add(Typed("number", "minimum", Raw())); break;
                    // Fewer than zero is impossible: negating a zero minimum adds nothing.
                    case "minLength": if (Num() > 0) alts.Add(Typed("string", "maxLength", Num() - 1)); break;
                    case "maxLength": alts.Add(Typed("string", "minLength", Num() + 1)); break;
                    case "minItems": if (Num() > 0) alts.Add(Typed("array", "maxItems", Num() - 1)); break;
                    case "maxItems": alts.Add(Typed("array", "minItems", Num() + 1)); break;
                    case "minProperties": if (Num() > 0) alts.Add(Typed("object", "maxProperties", Num() - 1)); break;
                    case "maxProperties": alts.Add(Typed("object", "minProperties", Num() + 1)); break;
                    case "required":
                        foreach (var r in v.EnumerateArray())
                            alts.Add(Typed("object", "properties", new JsonObject { [r.GetString()!] = false }));
                        break;
                    case "properties":
                        {
                            var container = Child(x, "properties");
                            foreach (var prop in v.EnumerateObject())
                                alts.Add(new JsonObject
                                {
                                    ["type"] = "object",
                                    ["required"] = new JsonArray { prop.Name },
                                    ["properties"] = new JsonObject { [prop.Name] = NotRefTo(Child(container, prop.Name)) },
                                });
                            break;
                        }
                    case "items" or "prefixItems" when v.ValueKind == JsonValueKind.Array:
                        {
                            if (p.Name == "items" && el.TryGetProperty("prefixItems", out _)) break;
                            // Some position holds what its schema refuses.
                            var container = Child(x, p.Name);
                            for (int i = 0; i < v.GetArrayLength(); i++)
                            {
                                var prefix = new JsonArray();
                                for (int j = 0; j < i; j++) prefix.Add(true);
                                prefix.Add(NotRefTo(Item(container, i)));
                                alts.Add(new JsonObject { ["type"] = "array", ["minItems"] = i + 1, ["prefixItems"] = prefix });
                            }
                            break;
                        }
                    case "contains":
                        {
                            if (el.TryGetProperty("maxContains", out _)) throw new GrammarException($"cannot negate 'maxContains' at {x.Where}");
                            long minC = el.TryGetProperty("minContains", out var mc) ? Count(mc, "minContains", x) : 1;
                            if (minC == 0) break;
                            if (minC > 1) throw new GrammarException($"cannot negate 'minContains' at {x.Where}");
                            alts.Add(new JsonObject { ["type"] = "array", ["items"] = NotRefTo(Child(x, "contains")) });
                            break;
                        }
                    case "minContains" or "maxContains": break;
                    case "items" when v.ValueKind is JsonValueKind.Object or JsonValueKind.False && !el.TryGetProperty("prefixItems", out _):
                        alts.Add(new JsonObject { ["type"] = "array", ["contains"] = NotRefTo(Child(x, "items")) });
                        break;
                    case "oneOf":
                        {
                            // None holds, or two (or more) do.
                            var container = Child(x, "oneOf");
                            int n = v.GetArrayLength();
                            if (n > 8) throw new GrammarException($"cannot negate a oneOf of more than 8 branches at {x.Where}");
                            var none = new JsonArray();
                            for (int i = 0; i < n; i++) none.Add(NotRefTo(Item(container, i)));
                            alts.Add(new JsonObject { ["allOf"] = none });
                            for (int i = 0; i < n; i++)
                                for (int j = i + 1; j < n; j++)
                                    alts.Add(new JsonObject { ["allOf"] = new JsonArray { RefTo(Item(container, i)), RefTo(Item(container, j)) } });
                            break;
                        }
                    case "format" when v.ValueKind == JsonValueKind.String:
                        {
                            string f = v.GetString()!;
                            if (JsonSchemaFormats.IsAnnotation(f) || f is "float" or "double") break;
                            if (JsonSchemaFormats.IntegerRange(f) is { } range)
                            {
                                alts.Add(new JsonObject { ["type"] = "number", ["exclusiveMaximum"] = JsonNode.Parse(range.Min.ToString()) });
                                alts.Add(new JsonObject { ["type"] = "number", ["exclusiveMinimum"] = JsonNode.Parse(range.Max.ToString()) });
                                break;
                            }
                            // Our string formats are stricter than some validators': their complement would admit
                            // strings those validators call valid.
                            throw new GrammarException($"cannot negate 'format' at {x.Where}");
                        }
                    case "additionalProperties" when v.ValueKind != JsonValueKind.True:
                        {
                            // Some key neither named nor matched by a pattern (with a value additionalProperties refuses).
                            var named = new JsonArray();
                            if (el.TryGetProperty("properties", out var ps) && ps.ValueKind == JsonValueKind.Object)
                                foreach (var prop in ps.EnumerateObject()) named.Add(prop.Name);
                            var patterns = new JsonArray();
                            if (el.TryGetProperty("patternProperties", out var pp) && pp.ValueKind == JsonValueKind.Object)
                                foreach (var prop in pp.EnumerateObject()) patterns.Add(prop.Name);
                            var some = new JsonObject { ["notNames"] = named, ["notPatterns"] = patterns };
                            if (v.ValueKind != JsonValueKind.False) some["value"] = NotRefTo(Child(x, "additionalProperties"));
                            alts.Add(new JsonObject { ["type"] = "object", ["$kaiyuan-some-member"] = some });
                            break;
                        }
                    case "patternProperties":
                        {
                            // Some key matching a pattern, with a value that pattern's schema refuses.
                            var container = Child(x, "patternProperties");
                            foreach (var pp in v.EnumerateObject())
                            {
                                if (pp.Value.ValueKind == JsonValueKind.True) continue;
                                var some = new JsonObject { ["anyPatterns"] = new JsonArray { pp.Name } };
                                if (pp.Value.ValueKind != JsonValueKind.False) some["value"] = NotRefTo(Child(container, pp.Name));
                                alts.Add(new JsonObject { ["type"] = "object", ["$kaiyuan-some-member"] = some });
                            }
                            break;
                        }
                    case "propertyNames" when v.ValueKind != JsonValueKind.True:
                        alts.Add(new JsonObject { ["type"] = "object", ["$kaiyuan-some-member"] = new JsonObject { ["keyNot"] = RefTo(Child(x, "propertyNames")) } });
                        break;
                    case "$kaiyuan-some-member":
                        {
                            // Every member outside the key set, or with a value outside the value schema.
                            var spec = Child(x, p.Name);
                            bool hasValue = v.TryGetProperty("value", out _);
                            JsonNode ValueOrFalse() => hasValue ? NotRefTo(Child(spec, "value")) : false;
                            v.TryGetProperty("anyPatterns", out var ap);
                            v.TryGetProperty("notNames", out var nn);
                            v.TryGetProperty("notPatterns", out var np);
                            static int Len(JsonElement a) => a.ValueKind == JsonValueKind.Array ? a.GetArrayLength() : 0;
                            int shapes = (Len(ap) > 0 ? 1 : 0) + (v.TryGetProperty("keyNot", out _) ? 1 : 0) + (Len(nn) + Len(np) > 0 ? 1 : 0);
                            if (v.TryGetProperty("keyNot", out _))
                            {
                                if (shapes > 1 || hasValue) throw new GrammarException($"cannot negate this negation at {x.Where}");
                                alts.Add(new JsonObject { ["propertyNames"] = RefTo(Child(spec, "keyNot")) });
                            }
                            else if (ap.ValueKind == JsonValueKind.Array && ap.GetArrayLength() > 0)
                            {
                                if (shapes > 1) throw new GrammarException($"cannot negate this negation at {x.Where}");
                                var pats = new JsonObject();
                                foreach (var pat in ap.EnumerateArray()) pats[pat.GetString()!] = ValueOrFalse();
                                alts.Add(new JsonObject { ["patternProperties"] = pats });
                            }
                            else
                            {
                                var props = new JsonObject();
                                if (nn.ValueKind == JsonValueKind.Array) foreach (var name in nn.EnumerateArray()) props[name.GetString()!] = true;
                                var pats = new JsonObject();
                                if (np.ValueKind == JsonValueKind.Array) foreach (var pat in np.EnumerateArray()) pats[pat.GetString()!] = true;
                                alts.Add(new JsonObject { ["properties"] = props, ["patternProperties"] = pats, ["additionalProperties"] = ValueOrFalse() });
                            }
                            break;
                        }
                    case "additionalItems":
                        {
                            // Only meaningful after an array of items; "false" there means "no more than that many".
                            if (!el.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array) break;
                            if (v.ValueKind == JsonValueKind.True) break;
                            if (v.ValueKind != JsonValueKind.False) throw new GrammarException($"cannot negate 'additionalItems' at {x.Where}");
                            alts.Add(Typed("array", "minItems", items.GetArrayLength() + 1));
                            break;
                        }
                    case "$ref": alts.Add(NotRefTo(Resolve(x, v.GetString()!))); break;
                    case "allOf":
                        {
                            var container = Child(x, "allOf");
                            for (int i = 0; i < v.GetArrayLength(); i++) alts.Add(NotRefTo(Item(container, i)));
                            break;
                        }
                    case "anyOf":
                        {
                            var container = Child(x, "anyOf");
                            var all = new JsonArray();
                            for (int i = 0; i < v.GetArrayLength(); i++) all.Add(NotRefTo(Item(container, i)));
                            alts.Add(new JsonObject { ["allOf"] = all });
                            break;
                        }
                    case "not": alts.Add(RefTo(Child(x, "not"))); break;
                    case "then" or "else" when !el.TryGetProperty("if", out _): break;
                    case "uniqueItems" when v.ValueKind == JsonValueKind.False: break;
                    case "propertyNames" or "additionalProperties" or "items" or "unevaluatedProperties" or "unevaluatedItems" when v.ValueKind == JsonValueKind.True: break;
                    case "format" when v.ValueKind == JsonValueKind.String && JsonSchemaFormats.IsAnnotation(v.GetString()!): break;
                    default:
                        if (IsKnownKeyword(p.Name)) throw new GrammarException($"cannot negate '{p.Name}' at {x.Where}");
                        break;
                }
            }
            result = alts.Count switch
            {
                0 => false,
                1 => alts[0],
                _ => new JsonObject { ["anyOf"] = new JsonArray([.. alts]) },
            };
        }
        var negated = Derived(result, x);
        x.Negated = negated;
        return negated;
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- grammar

    /// <summary>Nodes estimated larger than this many automaton states become a rule of their own, shared by every use.</summary>
    private const int RuleThreshold = 100;

    private static string RuleName(string where) => "schema" + (where.Length > 80 ? where[..80] : where);

    private static bool IsNothing(GrammarNode n) => n is AlternativesNode { Items.Length: 0 };

    private GrammarNode Shared(GrammarNode node, string name) =>
        IsNothing(node) || node is RuleRefNode || Size(node, RuleThreshold + 1) <= RuleThreshold ? node : Ref(_g.AddRule(name, node));

    /// <summary>A rough count of the automaton states a node adds, capped at <paramref name="cap"/>.</summary>
    private static int Size(GrammarNode node, int cap) => node switch
    {
        LiteralNode l => l.Bytes.Length,
        CharSetNode c => Math.Min(cap, 1 + c.Set.Ranges.Count * 2),
        SequenceNode s => s.Items.Aggregate(0, (n, i) => n >= cap ? cap : Math.Min(cap, n + Size(i, cap))),
        AlternativesNode a => a.Items.Aggregate(1, (n, i) => n >= cap ? cap : Math.Min(cap, n + 1 + Size(i, cap))),
        RepeatNode r => Math.Min(cap, (int)Math.Min(cap, (long)(r.Max < 0 ? r.Min + 1 : r.Max) * Size(r.Item, cap) + 1)),
        _ => 1,
    };

    /// <summary>The grammar node of a conjunction of schemas: the alternatives of its expansion.</summary>
    private GrammarNode Emit(Conj c, int depth)
    {
        if (c.Locs.Count == 0) return AnyValue();
        if (_nodeMemo.TryGetValue("C" + c.Key, out var memo)) return memo;
        if (depth > MaxDepth) throw new GrammarException($"schema nesting deeper than {MaxDepth} at {c.Locs[0].Where}");
        var alts = new List<GrammarNode>();
        foreach (var term in Expand(c, depth))
        {
            var n = EmitTerm(term, depth);
            if (!IsNothing(n)) alts.Add(n);
        }
        var node = Shared(Alt([.. alts]), RuleName(c.Locs[0].Where));
        _nodeMemo["C" + c.Key] = node;
        return node;
    }

    /// <summary>
    /// The grammar node of one alternative (merged plain keywords). A term reached again while being compiled
    /// (recursive schemas) becomes a rule; so does a large one, shared by every place that uses it.
    /// </summary>
    private GrammarNode EmitTerm(List<Loc> term, int depth)
    {
        if (term.Count == 0) return AnyValue();
        string key = "T" + string.Join("\u0001", term.Select(l => l.Id));
        if (_conjMemo.TryGetValue(key, out var entry))
        {
            if (entry.Node is { } n) return n;
            if (entry.Rule < 0) entry.Rule = _g.AddRule(RuleName(term.Count > 0 ? term[0].Where : "#"));
            return Ref(entry.Rule);
        }
        entry = new Entry();
        _conjMemo[key] = entry;
        var s = Merge(term);
        var node = Satisfiable(s) ? EmitSch(s, depth) : Nothing;
        if (entry.Rule >= 0)
        {
            _g.Define(entry.Rule, node);
            node = Ref(entry.Rule);
        }
        else node = Shared(node, RuleName(s.Where));
        entry.Node = node;
        return node;
    }

    private GrammarNode EmitSch(Sch s, int depth)
    {
        Tick(s.Where);
        if (s.Enums.Count > 0)
        {
            var values = FilteredEnum(s, quick: false).ToList();
            var alts = new List<GrammarNode>();
            var spelled = new HashSet<string>(StringComparer.Ordinal);
            foreach (var v in values)
                if (spelled.Add(Canonical(v))) alts.Add(ValueNode(v, 0));
            return Alt([.. alts]);
        }
        foreach (var v in s.NotValues)
        {
            if ((v.ValueKind == JsonValueKind.Object && (s.Types & Sch.TObj) != 0) || (v.ValueKind == JsonValueKind.Array && (s.Types & Sch.TArr) != 0))
                throw Bad("not", s.Where, "cannot exclude a particular object or array value");
        }
        var result = new List<GrammarNode>();
        if ((s.Types & Sch.TNull) != 0 && !s.NotValues.Any(v => v.ValueKind == JsonValueKind.Null)) result.Add(Literal("null"));
        if ((s.Types & Sch.TBool) != 0)
        {
            if (!s.NotValues.Any(v => v.ValueKind == JsonValueKind.True)) result.Add(Literal("true"));
            if (!s.NotValues.Any(v => v.ValueKind == JsonValueKind.False)) result.Add(Literal("false"));
        }
        if ((s.Types & Sch.TNum) != 0) result.Add(EmitNumber(s));
        if ((s.Types & Sch.TStr) != 0) result.Add(EmitString(s));
        if ((s.Types & Sch.TArr) != 0) result.Add(EmitArray(s, depth));
        if ((s.Types & Sch.TObj) != 0) result.Add(EmitObject(s, depth));
        return Alt([.. result]);
    }

    /// <summary>The enum values (of the first enum; the others, the type and the other keywords filter them).</summary>
    private IEnumerable<JsonElement> FilteredEnum(Sch s, bool quick, bool lenient = false)
    {
        foreach (var v in s.Enums[0])
        {
            if (!s.Enums.Skip(1).All(e => e.Any(w => JsonEquals(v, w)))) continue;
            if (s.NotValues.Any(w => JsonEquals(v, w))) continue;
            if (quick ? (TypeOf(v) & s.Types) == 0 : !Validate(v, s, 0, lenient)) continue;
            yield return v;
        }
    }

    // ---------------------------------------------------------------- any value

    private GrammarNode AnyValue()
    {
        if (_anyValueRule is { } r) return Ref(r);
        string name = "jsonschema:value" + _options.MaxWhitespace;
        if (_g.Find(name) is { } existing && _g.IsDefined(existing)) { _anyValueRule = existing; return Ref(existing); }
        int value = _g.AddRule(name);
        _anyValueRule = value;
        var str = Seq(Literal("\""), Repeat(JsonStringEncoding.AnyChar, 0, -1), Literal("\""));
        var member = Seq(str, _colon, Ref(value));
        var obj = Seq(Literal("{"), _ws, Alt(Literal("}"), Seq(member, Repeat(Seq(_sep, member), 0, -1), _ws, Literal("}"))));
        var arr = Seq(Literal("["), _ws, Alt(Literal("]"), Seq(Ref(value), Repeat(Seq(_sep, Ref(value)), 0, -1), _ws, Literal("]"))));
        _g.Define(value, Alt(obj, arr, str, JsonNumberRanges.Plain(false), Literal("true"), Literal("false"), Literal("null")));
        return Ref(value);
    }

    // ---------------------------------------------------------------- numbers

    private GrammarNode EmitNumber(Sch s)
    {
        bool integerOnly = (s.Types & Sch.TFrac) == 0;
        bool fractionOnly = (s.Types & Sch.TInt) == 0;
        var bounds = new Sch();
        bounds.Min = s.Min; bounds.MinExcl = s.MinExcl; bounds.Max = s.Max; bounds.MaxExcl = s.MaxExcl;
        foreach (var (f, _) in s.Formats)
            if (JsonSchemaFormats.IntegerRange(f) is { } range)
            {
                bounds.LowerBound(range.Min, false);
                bounds.UpperBound(range.Max, false);
            }
        Dec? step = null;
        foreach (var d in s.Steps.DistinctBy(d => d.ToString()))
        {
            if (step is not { } cur) step = d;
            else if (d.IsMultipleOf(cur)) step = d;
            else if (!cur.IsMultipleOf(d)) throw Bad("multipleOf", s.Where, "several unrelated steps");
        }
        if (integerOnly && step is { } st && Dec.One.IsMultipleOf(st)) step = null;
        var excluded = s.NotValues.Where(v => v.ValueKind == JsonValueKind.Number).Select(v => Dec.TryParse(v.GetRawText(), out var d) ? d : Dec.Zero)
            .Distinct().Order().ToList();
        var c = new NumberConstraint(bounds.Min, bounds.MinExcl, bounds.Max, bounds.MaxExcl, integerOnly, step);
        string key = $"N{c}|{fractionOnly}|{string.Join(",", excluded)}";
        if (_nodeMemo.TryGetValue(key, out var memo)) return memo;
        GrammarNode node;
        if (excluded.Count == 0 && !fractionOnly) node = JsonNumberRanges.Build(_g, c, "number");
        else
        {
            // Exclusions cut the range into open intervals.
            var pieces = new List<CodepointNfa>();
            Dec? lo = c.Min;
            bool loEx = c.MinExclusive;
            foreach (var x in excluded)
            {
                if (!new NumberConstraint(c.Min, c.MinExclusive, c.Max, c.MaxExclusive, false, null).Allows(x)) continue;
                pieces.Add(JsonNumberRanges.Automaton(c with { Min = lo, MinExclusive = loEx, Max = x, MaxExclusive = true }));
                lo = x;
                loEx = true;
            }
            pieces.Add(JsonNumberRanges.Automaton(c with { Min = lo, MinExclusive = loEx }));
            var nfa = CodepointNfa.Union([.. pieces]);
            if (fractionOnly)
                nfa = nfa.Intersect(CodepointNfa.FromNode(Seq(Optional(Literal("-")), Alt(Literal("0"), Seq(Chars(CodepointSet.Range('1', '9')), Repeat(Chars(CodepointSet.Range('0', '9')), 0, -1))),
                    Literal("."), Repeat(Chars(CodepointSet.Range('0', '9')), 0, -1), Chars(CodepointSet.Range('1', '9')), Repeat(Chars(CodepointSet.Range('0', '9')), 0, -1))));
            node = nfa.ToGrammar(_g, Chars, "number");
        }
        node = Shared(node, "number");
        _nodeMemo[key] = node;
        return node;
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- strings

    private readonly Dictionary<string, GrammarNode> _patterns = new(StringComparer.Ordinal);

    private GrammarNode PatternNode(string pattern, string where)
    {
        if (_patterns.TryGetValue(pattern, out var n)) return n;
        try
        {
            n = RegexGrammar.ParseSearch(pattern);
        }
        catch (GrammarException e)
        {
            throw new GrammarException($"pattern at {where}: {e.Message}");
        }
        _patterns[pattern] = n;
        return n;
    }

    private readonly Dictionary<CodepointSet, GrammarNode> _charClasses = [];

    /// <summary>An encoded character of <paramref name="set"/>; a large class (many UTF-8 byte paths) becomes one shared rule.</summary>
    private GrammarNode EncodedChar(CodepointSet set)
    {
        if (_charClasses.TryGetValue(set, out var node)) return node;
        node = JsonStringEncoding.Char(set);
        if (Size(node, 17) > 16) node = Ref(_g.AddRule("char-class", node));
        _charClasses[set] = node;
        return node;
    }

    /// <summary>One encoded character of any kind, as a rule (so long bounded strings repeat a call, not a copy).</summary>
    private GrammarNode CharRef() => SharedRule("jsonschema:char", JsonStringEncoding.AnyChar);

    /// <summary>The string language of a schema: its patterns and formats (code-point nodes) and length limits.</summary>
    private (List<GrammarNode> Parts, long Min, long Max) StringLimits(Sch s)
    {
        var parts = new List<GrammarNode>();
        long min = s.MinLen, max = s.MaxLen;
        foreach (var (p, where) in s.Patterns) parts.Add(PatternNode(p, where));
        foreach (var (f, _) in s.Formats)
            if (JsonSchemaFormats.String(f) is { } fmt)
            {
                parts.Add(fmt.Node);
                if (fmt.MaxLength >= 0) max = max < 0 ? fmt.MaxLength : Math.Min(max, fmt.MaxLength);
            }
        if (min > MaxCount) throw Bad("minLength", s.Where, $"more than {MaxCount:N0} characters");
        if (max > MaxCount) max = MaxCount;
        return (parts, min, max);
    }

    /// <summary>The content (between the quotes) of the strings a schema allows, as a code point automaton.</summary>
    private CodepointNfa StringNfa(Sch s)
    {
        var (parts, min, max) = StringLimits(s);
        CodepointNfa? nfa = null;
        void And(CodepointNfa other) => nfa = nfa is null ? other : nfa.Intersect(other);
        foreach (var part in parts) And(CodepointNfa.FromNode(part));
        foreach (var (p, where) in s.NotPatterns) And(CodepointNfa.FromNode(PatternNode(p, where)).Complement());
        var notStrings = s.NotValues.Where(v => v.ValueKind == JsonValueKind.String).Select(v => v.GetString()!).ToList();
        if (notStrings.Count > 0) And(CodepointNfaExtensions.NotIn(notStrings));
        if (min > 0 || max >= 0)
        {
            var (lo, hi) = nfa?.LengthRange() ?? (0, -1);
            if (lo < min || max >= 0 && (hi < 0 || hi > max)) And(CodepointNfa.Length((int)min, (int)max, CodepointSet.All));
        }
        return nfa ?? CodepointNfa.Length(0, -1, CodepointSet.All);
    }

    private GrammarNode EmitString(Sch s)
    {
        var (parts, min, max) = StringLimits(s);
        if (max >= 0 && min > max) return Nothing;
        bool negations = s.NotPatterns.Count > 0 || s.NotValues.Any(v => v.ValueKind == JsonValueKind.String);
        string key = $"S{min}|{max}|{string.Join("\u0001", s.Patterns.Select(p => p.Pattern))}|{string.Join(",", s.Formats.Select(f => f.Format))}|" +
            $"{string.Join("\u0001", s.NotPatterns.Select(p => p.Pattern))}|{string.Join("\u0001", s.NotValues.Select(v => v.GetRawText()))}";
        if (_nodeMemo.TryGetValue(key, out var memo)) return memo;
        GrammarNode content;
        if (parts.Count == 0 && !negations)
            content = Repeat(max > 64 || (max < 0 && min > 64) ? CharRef() : JsonStringEncoding.AnyChar, (int)min, (int)max);
        else if (parts.Count == 1 && !negations && Within(JsonStringEncoding.LengthRange(parts[0]), min, max))
            content = JsonStringEncoding.Map(parts[0]);
        else
            content = StringNfa(s).ToGrammar(_g, EncodedChar, "string");
        var node = IsNothing(content) ? Nothing : Shared(Seq(Literal("\""), content, Literal("\"")), "string");
        _nodeMemo[key] = node;
        return node;
    }

    private static bool Within((long Min, long Max) range, long min, long max) =>
        range.Min >= min && (max < 0 || (range.Max >= 0 && range.Max <= max));
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- arrays

    private GrammarNode EmitArray(Sch s, int depth)
    {
        long min = s.MinItems, max = s.MaxItems;
        if (min > MaxCount) throw Bad("minItems", s.Where, $"more than {MaxCount:N0} items");
        if (max > MaxCount) max = MaxCount;
        if (max >= 0 && min > max) return Nothing;
        if (s.UniqueWhere is { } uw && (max < 0 || max > 1))
        {
            if (s.Contains.Count > 0) throw Bad("contains", s.Contains[0].Where, "not together with uniqueItems");
            return UniqueArray(s, min, max, uw, depth);
        }
        if (s.Contains.Count > 0) return ContainsArray(s, min, max, depth);
        int p = s.Prefix.Count;
        var prefix = new List<GrammarNode>();
        for (int i = 0; i < p && (max < 0 || i < max); i++) prefix.Add(Emit(s.Prefix[i], depth + 1));
        p = prefix.Count;
        GrammarNode? rest = max >= 0 && max <= p ? null : Emit(s.Rest, depth + 1);
        if (rest is not null && IsNothing(rest)) rest = null;
        // After i items: what may follow (i ≥ 1).
        GrammarNode Tail(int i)
        {
            if (max >= 0 && i >= max) return Empty;
            if (i < p)
            {
                var piece = IsNothing(prefix[i]) ? Nothing : Seq(_sep, prefix[i], Tail(i + 1));
                return i >= min ? Optional(piece) : piece;
            }
            if (rest is null) return i >= min ? Empty : Nothing;
            return Repeat(Seq(_sep, rest), (int)Math.Max(0, min - i), max < 0 ? -1 : (int)(max - i));
        }
        var alts = new List<GrammarNode>();
        if (min == 0) alts.Add(Literal("]"));
        if (max != 0)
        {
            var first = p > 0 ? prefix[0] : rest ?? Nothing;
            if (!IsNothing(first))
            {
                var items = Seq(first, Tail(1));
                if (!IsNothing(items)) alts.Add(Seq(items, _ws, Literal("]")));
            }
        }
        if (alts.Count == 0) return Nothing;
        return Seq(Literal("["), _ws, Alt([.. alts]));
    }

    /// <summary>
    /// Arrays with contains: one rule per (items so far, conditions met so far); each item is written in a variant
    /// per set of conditions it meets (the item's schema and those conditions' schemas together).
    /// </summary>
    private GrammarNode ContainsArray(Sch s, long min, long max, int depth)
    {
        int m = s.Contains.Count;
        if (m > 3) throw Bad("contains", s.Contains[0].Where, "more than 3 contains conditions on one array");
        int full = (1 << m) - 1;
        int p = s.Prefix.Count;
        // Positions past this one are all alike (the rest schema, no minimum left to count).
        long cap = Math.Max(p, min);
        if (max >= 0) cap = max;
        if (cap > 1_000) throw Bad("contains", s.Contains[0].Where, "too many array positions to track");
        var variants = new Dictionary<(long, int), GrammarNode>();
        GrammarNode Variant(long i, int subset)
        {
            if (variants.TryGetValue((i, subset), out var v)) return v;
            var conj = i < p ? s.Prefix[(int)i] : s.Rest;
            for (int j = 0; j < m; j++) if ((subset & (1 << j)) != 0) conj = conj.And(s.Contains[j].Schema);
            return variants[(i, subset)] = Emit(conj, depth + 1);
        }
        var rules = new Dictionary<(long, int), GrammarNode>();
        // After i ≥ 1 items with the conditions in mark met.
        GrammarNode After(long i, int mark)
        {
            long at = Math.Min(i, max >= 0 ? max : cap);
            if (rules.TryGetValue((at, mark), out var done)) return done;
            int rule = _g.AddRule("contains-items");
            rules[(at, mark)] = Ref(rule);
            var alts = new List<GrammarNode>();
            if (mark == full && i >= min) alts.Add(Seq(_ws, Literal("]")));
            if (max < 0 || i < max)
                for (int subset = 0; subset <= full; subset++)
                {
                    var item = Variant(i, subset);
                    if (!IsNothing(item)) alts.Add(Seq(_sep, item, After(Math.Min(i + 1, max >= 0 ? max : cap), mark | subset)));
                }
            _g.Define(rule, Alt([.. alts]));
            return Ref(rule);
        }
        var first = new List<GrammarNode>();
        if (max != 0)
            for (int subset = 0; subset <= full; subset++)
            {
                var item = Variant(0, subset);
                if (!IsNothing(item)) first.Add(Seq(item, After(1, subset)));
            }
        return first.Count == 0 ? Nothing : Seq(Literal("["), _ws, Alt([.. first]));
    }

    /// <summary>Most distinct values an array with uniqueItems may choose from (the grammar tracks the set used so far).</summary>
    private const int MaxUniqueValues = 10;

    /// <summary>
    /// uniqueItems over a finite set of item values (enums): one rule per set of values used so far, each value
    /// allowed once. Other item schemas cannot be checked for repeats by a grammar: a compile error.
    /// </summary>
    private GrammarNode UniqueArray(Sch s, long min, long max, string where, int depth)
    {
        var values = new List<JsonElement>();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        bool finite = s.Prefix.Count == 0 && s.Rest.Locs.Count > 0;
        if (finite)
            foreach (var term in Expand(s.Rest, depth + 1))
            {
                var ts = Merge(term);
                if (!Satisfiable(ts)) continue;
                if (ts.Enums.Count == 0) { finite = false; break; }
                foreach (var v in FilteredEnum(ts, quick: false))
                    if (keys.Add(Canonical(v))) values.Add(v);
            }
        if (!finite || values.Count > MaxUniqueValues)
            throw Bad("uniqueItems", where, $"only items from a fixed set of at most {MaxUniqueValues} values can be kept distinct");
        int k = values.Count;
        var nodes = values.Select(v => ValueNode(v, 0)).ToList();
        if (max < 0 || max > k) max = k;
        if (min > max) return Nothing;
        var rules = new Dictionary<int, int>();
        GrammarNode After(int used)
        {
            if (rules.TryGetValue(used, out int r)) return Ref(r);
            r = _g.AddRule("unique-items");
            rules[used] = r;
            int count = System.Numerics.BitOperations.PopCount((uint)used);
            var alts = new List<GrammarNode>();
            if (count >= min) alts.Add(Seq(_ws, Literal("]")));
            if (count < max)
                for (int i = 0; i < k; i++)
                    if ((used & (1 << i)) == 0) alts.Add(Seq(_sep, nodes[i], After(used | (1 << i))));
            _g.Define(r, Alt([.. alts]));
            return Ref(r);
        }
        var first = new List<GrammarNode>();
        if (min == 0) first.Add(Literal("]"));
        if (max > 0)
            for (int i = 0; i < k; i++) first.Add(Seq(nodes[i], After(1 << i)));
        return Seq(Literal("["), _ws, Alt([.. first]));
    }

    // ---------------------------------------------------------------- objects

    /// <summary>What the object keywords say about the value of property <paramref name="name"/>.</summary>
    private Conj PropertyConj(Sch s, string name)
    {
        var locs = new List<Loc>();
        foreach (var part in s.Parts)
        {
            bool matched = false;
            foreach (var (n, schema) in part.Props)
                if (n == name) { locs.Add(schema); matched = true; }
            foreach (var (pattern, schema, where) in part.Patterns)
                if (PatternMatches(pattern, where, name)) { locs.Add(schema); matched = true; }
            if (!matched && part.Additional is { } extra) locs.Add(extra);
        }
        return Conj.Of(locs);
    }

    private readonly Dictionary<string, ByteAutomaton> _matchers = new(StringComparer.Ordinal);

    private bool PatternMatches(string pattern, string where, string text)
    {
        if (!_matchers.TryGetValue(pattern, out var m))
            _matchers[pattern] = m = ByteAutomaton.Compile(Grammar.Of(PatternNode(pattern, where)));
        return m.Matches(text);
    }

    /// <summary>The property names in order: every part's properties, then required names defined nowhere.</summary>
    private static List<string> PropertyNames(Sch s)
    {
        var names = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in s.Parts)
            foreach (var (n, _) in part.Props)
                if (seen.Add(n)) names.Add(n);
        foreach (var r in s.Required) if (seen.Add(r)) names.Add(r);
        return names;
    }

    /// <summary>Other properties: (key language, value schema) alternatives, keys never one of the named properties.</summary>
    private List<(CodepointNfa? Keys, Conj Value)> Extras(Sch s)
    {
        if (s.Parts.Count == 0) return [(null, Conj.True)];
        if (s.Parts.Count == 1 && s.Parts[0].Patterns.Count is > 0 and <= 4 && ExactExtras(s.Parts[0]) is { } exact) return exact;
        if (s.Parts.Count == 1)
        {
            var part = s.Parts[0];
            var patternValues = Conj.Of(part.Patterns.Select(p => p.Schema));
            var list = new List<(CodepointNfa?, Conj)>();
            if (part.Patterns.Count > 0)
                list.Add((CodepointNfa.Union([.. part.Patterns.Select(p => CodepointNfa.FromNode(PatternNode(p.Pattern, p.Where)))]), patternValues));
            // A key no pattern matches takes additionalProperties; one that some pattern matches must satisfy them all
            // (the key grammar cannot tell which matched, so the value must satisfy every schema that could apply).
            if (part.Additional is not { El.ValueKind: JsonValueKind.False })
                list.Add((null, part.Additional is { } a ? Conj.Of(a).And(patternValues) : patternValues));
            return list;
        }
        CodepointNfa? keys = null;
        var value = Conj.True;
        foreach (var part in s.Parts)
        {
            value = value.And(Conj.Of(part.Patterns.Select(p => p.Schema)));
            if (part.Additional is { El.ValueKind: JsonValueKind.False })
            {
                if (part.Patterns.Count == 0) return [];
                var lang = CodepointNfa.Union([.. part.Patterns.Select(p => CodepointNfa.FromNode(PatternNode(p.Pattern, p.Where)))]);
                keys = keys is null ? lang : keys.Intersect(lang);
            }
            else if (part.Additional is { } a) value = value.And(Conj.Of(a));
        }
        return [(keys, value)];
    }

    /// <summary>
    /// Other keys split by which patterns they match: a key matching exactly the patterns in T takes the schemas of T,
    /// a key matching none takes additionalProperties. Null when a pattern is too complex to complement.
    /// </summary>
    private List<(CodepointNfa? Keys, Conj Value)>? ExactExtras(ObjPart part)
    {
        int k = part.Patterns.Count;
        var langs = part.Patterns.Select(p => CodepointNfa.FromNode(PatternNode(p.Pattern, p.Where))).ToList();
        var complements = new List<CodepointNfa>();
        try
        {
            foreach (var l in langs) complements.Add(l.Complement());
        }
        catch (GrammarException)
        {
            return null;
        }
        var list = new List<(CodepointNfa?, Conj)>();
        for (int subset = 1; subset < 1 << k; subset++)
        {
            CodepointNfa? lang = null;
            var value = Conj.True;
            for (int i = 0; i < k; i++)
            {
                var piece = (subset & (1 << i)) != 0 ? langs[i] : complements[i];
                lang = lang is null ? piece : lang.Intersect(piece);
                if ((subset & (1 << i)) != 0) value = value.And(Conj.Of(part.Patterns[i].Schema));
            }
            if (!lang!.IsEmpty()) list.Add((lang, value));
        }
        if (part.Additional is not { El.ValueKind: JsonValueKind.False })
        {
            var none = complements.Aggregate((a, b) => a.Intersect(b));
            if (!none.IsEmpty()) list.Add((none, part.Additional is { } a ? Conj.Of(a) : Conj.True));
        }
        return list;
    }

    /// <summary>The strings a schema allows (for keys: propertyNames), as a code point automaton.</summary>
    private CodepointNfa NameLanguage(Conj conj, string where, int depth, bool forComplement)
    {
        var langs = new List<CodepointNfa>();
        foreach (var t in Expand(conj, depth + 1))
        {
            var ts = Merge(t);
            if (!Satisfiable(ts) || (ts.Types & Sch.TStr) == 0) continue;
            // Our formats are stricter than some validators': their complement would admit names those call valid.
            if (forComplement && ts.Formats.Any(f => !JsonSchemaFormats.IsNumeric(f.Format)))
                throw Bad("propertyNames", where, "a negated format");
            if (ts.Enums.Count > 0)
            {
                var strings = FilteredEnum(ts, quick: false).Where(v => v.ValueKind == JsonValueKind.String).Select(v => v.GetString()!).ToList();
                langs.Add(CodepointNfa.FromNode(Alt([.. strings.Select(Literal)])));
                continue;
            }
            if (ts.Parts.Count > 0 || ts.Prefix.Count > 0 || ts.PropertyNames.Count > 0 || ts.Exists.Count > 0 || ts.Contains.Count > 0)
                throw Bad("propertyNames", where, "only string keywords are supported in it");
            langs.Add(StringNfa(ts));
        }
        return langs.Count == 0 ? CodepointNfa.Length(0, 0, CodepointSet.All).Intersect(CodepointNfa.Length(1, 1, CodepointSet.All)) : CodepointNfa.Union([.. langs]);
    }

    /// <summary>Whether key <paramref name="name"/> is in the key set (strictly: see <see cref="NameLanguage"/>).</summary>
    private bool KeyIn(MemberKeys spec, string where, string name, int depth)
    {
        if (spec.AnyPatterns.Count > 0 && !spec.AnyPatterns.Any(p => PatternMatches(p, where, name))) return false;
        if (spec.NotNames.Contains(name) || spec.NotPatterns.Any(p => PatternMatches(p, where, name))) return false;
        return spec.KeyNot is null || !Validate(JsonSerializer.SerializeToElement(name), Conj.Of(spec.KeyNot), depth + 1);
    }

    /// <summary>The key set as an automaton.</summary>
    private CodepointNfa KeySet(MemberKeys spec, string where, int depth)
    {
        var lang = spec.AnyPatterns.Count > 0
            ? CodepointNfa.Union([.. spec.AnyPatterns.Select(p => CodepointNfa.FromNode(PatternNode(p, where)))])
            : CodepointNfa.Length(0, -1, CodepointSet.All);
        if (spec.NotNames.Count > 0) lang = lang.Intersect(CodepointNfaExtensions.NotIn(spec.NotNames));
        foreach (var p in spec.NotPatterns) lang = lang.Intersect(CodepointNfa.FromNode(PatternNode(p, where)).Complement());
        if (spec.KeyNot is { } keyNot) lang = lang.Intersect(NameLanguage(Conj.Of(keyNot), where, depth, forComplement: true).Complement());
        return lang;
    }

    private GrammarNode EmitObject(Sch s, int depth)
    {
        long minP = s.MinProps, maxP = s.MaxProps;
        if (maxP >= 0 && minP > maxP) return Nothing;
        // propertyNames: the named properties must pass it; other keys are limited to its string language.
        var nameLimits = new List<CodepointNfa>();
        var nameConjs = new List<Conj>();
        foreach (var (schema, where) in s.PropertyNames)
        {
            var conj = Conj.Of(schema);
            if (Expand(conj, depth + 1).Any(t => AllStrings(Merge(t)))) continue;
            nameConjs.Add(conj);
            nameLimits.Add(NameLanguage(conj, where, depth, forComplement: false));
        }

        // "Some member with a key in K and a value in V" conditions (negated object keywords): each named property
        // and each kind of other key comes in variants per set of conditions it meets.
        if (s.Exists.Count > 3) throw Bad("not", s.Where, "more than 3 negated object keywords on one object");
        int m = s.Exists.Count, full = (1 << m) - 1;
        var keySets = s.Exists.Select(e => KeySet(e.Keys, e.Where, depth)).ToList();

        var names = PropertyNames(s);
        var props = new List<(List<(GrammarNode Node, int Mark)> Variants, bool Required)>();
        foreach (var name in names)
        {
            bool req = s.Required.Contains(name);
            var nameValue = JsonSerializer.SerializeToElement(name);
            if (!nameConjs.All(c => Validate(nameValue, c, depth + 1)))
            {
                if (req) return Nothing;
                continue;
            }
            var baseConj = PropertyConj(s, name);
            int applicable = 0;
            for (int j = 0; j < m; j++)
                if (KeyIn(s.Exists[j].Keys, s.Exists[j].Where, name, depth)) applicable |= 1 << j;
            var key = JsonStringEncoding.Quoted(name);
            var variants = new List<(GrammarNode, int)>();
            for (int subset = 0; subset <= full; subset++)
            {
                if ((subset & ~applicable) != 0) continue;
                var conj = baseConj;
                bool redundant = false;
                for (int j = 0; j < m; j++)
                    if ((subset & (1 << j)) != 0)
                    {
                        if (s.Exists[j].Value is { } v) conj = conj.And(Conj.Of(v));
                    }
                    else if ((applicable & (1 << j)) != 0 && s.Exists[j].Value is null) redundant = true; // presence alone meets it
                if (redundant) continue;
                var value = Emit(conj, depth + 1);
                if (!IsNothing(value)) variants.Add((Seq(key, _colon, value), subset));
            }
            if (variants.Count == 0)
            {
                if (req) return Nothing;
                continue;
            }
            props.Add((variants, req));
        }

        // Other keys: never a named property (even one left out above), within the key languages.
        var extras = new List<(GrammarNode Node, int Mark)>();
        var excluded = CodepointNfaExtensions.NotIn(names);
        foreach (var (keys, valueConj) in Extras(s))
        {
            var lang0 = keys is null ? excluded : keys.Intersect(excluded);
            foreach (var limit in nameLimits) lang0 = lang0.Intersect(limit);
            for (int subset = 0; subset <= full; subset++)
            {
                var lang = lang0;
                var conj = valueConj;
                for (int j = 0; j < m; j++)
                    if ((subset & (1 << j)) != 0)
                    {
                        lang = lang.Intersect(keySets[j]);
                        if (s.Exists[j].Value is { } v) conj = conj.And(Conj.Of(v));
                    }
                if (lang.IsEmpty()) continue;
                var value = Emit(conj, depth + 1);
                if (IsNothing(value)) continue;
                var key = names.Count == 0 && keys is null && nameLimits.Count == 0 && subset == 0
                    ? Seq(Literal("\""), Repeat(JsonStringEncoding.AnyChar, 0, -1), Literal("\""))
                    : KeyNode(lang);
                extras.Add((Seq(key, _colon, value), subset));
            }
        }
        // Kinds of other keys with the same conditions share one node.
        var grouped = extras.GroupBy(e => e.Mark).Select(g => (Shared(Alt([.. g.Select(e => e.Node)]), "extra-property"), g.Key)).ToList();
        return Members(props, grouped, full, minP, maxP, s.Where);
    }

    private GrammarNode KeyNode(CodepointNfa lang)
    {
        var content = lang.ToGrammar(_g, EncodedChar, "key");
        return Seq(Literal("\""), content, Literal("\""));
    }

    private static bool AllStrings(Sch s) =>
        (s.Types & Sch.TStr) != 0 && s.Enums.Count == 0 && s.NotValues.Count == 0 && s.MinLen == 0 && s.MaxLen < 0 &&
        s.Patterns.Count == 0 && s.NotPatterns.Count == 0 && s.Formats.All(f => JsonSchemaFormats.IsNumeric(f.Format));

    /// <summary>
    /// "{" members "}": the named properties in order (required ones present, optional ones skippable), then other
    /// properties; commas right for every choice. Built right to left, one rule per position (and per count of
    /// properties so far when minProperties/maxProperties need counting, and per set of "some member" conditions met
    /// so far), so size stays linear in the properties.
    /// </summary>
    private GrammarNode Members(List<(List<(GrammarNode Node, int Mark)> Variants, bool Required)> props, List<(GrammarNode Node, int Mark)> extras,
        int full, long minP, long maxP, string where)
    {
        int n = props.Count;
        if (maxP > n + MaxCount) maxP = n + MaxCount;
        bool counting = minP > 0 || maxP >= 0;
        long cap = !counting ? 1 : maxP >= 0 ? maxP : Math.Max(1, minP);
        if (counting && (long)(n + 1) * (cap + 1) * (full + 1) > 200_000) throw Bad(maxP >= 0 ? "maxProperties" : "minProperties", where, "too many properties to count");
        long Cap(long k) => counting ? Math.Min(k, cap + (maxP >= 0 ? 1 : 0)) : 1;
        bool plain = !counting && full == 0;
        bool inline = plain && props.All(p => p.Required);
        GrammarNode? extra = extras.Count == 0 ? null : Alt([.. extras.Select(e => e.Node)]);
        var memo = new Dictionary<(int, long, int), GrammarNode>();
        var extraMemo = new Dictionary<(long, int, bool), GrammarNode>();

        GrammarNode ExtrasAfter(long k, bool first, int mark)
        {
            if (full == 0)
            {
                long eMin = counting ? Math.Max(0, minP - k) : 0;
                long eMax = maxP >= 0 ? maxP - k : -1;
                if (eMax > MaxCount) eMax = MaxCount;
                if (extra is null || eMax == 0) return eMin > 0 ? Nothing : first ? Nothing : Empty;
                if (first) return Seq(extra, Repeat(Seq(_sep, extra), (int)Math.Max(0, eMin - 1), eMax < 0 ? -1 : (int)eMax - 1));
                return Repeat(Seq(_sep, extra), (int)eMin, (int)eMax);
            }
            // Conditions to meet: one rule per (count, conditions met), other keys one at a time.
            if (extraMemo.TryGetValue((k, mark, first), out var done)) return done;
            int rule = _g.AddRule("other-properties");
            extraMemo[(k, mark, first)] = Ref(rule);
            var alts = new List<GrammarNode>();
            if (!first && mark == full && (!counting || k >= minP)) alts.Add(Empty);
            if (maxP < 0 || k < maxP)
                foreach (var (node, m) in extras)
                    alts.Add(Seq(first ? Empty : _sep, node, ExtrasAfter(Cap(k + 1), false, mark | m)));
            _g.Define(rule, Alt([.. alts]));
            return Ref(rule);
        }

        // Members from position i on, k ≥ 1 emitted already, the conditions in mark met.
        GrammarNode Rest(int i, long k, int mark)
        {
            if (maxP >= 0 && k > maxP) return Nothing;
            if (i == n) return ExtrasAfter(k, false, mark);
            if (memo.TryGetValue((i, k, mark), out var done)) return done;
            var (variants, required) = props[i];
            GrammarNode body;
            if (plain)
            {
                var kv = Alt([.. variants.Select(v => v.Node)]);
                body = Seq(required ? Seq(_sep, kv) : Optional(Seq(_sep, kv)), Rest(i + 1, k, mark));
            }
            else
            {
                var alts = variants.Select(v => Seq(_sep, v.Node, Rest(i + 1, Cap(k + 1), mark | v.Mark))).ToList();
                if (!required) alts.Add(Rest(i + 1, k, mark));
                body = Alt([.. alts]);
            }
            GrammarNode node = inline ? body : Ref(_g.AddRule("properties", body));
            memo[(i, k, mark)] = node;
            return node;
        }

        // Members from position i on, none emitted yet: the first one present is written without a comma.
        GrammarNode First(int i)
        {
            if (i == n) return ExtrasAfter(0, true, 0);
            var (variants, required) = props[i];
            var alts = variants.Select(v => Seq(v.Node, Rest(i + 1, Cap(1), v.Mark))).ToList();
            if (!required) alts.Add(First(i + 1));
            return Alt([.. alts]);
        }

        var members = First(0);
        var result = new List<GrammarNode>();
        if (!props.Any(p => p.Required) && minP == 0 && full == 0) result.Add(Literal("}"));
        if (!IsNothing(members)) result.Add(Seq(members, _ws, Literal("}")));
        if (result.Count == 0) return Nothing;
        return Seq(Literal("{"), _ws, Alt([.. result]));
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- validating values (enum, const, property names)

    private static int TypeOf(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null => Sch.TNull,
        JsonValueKind.True or JsonValueKind.False => Sch.TBool,
        JsonValueKind.Object => Sch.TObj,
        JsonValueKind.Array => Sch.TArr,
        JsonValueKind.String => Sch.TStr,
        JsonValueKind.Number => Dec.TryParse(v.GetRawText(), out var d) && d.IsInteger ? Sch.TInt : Sch.TFrac,
        _ => 0,
    };

    private bool Validate(JsonElement v, Conj c, int depth, bool lenient = false)
    {
        if (depth > MaxDepth) throw new GrammarException($"value nesting deeper than {MaxDepth} while checking enum values");
        List<List<Loc>> terms;
        _descent++;
        try
        {
            terms = Expand(c, depth);
        }
        catch (PendingExpansion)
        {
            // Not decidable yet: "maybe valid" for proofs, "not valid" where it only filters what is emitted.
            return lenient;
        }
        finally
        {
            _descent--;
        }
        return terms.Any(t => Validate(v, Merge(t), depth, lenient));
    }

    /// <summary>
    /// Whether <paramref name="v"/> satisfies the plain keywords of <paramref name="s"/> (the same meaning the grammar
    /// gives them). <paramref name="lenient"/> passes every format: what a looser validator might accept, for proofs
    /// that two schemas share no value (our formats are stricter than some validators').
    /// </summary>
    private bool Validate(JsonElement v, Sch s, int depth, bool lenient = false)
    {
        Tick(s.Where);
        if ((TypeOf(v) & s.Types) == 0) return false;
        foreach (var e in s.Enums) if (!e.Any(w => JsonEquals(v, w))) return false;
        if (s.NotValues.Any(w => JsonEquals(v, w))) return false;
        switch (v.ValueKind)
        {
            case JsonValueKind.String:
                {
                    string text = v.GetString()!;
                    long length = text.EnumerateRunes().Count();
                    if (length < s.MinLen || (s.MaxLen >= 0 && length > s.MaxLen)) return false;
                    foreach (var (p, where) in s.Patterns) if (!PatternMatches(p, where, text)) return false;
                    foreach (var (p, where) in s.NotPatterns) if (PatternMatches(p, where, text)) return false;
                    if (!lenient)
                        foreach (var (f, _) in s.Formats)
                            if (JsonSchemaFormats.String(f) is { } fmt && (!FormatMatches(f, fmt.Node, text) || (fmt.MaxLength >= 0 && length > fmt.MaxLength))) return false;
                    return true;
                }
            case JsonValueKind.Number:
                {
                    if (!Dec.TryParse(v.GetRawText(), out var d)) return false;
                    var c = new NumberConstraint(s.Min, s.MinExcl, s.Max, s.MaxExcl, false, null);
                    if (!c.Allows(d)) return false;
                    foreach (var step in s.Steps) if (!d.IsMultipleOf(step)) return false;
                    if (!lenient)
                        foreach (var (f, _) in s.Formats)
                            if (JsonSchemaFormats.IntegerRange(f) is { } r && (d < r.Min || d > r.Max)) return false;
                    return true;
                }
            case JsonValueKind.Array:
                {
                    int n = v.GetArrayLength();
                    if (n < s.MinItems || (s.MaxItems >= 0 && n > s.MaxItems)) return false;
                    int i = 0;
                    var items = v.EnumerateArray().ToList();
                    foreach (var item in items)
                    {
                        var conj = i < s.Prefix.Count ? s.Prefix[i] : s.Rest;
                        if (!Validate(item, conj, depth + 1, lenient)) return false;
                        i++;
                    }
                    foreach (var (schema, _) in s.Contains)
                        if (!items.Any(item => Validate(item, schema, depth + 1, lenient))) return false;
                    if (s.UniqueWhere is not null)
                        for (int a = 0; a < n; a++)
                            for (int b = a + 1; b < n; b++)
                                if (JsonEquals(items[a], items[b])) return false;
                    return true;
                }
            case JsonValueKind.Object:
                {
                    var keys = new List<string>();
                    foreach (var p in v.EnumerateObject())
                    {
                        keys.Add(p.Name);
                        if (!Validate(p.Value, PropertyConj(s, p.Name), depth + 1, lenient)) return false;
                        var name = JsonSerializer.SerializeToElement(p.Name);
                        foreach (var (schema, _) in s.PropertyNames) if (!Validate(name, Conj.Of(schema), depth + 1, lenient)) return false;
                    }
                    if (s.Required.Any(r => !keys.Contains(r))) return false;
                    foreach (var (spec, value, where) in s.Exists)
                        if (!v.EnumerateObject().Any(m => KeyIn(spec, where, m.Name, depth) && (value is null || Validate(m.Value, Conj.Of(value), depth + 1, lenient))))
                            return false;
                    if (keys.Count < s.MinProps || (s.MaxProps >= 0 && keys.Count > s.MaxProps)) return false;
                    return true;
                }
            default:
                return true;
        }
    }

    private readonly Dictionary<string, ByteAutomaton> _formats = new(StringComparer.Ordinal);

    private bool FormatMatches(string format, GrammarNode node, string text)
    {
        if (!_formats.TryGetValue(format, out var m)) _formats[format] = m = ByteAutomaton.Compile(Grammar.Of(node));
        return m.Matches(text);
    }

    /// <summary>JSON equality: numbers by value (1 = 1.0), objects regardless of key order.</summary>
    internal static bool JsonEquals(JsonElement a, JsonElement b)
    {
        int ta = TypeOf(a) == Sch.TInt ? Sch.TFrac : TypeOf(a), tb = TypeOf(b) == Sch.TInt ? Sch.TFrac : TypeOf(b);
        if (ta != tb) return false;
        switch (a.ValueKind)
        {
            case JsonValueKind.Number:
                return Dec.TryParse(a.GetRawText(), out var x) && Dec.TryParse(b.GetRawText(), out var y) && x.CompareTo(y) == 0;
            case JsonValueKind.String: return a.GetString() == b.GetString();
            case JsonValueKind.Array:
                {
                    if (a.GetArrayLength() != b.GetArrayLength()) return false;
                    using var ea = a.EnumerateArray().GetEnumerator();
                    using var eb = b.EnumerateArray().GetEnumerator();
                    while (ea.MoveNext() && eb.MoveNext()) if (!JsonEquals(ea.Current, eb.Current)) return false;
                    return true;
                }
            case JsonValueKind.Object:
                {
                    var pa = a.EnumerateObject().ToList();
                    var pb = b.EnumerateObject().ToList();
                    if (pa.Count != pb.Count) return false;
                    foreach (var p in pa)
                        if (!b.TryGetProperty(p.Name, out var w) || !JsonEquals(p.Value, w)) return false;
                    return true;
                }
            default: return a.ValueKind == b.ValueKind; // true, false, null
        }
    }

    /// <summary>A key identifying a JSON value up to equality (for de-duplicating enum values).</summary>
    private static string Canonical(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Number => "n" + (Dec.TryParse(v.GetRawText(), out var d) ? d.ToString() : v.GetRawText()),
        JsonValueKind.String => "s" + v.GetString(),
        JsonValueKind.Array => "[" + string.Join(",", v.EnumerateArray().Select(Canonical)) + "]",
        JsonValueKind.Object => "{" + string.Join(",", v.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => JsonSerializer.Serialize(p.Name) + ":" + Canonical(p.Value))) + "}",
        _ => v.GetRawText(),
    };

    /// <summary>The spellings of one JSON value: serializer escapes in strings, whitespace between tokens, numbers as serializers write them.</summary>
    private GrammarNode ValueNode(JsonElement v, int depth)
    {
        if (depth > 2 * MaxDepth) throw new GrammarException("an enum or const value is nested too deeply");
        switch (v.ValueKind)
        {
            case JsonValueKind.String: return JsonStringEncoding.Quoted(v.GetString()!);
            case JsonValueKind.Number: return Alt([.. NumberSpellings(v.GetRawText()).Select(Literal)]);
            case JsonValueKind.Array:
                return Delimited("[", [.. v.EnumerateArray().Select(x => ValueNode(x, depth + 1))], "]");
            case JsonValueKind.Object:
                return Delimited("{", [.. v.EnumerateObject().Select(p => Seq(JsonStringEncoding.Quoted(p.Name), _colon, ValueNode(p.Value, depth + 1)))], "}");
            default: return Literal(v.GetRawText());
        }
    }

    /// <summary>A fixed JSON array or object: the items in order between the brackets, with the separators' whitespace.</summary>
    private GrammarNode Delimited(string open, List<GrammarNode> items, string close)
    {
        var seq = new List<GrammarNode> { Literal(open), _ws };
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) seq.Add(_sep);
            seq.Add(items[i]);
        }
        if (items.Count > 0) seq.Add(_ws);
        seq.Add(Literal(close));
        return Seq([.. seq]);
    }

    /// <summary>
    /// How serializers write a number: as written in the schema, as a plain decimal, an integral value also with
    /// ".0", and the shortest round-trip form of the double (Python's repr: 1e-05, 1e+16).
    /// </summary>
    internal static IEnumerable<string> NumberSpellings(string raw)
    {
        var set = new List<string> { raw };
        if (!Dec.TryParse(raw, out var d)) return set;
        var (i, f) = d.Digits();
        if (i.Length + f.Length <= 400)
        {
            string plain = d.ToString();
            set.Add(plain);
            if (d.IsInteger) set.Add(plain + ".0");
        }
        if (double.TryParse(raw, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double x) && double.IsFinite(x))
        {
            // Shortest round-trip digits, then Python's layout.
            string shortest = x.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
            if (Dec.TryParse(shortest.Replace("E", "e"), out var sd) && sd.CompareTo(d) == 0)
            {
                var digits = System.Numerics.BigInteger.Abs(sd.Mantissa).ToString(System.Globalization.CultureInfo.InvariantCulture);
                int exp10 = sd.Exponent + digits.Length - 1;
                string sign = sd.Sign < 0 ? "-" : "";
                string py;
                if (exp10 >= -4 && exp10 < 16)
                {
                    var (pi, pf) = sd.Digits();
                    py = sign + pi + "." + (pf.Length == 0 ? "0" : pf);
                }
                else
                {
                    string mant = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
                    py = $"{sign}{mant}e{(exp10 < 0 ? "-" : "+")}{Math.Abs(exp10):00}";
                }
                set.Add(py);
            }
        }
        return set.Distinct();
    }
}

internal sealed partial class SchemaCompiler
{
    // ---------------------------------------------------------------- disjointness (oneOf)

    private bool DisjointConj(Conj a, Conj b, int depth)
    {
        if (depth > MaxDepth) return false;
        List<List<Loc>> ta, tb;
        _descent++;
        try
        {
            ta = Expand(a, depth);
            tb = Expand(b, depth);
        }
        catch (PendingExpansion)
        {
            return false;
        }
        finally
        {
            _descent--;
        }
        foreach (var x in ta)
            foreach (var y in tb)
            {
                var sx = Merge(x);
                var sy = Merge(y);
                if (Satisfiable(sx) && Satisfiable(sy) && !Disjoint(sx, sy, depth + 1)) return false;
            }
        return true;
    }

    /// <summary>The keys an object may have (named properties not ruled out, other keys' languages), or null when any key may.</summary>
    private CodepointNfa? KeyLanguage(Sch s)
    {
        try
        {
            var parts = new List<CodepointNfa>();
            foreach (var (keys, value) in Extras(s))
            {
                if (keys is null) return null;
                if (value.Locs.Any(l => l.El.ValueKind == JsonValueKind.False)) continue;
                parts.Add(keys);
            }
            var names = PropertyNames(s).Where(n => !Forbidden(s, n)).ToList();
            if (names.Count > 0) parts.Add(CodepointNfa.FromNode(Alt([.. names.Select(Literal)])));
            return parts.Count == 0 ? CodepointNfa.Length(0, 0, CodepointSet.None).Intersect(CodepointNfa.Length(1, 1, CodepointSet.All)) : CodepointNfa.Union([.. parts]);
        }
        catch (GrammarException)
        {
            return null;
        }
    }

    /// <summary>True only when no value can satisfy both (a proof; false means "maybe overlapping").</summary>
    private bool Disjoint(Sch a, Sch b, int depth)
    {
        if (depth > MaxDepth) return false;
        Tick(a.Where);
        if (a.Enums.Count > 0) return FilteredEnum(a, quick: false, lenient: true).All(v => !Validate(v, b, depth, lenient: true));
        if (b.Enums.Count > 0) return FilteredEnum(b, quick: false, lenient: true).All(v => !Validate(v, a, depth, lenient: true));
        int common = a.Types & b.Types;
        if ((common & Sch.TNull) != 0 || (common & Sch.TBool) != 0) return false;
        if ((common & Sch.TNum) != 0)
        {
            var lo = new Sch();
            lo.Add(a);
            lo.Add(b);
            if (!new NumberConstraint(lo.Min, lo.MinExcl, lo.Max, lo.MaxExcl, false, null).IsEmptyRange()) return false;
        }
        if ((common & Sch.TStr) != 0)
        {
            long min = Math.Max(a.MinLen, b.MinLen);
            long max = a.MaxLen < 0 ? b.MaxLen : b.MaxLen < 0 ? a.MaxLen : Math.Min(a.MaxLen, b.MaxLen);
            if (!(max >= 0 && min > max))
            {
                var both = new Sch();
                both.Add(a);
                both.Add(b);
                // Formats prove nothing here: a looser validator's format may hold where ours does not.
                both.Formats.Clear();
                if (both.Patterns.Count + both.NotPatterns.Count + both.NotValues.Count == 0) return false;
                try
                {
                    if (!StringNfa(both).IsEmpty()) return false;
                }
                catch (GrammarException)
                {
                    return false;
                }
            }
        }
        if ((common & Sch.TArr) != 0)
        {
            long min = Math.Max(a.MinItems, b.MinItems);
            long max = a.MaxItems < 0 ? b.MaxItems : b.MaxItems < 0 ? a.MaxItems : Math.Min(a.MaxItems, b.MaxItems);
            bool apart = max >= 0 && min > max;
            for (int i = 0; !apart && i < min && i < 64; i++)
                apart = DisjointConj(i < a.Prefix.Count ? a.Prefix[i] : a.Rest, i < b.Prefix.Count ? b.Prefix[i] : b.Rest, depth + 1);
            if (!apart) return false;
        }
        if ((common & Sch.TObj) != 0)
        {
            long min = Math.Max(a.MinProps, b.MinProps);
            long max = a.MaxProps < 0 ? b.MaxProps : b.MaxProps < 0 ? a.MaxProps : Math.Min(a.MaxProps, b.MaxProps);
            bool apart = max >= 0 && min > max;
            foreach (var r in a.Required)
            {
                if (apart) break;
                apart = Forbidden(b, r) || (b.Required.Contains(r) && DisjointConj(PropertyConj(a, r), PropertyConj(b, r), depth + 1));
            }
            foreach (var r in b.Required)
            {
                if (apart) break;
                apart = Forbidden(a, r);
            }
            // One side has at least one key, and no key is allowed on both sides.
            if (!apart && (a.MinProps > 0 || a.Required.Count > 0 || b.MinProps > 0 || b.Required.Count > 0) &&
                KeyLanguage(a) is { } ka && KeyLanguage(b) is { } kb)
                apart = ka.Intersect(kb).IsEmpty();
            if (!apart) return false;
        }
        return true;
    }
}
