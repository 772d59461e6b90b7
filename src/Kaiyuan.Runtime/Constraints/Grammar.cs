namespace Kaiyuan.Constraints;

/// <summary>
/// One piece of a grammar rule: a language over UTF-8 bytes. Every front end (JSON Schema, regular expressions, GBNF,
/// tool-call formats) builds these; <see cref="ByteAutomaton"/> runs them. Code points are always emitted as UTF-8.
/// </summary>
internal abstract record GrammarNode
{
    public static GrammarNode Empty { get; } = new SequenceNode([]);
    public static GrammarNode Nothing { get; } = new AlternativesNode([]);

    public static GrammarNode Literal(string text) => new LiteralNode(System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>
    /// Marks a control token's spelling in a <see cref="TokenTrie"/>: 0xFF never occurs in UTF-8, so ordinary text
    /// can never produce a control token, and only a grammar that names one (<see cref="SpecialToken"/>) allows it.
    /// Text tokens holding a raw 0xFF byte (byte-fallback pieces) are left out of the trie for the same reason.
    /// </summary>
    public const byte SpecialTokenPrefix = 0xFF;

    /// <summary>Exactly the control token whose text is <paramref name="text"/> (e.g. DeepSeek's call markers).</summary>
    public static GrammarNode SpecialToken(string text) =>
        new LiteralNode([SpecialTokenPrefix, .. System.Text.Encoding.UTF8.GetBytes(text)]);

    /// <summary>
    /// Template text: literal, except that every <c>&lt;…&gt;</c> marker in it may also be written as the one control
    /// token of that text, as chat templates' markers are special tokens in some vocabularies and plain text in others.
    /// </summary>
    public static GrammarNode TemplateText(string text)
    {
        var parts = new List<GrammarNode>();
        int at = 0;
        while (at < text.Length)
        {
            int open = text.IndexOf('<', at);
            int close = open < 0 ? -1 : text.IndexOf('>', open + 1);
            if (close < 0) { parts.Add(Literal(text[at..])); break; }
            string marker = text[open..(close + 1)];
            if (open > at) parts.Add(Literal(text[at..open]));
            parts.Add(marker.Any(char.IsWhiteSpace) ? Literal(marker) : Alt(Literal(marker), SpecialToken(marker)));
            at = close + 1;
        }
        return Seq([.. parts]);
    }
    public static GrammarNode Chars(CodepointSet set) => new CharSetNode(set);
    public static GrammarNode ByteRange(byte lo, byte hi) => new ByteRangeNode(lo, hi);
    public static GrammarNode Ref(int rule) => new RuleRefNode(rule);

    /// <summary>The items in order; single items and empty sequences are simplified.</summary>
    public static GrammarNode Seq(params GrammarNode[] items)
    {
        var flat = new List<GrammarNode>(items.Length);
        foreach (var item in items)
            if (item is SequenceNode s) flat.AddRange(s.Items);
            else flat.Add(item);
        if (flat.Any(n => n is AlternativesNode { Items.Length: 0 })) return Nothing;
        return flat.Count == 1 ? flat[0] : new SequenceNode([.. flat]);
    }

    /// <summary>Any one of the items (none: matches nothing).</summary>
    public static GrammarNode Alt(params GrammarNode[] items)
    {
        var flat = new List<GrammarNode>(items.Length);
        foreach (var item in items)
            if (item is AlternativesNode a) flat.AddRange(a.Items);
            else flat.Add(item);
        return flat.Count == 1 ? flat[0] : new AlternativesNode([.. flat]);
    }

    public static GrammarNode Optional(GrammarNode item) => Repeat(item, 0, 1);

    /// <summary><paramref name="item"/> between <paramref name="min"/> and <paramref name="max"/> times (max -1: unbounded).</summary>
    public static GrammarNode Repeat(GrammarNode item, int min, int max)
    {
        if (min < 0 || (max >= 0 && max < min)) throw new GrammarException($"repetition {{{min},{max}}} is empty or negative");
        if (max == 0) return Empty;
        if (min == 1 && max == 1) return item;
        return new RepeatNode(item, min, max);
    }
}

/// <summary>Exactly these bytes.</summary>
internal sealed record LiteralNode(byte[] Bytes) : GrammarNode;

/// <summary>One code point from the set, as UTF-8.</summary>
internal sealed record CharSetNode(CodepointSet Set) : GrammarNode;

/// <summary>One raw byte in [Lo, Hi] (for byte-level pieces such as partial UTF-8; rarely needed).</summary>
internal sealed record ByteRangeNode(byte Lo, byte Hi) : GrammarNode;

internal sealed record SequenceNode(GrammarNode[] Items) : GrammarNode;

internal sealed record AlternativesNode(GrammarNode[] Items) : GrammarNode;

/// <summary>Item repeated Min..Max times; Max -1 is unbounded.</summary>
internal sealed record RepeatNode(GrammarNode Item, int Min, int Max) : GrammarNode;

/// <summary>A call of another rule (recursion allowed, left recursion is a compile error).</summary>
internal sealed record RuleRefNode(int Rule) : GrammarNode;

/// <summary>
/// A set of named rules with a root. Build it with <see cref="AddRule(string)"/> then <see cref="Define"/> (so rules
/// can refer to each other before their bodies exist), or <see cref="AddRule(string, GrammarNode)"/>.
/// </summary>
internal sealed class Grammar
{
    private readonly List<string> _names = [];
    private readonly List<GrammarNode?> _bodies = [];
    private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);

    public int RuleCount => _names.Count;
    public int Root { get; set; }
    public string RuleName(int rule) => _names[rule];
    public GrammarNode Body(int rule) => _bodies[rule] ?? throw new GrammarException($"rule '{_names[rule]}' is used but never defined");

    /// <summary>Declares a rule; a name already taken gets a numeric suffix. Returns its index.</summary>
    public int AddRule(string name)
    {
        string unique = name;
        for (int i = 2; _byName.ContainsKey(unique); i++) unique = name + "-" + i;
        _byName[unique] = _names.Count;
        _names.Add(unique);
        _bodies.Add(null);
        return _names.Count - 1;
    }

    public int AddRule(string name, GrammarNode body)
    {
        int rule = AddRule(name);
        Define(rule, body);
        return rule;
    }

    public void Define(int rule, GrammarNode body) => _bodies[rule] = body;

    public bool IsDefined(int rule) => _bodies[rule] is not null;

    public int? Find(string name) => _byName.TryGetValue(name, out int r) ? r : null;

    /// <summary>A grammar of one rule.</summary>
    public static Grammar Of(GrammarNode root)
    {
        var g = new Grammar();
        g.Root = g.AddRule("root", root);
        return g;
    }
}

/// <summary>A grammar, schema or pattern that cannot be compiled: the message says what and where.</summary>
public sealed class GrammarException(string message) : Exception(message);
