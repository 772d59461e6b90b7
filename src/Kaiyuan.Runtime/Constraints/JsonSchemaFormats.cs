using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Constraints;

/// <summary>
/// The string languages of JSON Schema <c>format</c> values, as code-point-level grammar nodes (the schema compiler
/// JSON-encodes them). Written strictly (RFC 3339 dates with real month lengths and leap years, RFC 4291 IPv6, ...)
/// so a format never lets through a string a validator would refuse.
/// </summary>
internal static class JsonSchemaFormats
{
    /// <summary>Formats that describe numbers: they limit integers (int32, int64) or nothing (float, double).</summary>
    public static bool IsNumeric(string format) => format is "int32" or "int64" or "float" or "double";

    /// <summary>OpenAPI formats that are annotations only (no validator checks them): any string.</summary>
    public static bool IsAnnotation(string format) => format is "byte" or "binary" or "password";

    /// <summary>Inclusive integer limits of a numeric format, or null for float/double.</summary>
    public static (Dec Min, Dec Max)? IntegerRange(string format) => format switch
    {
        "int32" => (new Dec(int.MinValue, 0), new Dec(int.MaxValue, 0)),
        "int64" => (new Dec(long.MinValue, 0), new Dec(long.MaxValue, 0)),
        _ => null,
    };

    /// <summary>The language of a string format and its longest length (-1: none), or null when the format is unknown.</summary>
    public static (GrammarNode Node, int MaxLength)? String(string format) =>
        Cache.GetOrAdd(format, f => Build(f) is { } r ? r : null);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, (GrammarNode, int)?> Cache = new(StringComparer.Ordinal);

    private static (GrammarNode Node, int MaxLength)? Build(string format) => format switch
    {
        "date-time" => (Seq(Date, Chars(CodepointSet.Of("Tt")), Time), -1),
        "date" => (Date, -1),
        "time" => (Time, -1),
        "duration" => (Duration, -1),
        "uuid" => (Uuid, -1),
        "email" => (Email, -1),
        "ipv4" => (Ipv4, -1),
        "ipv6" => (Ipv6, -1),
        "hostname" => (Hostname, 253),
        "uri" => (Uri(false), -1),
        "iri" => (Uri(true), -1),
        "uri-reference" => (UriReference(false), -1),
        "iri-reference" => (UriReference(true), -1),
        "json-pointer" => (JsonPointer, -1),
        "relative-json-pointer" => (Seq(NonNegativeInteger, Alt(Literal("#"), JsonPointer)), -1),
        _ => null,
    };

    private static GrammarNode D(char lo, char hi) => Chars(CodepointSet.Range(lo, hi));
    private static readonly GrammarNode Digit = D('0', '9');
    private static GrammarNode Digits(int n) => Repeat(Digit, n, n);
    private static readonly GrammarNode Hex = Chars(CodepointSet.Of("0123456789abcdefABCDEF"));
    private static readonly GrammarNode NonNegativeInteger = Alt(Literal("0"), Seq(D('1', '9'), Repeat(Digit, 0, -1)));

    private static readonly GrammarNode Octet = Alt(
        Digit, Seq(D('1', '9'), Digit), Seq(Literal("1"), Digit, Digit), Seq(Literal("2"), D('0', '4'), Digit), Seq(Literal("25"), D('0', '5')));

    private static readonly GrammarNode Ipv4 = Seq(Octet, Literal("."), Octet, Literal("."), Octet, Literal("."), Octet);

    private static readonly CodepointSet AlphaNum = CodepointSet.Range('a', 'z').Union(CodepointSet.Range('A', 'Z')).Union(CodepointSet.Range('0', '9'));

    /// <summary>A DNS label: 1-63 letters, digits and inner hyphens.</summary>
    private static readonly GrammarNode Label =
        Seq(Chars(AlphaNum), Optional(Seq(Repeat(Chars(AlphaNum.Union(CodepointSet.Single('-'))), 0, 61), Chars(AlphaNum))));

    private static readonly GrammarNode Hostname = Seq(Label, Repeat(Seq(Literal("."), Label), 0, -1));

    private static readonly CodepointSet IriExtra = CodepointSet.Range(0xA0, 0xD7FF).Union(CodepointSet.Range(0xF900, 0xFDCF))
        .Union(CodepointSet.Range(0xFDF0, 0xFFEF)).Union(CodepointSet.Range(0x10000, 0xEFFFD));

    /// <summary>RFC 3339 full-date with each month's real length and 29 February only in leap years.</summary>
    private static readonly GrammarNode Date = BuildDate();

