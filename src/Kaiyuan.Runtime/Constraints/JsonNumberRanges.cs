using System.Numerics;
using System.Text;

namespace Kaiyuan.Constraints;

/// <summary>An exact decimal (mantissa × 10^exponent, trailing zeros folded into the exponent): JSON numbers as written.</summary>
internal readonly record struct Dec : IComparable<Dec>
{
    /// <summary>Bounds such as 1e308 are fine; a number written with an exponent beyond this is refused.</summary>
    public const int MaxExponent = 4_000;

    public BigInteger Mantissa { get; }
    public int Exponent { get; }

    public Dec(BigInteger mantissa, int exponent)
    {
        if (mantissa.IsZero) { Mantissa = 0; Exponent = 0; return; }
        while (mantissa % 10 == 0) { mantissa /= 10; exponent++; }
        Mantissa = mantissa;
        Exponent = exponent;
    }

    public static Dec Zero => new(0, 0);
    public static Dec One => new(1, 0);
    public int Sign => Mantissa.Sign;
    public bool IsInteger => Exponent >= 0;
    public Dec Negate() => new(-Mantissa, Exponent);
    public Dec Abs() => new(BigInteger.Abs(Mantissa), Exponent);

    /// <summary>Parses JSON number text exactly; false when it is not a JSON number or its exponent is out of range.</summary>
    public static bool TryParse(string text, out Dec value)
    {
        value = Zero;
        int i = 0;
        bool negative = i < text.Length && text[i] == '-';
        if (negative) i++;
        var digits = new StringBuilder();
        int fraction = 0;
        int start = i;
        while (i < text.Length && char.IsAsciiDigit(text[i])) digits.Append(text[i++]);
        if (i == start) return false;
        if (i < text.Length && text[i] == '.')
        {
            i++;
            int f = i;
            while (i < text.Length && char.IsAsciiDigit(text[i])) { digits.Append(text[i++]); fraction++; }
            if (i == f) return false;
        }
        long exponent = 0;
        if (i < text.Length && (text[i] == 'e' || text[i] == 'E'))
        {
            i++;
            bool expNegative = false;
            if (i < text.Length && (text[i] == '+' || text[i] == '-')) expNegative = text[i++] == '-';
            int e = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                exponent = exponent * 10 + (text[i++] - '0');
                if (exponent > 1_000_000) return false;
            }
            if (i == e) return false;
            if (expNegative) exponent = -exponent;
        }
        if (i != text.Length) return false;
        var mantissa = BigInteger.Parse(digits.ToString(), System.Globalization.CultureInfo.InvariantCulture);
        var result = new Dec(negative ? -mantissa : mantissa, checked((int)(exponent - fraction)));
        if (!result.Mantissa.IsZero && Math.Abs(result.Exponent) > MaxExponent) return false;
        value = result;
        return true;
    }

    public int CompareTo(Dec other)
    {
        if (Sign != other.Sign) return Sign.CompareTo(other.Sign);
        int e = Math.Min(Exponent, other.Exponent);
        var a = Mantissa * BigInteger.Pow(10, Exponent - e);
        var b = other.Mantissa * BigInteger.Pow(10, other.Exponent - e);
        return a.CompareTo(b);
    }

    public static bool operator <(Dec a, Dec b) => a.CompareTo(b) < 0;
    public static bool operator >(Dec a, Dec b) => a.CompareTo(b) > 0;
    public static bool operator <=(Dec a, Dec b) => a.CompareTo(b) <= 0;
    public static bool operator >=(Dec a, Dec b) => a.CompareTo(b) >= 0;

    /// <summary>The integer digits and the fraction digits (no trailing zeros) of the absolute value.</summary>
    public (string Int, string Frac) Digits()
    {
        var m = BigInteger.Abs(Mantissa).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (Exponent >= 0) return (Mantissa.IsZero ? "0" : m + new string('0', Exponent), "");
        int frac = -Exponent;
        if (m.Length <= frac) return ("0", new string('0', frac - m.Length) + m);
        return (m[..^frac], m[^frac..]);
    }

    /// <summary>Plain decimal text, no exponent.</summary>
    public override string ToString()
    {
        var (i, f) = Digits();
        return (Sign < 0 ? "-" : "") + i + (f.Length > 0 ? "." + f : "");
    }

    /// <summary>Whether this is an integer multiple of <paramref name="step"/> (step &gt; 0).</summary>
    public bool IsMultipleOf(Dec step)
    {
        int e = Math.Min(Exponent, step.Exponent);
        var a = Mantissa * BigInteger.Pow(10, Exponent - e);
        var b = step.Mantissa * BigInteger.Pow(10, step.Exponent - e);
        return (a % b).IsZero;
    }
}