    private static GrammarNode BuildDate()
    {
        var year = Digits(4);
        var day28 = Alt(Seq(Literal("0"), D('1', '9')), Seq(Literal("1"), Digit), Seq(Literal("2"), D('0', '8')));
        var day30 = Alt(day28, Literal("29"), Literal("30"));
        var day31 = Alt(day30, Literal("31"));
        var long_ = Alt(Literal("01"), Literal("03"), Literal("05"), Literal("07"), Literal("08"), Literal("10"), Literal("12"));
        var short_ = Alt(Literal("04"), Literal("06"), Literal("09"), Literal("11"));
        // Leap years: divisible by 4, except centuries not divisible by 400.
        var by4 = Alt(Seq(Chars(CodepointSet.Of("02468")), Chars(CodepointSet.Of("048"))), Seq(Chars(CodepointSet.Of("13579")), Chars(CodepointSet.Of("26"))));
        var by4NotZero = Alt(Seq(Literal("0"), Chars(CodepointSet.Of("48"))), Seq(Chars(CodepointSet.Of("2468")), Chars(CodepointSet.Of("048"))),
            Seq(Chars(CodepointSet.Of("13579")), Chars(CodepointSet.Of("26"))));
        var leapYear = Alt(Seq(Digits(2), by4NotZero), Seq(by4, Literal("00")));
        return Alt(
            Seq(year, Literal("-"), long_, Literal("-"), day31),
            Seq(year, Literal("-"), short_, Literal("-"), day30),
            Seq(year, Literal("-02-"), day28),
            Seq(leapYear, Literal("-02-29")));
    }

    /// <summary>RFC 3339 full-time: offset required; a leap second only as 23:59:60 in UTC.</summary>
    private static readonly GrammarNode Time = BuildTime();

    private static GrammarNode BuildTime()
    {
        var hour = Alt(Seq(D('0', '1'), Digit), Seq(Literal("2"), D('0', '3')));
        var minute = Seq(D('0', '5'), Digit);
        var fraction = Optional(Seq(Literal("."), Repeat(Digit, 1, -1)));
        var offset = Alt(Chars(CodepointSet.Of("Zz")), Seq(Chars(CodepointSet.Of("+-")), hour, Literal(":"), minute));
        var utc = Alt(Chars(CodepointSet.Of("Zz")), Literal("+00:00"), Literal("-00:00"));
        return Alt(
            Seq(hour, Literal(":"), minute, Literal(":"), minute, fraction, offset),
            Seq(Literal("23:59:60"), fraction, utc));
    }

    /// <summary>ISO 8601 durations as RFC 3339 appendix A writes them.</summary>
    private static readonly GrammarNode Duration = BuildDuration();

    private static GrammarNode BuildDuration()
    {
        var n = Repeat(Digit, 1, -1);
        GrammarNode Unit(string u) => Seq(n, Literal(u));
        var second = Unit("S");
        var minute = Seq(Unit("M"), Optional(second));
        var hour = Seq(Unit("H"), Optional(minute));
        var time = Seq(Literal("T"), Alt(hour, minute, second));
        var day = Unit("D");
        var month = Seq(Unit("M"), Optional(day));
        var year = Seq(Unit("Y"), Optional(month));
        var date = Seq(Alt(day, month, year), Optional(time));
        return Seq(Literal("P"), Alt(date, time, Unit("W")));
    }

    private static readonly GrammarNode Uuid =
        Seq(Repeat(Hex, 8, 8), Literal("-"), Repeat(Hex, 4, 4), Literal("-"), Repeat(Hex, 4, 4), Literal("-"), Repeat(Hex, 4, 4), Literal("-"), Repeat(Hex, 12, 12));

    /// <summary>A practical email: dot-atom local part, '@', a hostname of two or more labels or an IPv4 literal in brackets.</summary>
    private static readonly GrammarNode Email = BuildEmail();

    private static GrammarNode BuildEmail()
    {
        // Unbounded parts (validators do not count label lengths in emails; it keeps length products small).
        var atom = Repeat(Chars(CodepointSet.Of("!#$%&'*+-/=?^_`{|}~").Union(AlphaNum)), 1, -1);
        var local = Seq(atom, Repeat(Seq(Literal("."), atom), 0, -1));
        var label = Seq(Chars(AlphaNum), Optional(Seq(Repeat(Chars(AlphaNum.Union(CodepointSet.Single('-'))), 0, -1), Chars(AlphaNum))));
        var domain = Alt(Seq(label, Repeat(Seq(Literal("."), label), 1, -1)), Seq(Literal("["), Ipv4, Literal("]")));
        return Seq(local, Literal("@"), domain);
    }