/// <summary>Limits on a JSON number: bounds (each inclusive or exclusive), integers only, a step it must be a multiple of.</summary>
internal sealed record NumberConstraint(Dec? Min, bool MinExclusive, Dec? Max, bool MaxExclusive, bool IntegerOnly, Dec? MultipleOf)
{
    public bool Allows(Dec value)
    {
        if (IntegerOnly && !value.IsInteger) return false;
        if (Min is { } min && (MinExclusive ? value <= min : value < min)) return false;
        if (Max is { } max && (MaxExclusive ? value >= max : value > max)) return false;
        if (MultipleOf is { } step && !value.IsMultipleOf(step)) return false;
        return true;
    }

    /// <summary>No value can satisfy the bounds (fractions considered unless integers only).</summary>
    public bool IsEmptyRange()
    {
        if (Min is not { } min || Max is not { } max) return false;
        int c = min.CompareTo(max);
        if (c > 0 || (c == 0 && (MinExclusive || MaxExclusive))) return true;
        return false;
    }
}

/// <summary>
/// Grammars of JSON numbers within bounds. Without bounds: the plain JSON number (or integer) syntax. With bounds or
/// a step: digit automata compare the spelled number with each bound exactly (any decimal bound, one side open or
/// both, inclusive or exclusive), intersected with a remainder automaton for <c>multipleOf</c>; the exponent form is
/// then left out (that only refuses spellings, never accepts a number out of range).
/// </summary>
internal static class JsonNumberRanges
{
    private static readonly CodepointSet Digit = CodepointSet.Range('0', '9');
    private static readonly CodepointSet Digit19 = CodepointSet.Range('1', '9');
    private const int MaxStepStates = 20_000;

    /// <summary><c>-?(0|[1-9][0-9]*)</c>, with fraction and exponent unless <paramref name="integer"/>.</summary>
    public static GrammarNode Plain(bool integer)
    {
        var digits = GrammarNode.Repeat(GrammarNode.Chars(Digit), 1, -1);
        var intPart = GrammarNode.Seq(GrammarNode.Optional(GrammarNode.Literal("-")),
            GrammarNode.Alt(GrammarNode.Literal("0"), GrammarNode.Seq(GrammarNode.Chars(Digit19), GrammarNode.Repeat(GrammarNode.Chars(Digit), 0, -1))));
        if (integer) return intPart;
        return GrammarNode.Seq(intPart,
            GrammarNode.Optional(GrammarNode.Seq(GrammarNode.Literal("."), digits)),
            GrammarNode.Optional(GrammarNode.Seq(GrammarNode.Chars(CodepointSet.Of("eE")), GrammarNode.Optional(GrammarNode.Chars(CodepointSet.Of("+-"))), digits)));
    }

    /// <summary>The grammar of the numbers <paramref name="c"/> allows (rules added to <paramref name="grammar"/> when needed).</summary>
    public static GrammarNode Build(Grammar grammar, NumberConstraint c, string name)
    {
        bool trivialStep = c.MultipleOf is not { } s || (c.IntegerOnly && s.IsInteger && s.Mantissa.IsOne);
        if (c.Min is null && c.Max is null && trivialStep) return Plain(c.IntegerOnly);
        if (c.IsEmptyRange()) return GrammarNode.Nothing;
        var nfa = Automaton(c with { MultipleOf = trivialStep ? null : c.MultipleOf });
        return nfa.ToGrammar(grammar, GrammarNode.Chars, name);
    }

    /// <summary>All spellings (without exponent) of the numbers <paramref name="c"/> allows.</summary>
    public static CodepointNfa Automaton(NumberConstraint c)
    {
        bool frac = !c.IntegerOnly;
        var parts = new List<CodepointNfa>();
        // Non-negative values x: x >= max(min, 0), x <= max.
        if (!(c.Max is { } hi0 && (hi0.Sign < 0 || (hi0.Sign == 0 && c.MaxExclusive))))
        {
            var lower = c.Min is { } lo && lo.Sign >= 0 ? Compare(lo, true, c.MinExclusive, frac) : Compare(Dec.Zero, true, false, frac);
            var m = c.Max is { } hi ? lower.Intersect(Compare(hi, false, c.MaxExclusive, frac)) : lower;
            parts.Add(m);
        }
        // Negative values, written "-" y: y >= max(-max, 0), y <= -min ("-0" is 0 and counts only when 0 is allowed).
        bool negative = c.Min is not { } lo1 || lo1.Sign < 0 || (lo1.Sign == 0 && !c.MinExclusive);
        if (negative)
        {
            var lower = c.Max is { } hi && hi.Sign <= 0 ? Compare(hi.Negate(), true, c.MaxExclusive, frac) : Compare(Dec.Zero, true, false, frac);
            var m = c.Min is { } lo ? lower.Intersect(Compare(lo.Negate(), false, c.MinExclusive, frac)) : lower;
            // Prefix the sign: a fresh start reading '-' into a copy of the magnitudes.
            var compact = m.Compact();
            var signed = new CodepointNfa();
            signed.Start = signed.NewState();
            int offset = signed.StateCount;
            for (int s = 0; s < compact.StateCount; s++) signed.NewState(compact.IsAccepting(s));
            for (int s = 0; s < compact.StateCount; s++)
                foreach (var (set, to) in compact.EdgesOf(s)) signed.Edge(offset + s, set, offset + to);
            signed.Edge(signed.Start, '-', '-', offset + compact.Start);
            parts.Add(signed);
        }
        var all = CodepointNfa.Union([.. parts]);
        if (c.MultipleOf is { } step) all = all.Intersect(StepAutomaton(step));
        return all.Compact();
    }

    private enum Order { Less, Equal, Greater }