    /// <summary>RFC 4291 text forms: eight groups, "::" for a run of zero groups, an IPv4 tail.</summary>
    private static readonly GrammarNode Ipv6 = BuildIpv6();

    private static GrammarNode BuildIpv6()
    {
        var h16 = Repeat(Hex, 1, 4);
        var h16c = Seq(h16, Literal(":"));
        var ls32 = Alt(Seq(h16, Literal(":"), h16), Ipv4);
        GrammarNode Groups(int n) => Repeat(h16c, n, n);
        // Before "::": up to k groups separated by ':' (k = how many may precede).
        GrammarNode Before(int k) => k < 0 ? Nothing : Optional(Seq(Repeat(h16c, 0, k), h16));
        return Alt(
            Seq(Groups(6), ls32),
            Seq(Literal("::"), Groups(5), ls32),
            Seq(Optional(h16), Literal("::"), Groups(4), ls32),
            Seq(Before(1), Literal("::"), Groups(3), ls32),
            Seq(Before(2), Literal("::"), Groups(2), ls32),
            Seq(Before(3), Literal("::"), h16c, ls32),
            Seq(Before(4), Literal("::"), ls32),
            Seq(Before(5), Literal("::"), h16),
            Seq(Before(6), Literal("::")));
    }

    /// <summary>RFC 3986 (RFC 3987 for IRIs: non-ASCII letters count as unreserved) URI grammar.</summary>
    private static GrammarNode UriGrammar(bool iri, bool reference)
    {
        var unreservedSet = AlphaNum.Union(CodepointSet.Of("-._~"));
        if (iri) unreservedSet = unreservedSet.Union(IriExtra);
        var subDelims = CodepointSet.Of("!$&'()*+,;=");
        var pct = Seq(Literal("%"), Hex, Hex);
        GrammarNode Set(CodepointSet extra) => Alt(Chars(unreservedSet.Union(subDelims).Union(extra)), pct);
        var pchar = Set(CodepointSet.Of(":@"));
        var segment = Repeat(pchar, 0, -1);
        var segmentNz = Repeat(pchar, 1, -1);
        var segmentNzNc = Repeat(Set(CodepointSet.Of("@")), 1, -1);
        var tail = Repeat(Seq(Literal("/"), segment), 0, -1);
        var pathAbempty = tail;
        var pathAbsolute = Seq(Literal("/"), Optional(Seq(segmentNz, tail)));
        var pathRootless = Seq(segmentNz, tail);
        var pathNoscheme = Seq(segmentNzNc, tail);
        var userinfo = Repeat(Set(CodepointSet.Of(":")), 0, -1);
        var ipFuture = Seq(Chars(CodepointSet.Of("vV")), Repeat(Hex, 1, -1), Literal("."), Repeat(Chars(unreservedSet.Union(subDelims).Union(CodepointSet.Of(":"))), 1, -1));
        var host = Alt(Seq(Literal("["), Alt(Ipv6, ipFuture), Literal("]")), Ipv4, Repeat(Set(CodepointSet.None), 0, -1));
        var authority = Seq(Optional(Seq(userinfo, Literal("@"))), host, Optional(Seq(Literal(":"), Repeat(Digit, 0, -1))));
        var queryChars = Repeat(Alt(pchar, Chars(CodepointSet.Of("/?"))), 0, -1);
        var queryFragment = Seq(Optional(Seq(Literal("?"), queryChars)), Optional(Seq(Literal("#"), queryChars)));
        var scheme = Seq(Chars(CodepointSet.Range('a', 'z').Union(CodepointSet.Range('A', 'Z'))), Repeat(Chars(AlphaNum.Union(CodepointSet.Of("+-."))), 0, -1));
        var absolute = Seq(scheme, Literal(":"), Alt(Seq(Literal("//"), authority, pathAbempty), pathAbsolute, pathRootless, Empty), queryFragment);
        if (!reference) return absolute;
        var relative = Seq(Alt(Seq(Literal("//"), authority, pathAbempty), pathAbsolute, pathNoscheme, Empty), queryFragment);
        return Alt(absolute, relative);
    }

    private static GrammarNode Uri(bool iri) => UriGrammar(iri, false);

    private static GrammarNode UriReference(bool iri) => UriGrammar(iri, true);

    private static readonly GrammarNode JsonPointer = Repeat(Seq(Literal("/"),
        Repeat(Alt(Chars(CodepointSet.All.Except(CodepointSet.Of("/~"))), Seq(Literal("~"), Chars(CodepointSet.Of("01")))), 0, -1)), 0, -1);
}