    /// <summary>
    /// Non-negative numbers y (canonical integer part, optional fraction when <paramref name="allowFrac"/>) with
    /// y ≥ bound (<paramref name="atLeast"/>) or y ≤ bound; <paramref name="strict"/> excludes equality. A DFA with
    /// O(digits) states: the integer part is compared by length, then lexicographically; on a tie the fraction is.
    /// </summary>
    public static CodepointNfa Compare(Dec bound, bool atLeast, bool strict, bool allowFrac)
    {
        var (bi, bf) = bound.Abs().Digits();
        int n = bi.Length, m = bf.Length;
        var a = new CodepointNfa();
        a.Start = a.NewState();
        // The rest of the number once the integer part has decided the comparison in our favour.
        int win = a.NewState(true);
        int winFrac = a.NewState(true);
        a.Edge(winFrac, Digit, winFrac);
        if (allowFrac)
        {
            int dot = a.NewState();
            a.Edge(win, '.', '.', dot);
            a.Edge(dot, Digit, winFrac);
        }
        // The rest when the integer part equals the bound's: the fraction decides.
        int tie = a.NewState(atLeast ? m == 0 && !strict : m > 0 || !strict);
        if (allowFrac)
        {
            var f = new int[m + 1];
            for (int j = 0; j < m; j++) f[j] = a.NewState(!atLeast && j > 0);
            f[m] = a.NewState(!strict && m > 0); // every bound digit matched; only zeros keep it equal
            int zerosNeed = m == 0 ? a.NewState() : f[m];
            a.Edge(tie, '.', '.', m == 0 ? zerosNeed : f[0]);
            for (int j = 0; j < m; j++)
            {
                int b = bf[j] - '0';
                int next = j + 1 == m ? f[m] : f[j + 1];
                if (atLeast)
                {
                    if (b < 9) a.Edge(f[j], (char)('0' + b + 1), '9', winFrac);
                }
                else if (b > 0) a.Edge(f[j], '0', (char)('0' + b - 1), winFrac);
                a.Edge(f[j], (char)('0' + b), (char)('0' + b), next);
            }
            int zeros = m == 0 ? a.NewState(!strict) : f[m];
            if (m == 0)
            {
                a.Edge(zerosNeed, '0', '0', zeros);
                if (atLeast) a.Edge(zerosNeed, '1', '9', winFrac);
            }
            a.Edge(zeros, '0', '0', zeros);
            if (atLeast) a.Edge(zeros, '1', '9', winFrac);
        }
        int? Tail(Order o) => o == Order.Equal ? tie : (o == Order.Greater) == atLeast ? win : null;
        // Integer part: states (digits read, order so far), then "longer than the bound".
        var states = new Dictionary<(int, Order), int>();
        int longer = a.NewState();
        a.Edge(longer, Digit, longer);
        if (Tail(Order.Greater) is { } lt) a.Eps(longer, lt);
        int State(int i, Order o)
        {
            if (states.TryGetValue((i, o), out int s)) return s;
            s = a.NewState();
            states[(i, o)] = s;
            if (Tail(i < n ? Order.Less : o) is { } t) a.Eps(s, t);
            return s;
        }
        // "0" alone, then no more integer digits.
        {
            var o = bi[0] == '0' ? Order.Equal : Order.Less;
            int zero = a.NewState();
            if (Tail(n > 1 ? Order.Less : o) is { } t) a.Eps(zero, t);
            a.Edge(a.Start, '0', '0', zero);
        }
        void Digits(int from, int i, Order o, int lowest)
        {
            // Reading the digit at index i (0-based) of the integer part.
            if (i >= n) { a.Edge(from, (char)('0' + lowest), '9', longer); return; }
            if (o != Order.Equal) { a.Edge(from, (char)('0' + lowest), '9', State(i + 1, o)); return; }
            int b = bi[i] - '0';
            if (lowest <= b - 1) a.Edge(from, (char)('0' + lowest), (char)('0' + b - 1), State(i + 1, Order.Less));
            if (b >= lowest) a.Edge(from, (char)('0' + b), (char)('0' + b), State(i + 1, Order.Equal));
            if (Math.Max(b + 1, lowest) <= 9) a.Edge(from, (char)('0' + Math.Max(b + 1, lowest)), '9', State(i + 1, Order.Greater));
        }
        Digits(a.Start, 0, Order.Equal, 1);
        // Expand the states created so far until no new ones appear.
        var done = new HashSet<(int, Order)>();
        while (true)
        {
            var pending = states.Keys.Where(k => !done.Contains(k)).ToList();
            if (pending.Count == 0) break;
            foreach (var key in pending)
            {
                done.Add(key);
                Digits(states[key], key.Item1, key.Item2, 0);
            }
        }
        return a;
    }

    /// <summary>Spellings whose value is a multiple of <paramref name="step"/>: remainders of value·10^s modulo the step's digits.</summary>
    private static CodepointNfa StepAutomaton(Dec step)
    {
        BigInteger big = step.Exponent >= 0 ? BigInteger.Abs(step.Mantissa) * BigInteger.Pow(10, step.Exponent) : BigInteger.Abs(step.Mantissa);
        int s = step.Exponent >= 0 ? 0 : -step.Exponent;
        if (big.IsZero || big * (s + 2) > MaxStepStates)
            throw new GrammarException($"multipleOf {step} needs too large an automaton");
        int q = (int)big;
        var a = new CodepointNfa();
        var intStates = new int[q];
        var frac = new int[s + 1, q];
        int Pow10Mod(int k) { int r = 1 % q; for (int i = 0; i < k; i++) r = r * 10 % q; return r; }
        for (int r = 0; r < q; r++) intStates[r] = a.NewState(r * Pow10Mod(s) % q == 0);
        for (int j = 0; j <= s; j++)
            for (int r = 0; r < q; r++) frac[j, r] = a.NewState(r * Pow10Mod(s - j) % q == 0);
        for (int r = 0; r < q; r++)
        {
            for (int d = 0; d < 10; d++) a.Edge(intStates[r], (char)('0' + d), (char)('0' + d), intStates[(r * 10 + d) % q]);
            a.Edge(intStates[r], '-', '-', intStates[r]);
            a.Edge(intStates[r], '.', '.', frac[0, r]);
            for (int j = 0; j < s; j++)
                for (int d = 0; d < 10; d++) a.Edge(frac[j, r], (char)('0' + d), (char)('0' + d), frac[j + 1, (r * 10 + d) % q]);
            a.Edge(frac[s, r], '0', '0', frac[s, r]);
        }
        a.Start = intStates[0];
        return a;
    }
}
