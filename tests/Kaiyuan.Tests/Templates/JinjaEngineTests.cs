using System.Text.Json.Nodes;
using Kaiyuan.Templates;

namespace Kaiyuan.Tests.Templates;

public class JinjaEngineTests
{
    private static readonly TemplateOptions Fixed = new() { Clock = () => new DateTime(2026, 1, 15, 10, 30, 0) };

    private static string R(string template, string vars = "{}") =>
        new JinjaTemplate(template, Fixed).Render(JsonNode.Parse(vars)!.AsObject());

    [Theory]
    [InlineData("{{ 1 + 2 }}", "3")]
    [InlineData("{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}|{{ 4 / 2 }}", "3|-4|1|2|1024|3.5|2.0")]
    [InlineData("{{ 2 + 3 * 4 }}|{{ (2 + 3) * 4 }}|{{ -2 ** 2 }}|{{ not true or true }}", "14|20|4|True")]
    [InlineData("{{ 1 < 2 < 3 }}{{ 3 > 2 > 5 }}{{ 1 == 1.0 }}{{ 'a' != 'b' }}", "TrueFalseTrueTrue")]
    [InlineData("{{ 'a' ~ 1 ~ none ~ true }}", "a1NoneTrue")]
    [InlineData("{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ [1] + [2] }}|{{ 'a' + 'b' }}", "ababab|[1, 1]|[1, 2]|ab")]
    [InlineData("{{ \"%s and %s\" % ('a', 'b') }}|{{ '%d%%' % 5 }}", "a and b|5%")]
    public void Arithmetic(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{{ [1, 'a', none, true, 1.5] }}", "[1, 'a', None, True, 1.5]")]
    [InlineData("{{ {'a': 1, 'b': [2], 'c': {'d': none}} }}", "{'a': 1, 'b': [2], 'c': {'d': None}}")]
    [InlineData("{{ (1, 2) }}{{ (1,) }}{{ () }}", "(1, 2)(1,)()")]
    [InlineData("{{ [\"it's\", 'say \"x\"', 'a\\nb'] }}", "[\"it's\", 'say \"x\"', 'a\\nb']")]
    [InlineData("{{ 1e-5 }}|{{ 1.0e16 }}|{{ 0.1 + 0.2 }}|{{ 1e3 }}|{{ 2.5 }}|{{ 1_000 }}", "1e-05|1e+16|0.30000000000000004|1000.0|2.5|1000")]
    [InlineData("{{ true }}{{ True }}{{ false }}{{ none }}{{ None }}{{ 1.0 }}", "TrueTrueFalseNoneNone1.0")]
    [InlineData("{{ 'a\\tb\\n\\u00e9\\x41' }}", "a\tb\néA")]
    [InlineData("{{ 'a' 'b' }}", "ab")]
    public void LiteralsPrintLikePython(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{{ x }}|{{ x.y.z }}|{{ x['k'] }}|{{ x is defined }}|{{ x is undefined }}", "|||False|True")]
    [InlineData("{{ none is none }}{{ x is none }}{{ n is none }}{{ n is defined }}", "TrueFalseTrueTrue")]
    [InlineData("{% for i in x %}{{ i }}{% endfor %}{{ x | length }}{{ x | default('d') }}", "0d")]
    [InlineData("{{ n.attr }}|{{ d.missing }}|{{ d['missing'] }}|{{ l[10] }}", "|||")]
    [InlineData("{{ x ~ 'a' }}{{ 'b' if x else 'c' }}{{ not x }}", "acTrue")]
    public void UndefinedSemantics(string t, string expected) =>
        Assert.Equal(expected, R(t, """{"n": null, "d": {"a": 1}, "l": [1]}"""));

    [Theory]
    [InlineData("{{ [1,2,3,4,5][1:4] }}|{{ 'hello'[::-1] }}|{{ [1,2,3][-1] }}|{{ [1,2,3,4,5][::2] }}|{{ 'abc'[5:] }}|{{ [1,2,3][:-1] }}|{{ 'abcdef'[-3:] }}|{{ [1,2,3,4,5][4:1:-2] }}",
        "[2, 3, 4]|olleh|3|[1, 3, 5]||[1, 2]|def|[5, 3]")]
    [InlineData("{{ 'a' in 'cat' }}{{ 2 not in [1,2] }}{{ 'k' in {'k': 1} }}{{ 'z' in x }}", "TrueFalseTrueFalse")]
    [InlineData("{{ 'y' if true else 'n' }}{{ 'y' if false }}|{{ 'a' if false else 'b' if false else 'c' }}", "y|c")]
    [InlineData("{{ d.a }}{{ d['a'] }}{{ l.0 }}{{ m[0].role }}{{ m[0]['content'] }}", "11xuhi")]
    public void Expressions(string t, string expected) =>
        Assert.Equal(expected, R(t, """{"d": {"a": 1}, "l": ["x"], "m": [{"role": "u", "content": "hi"}]}"""));

    [Theory]
    [InlineData("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
        "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;")]
    [InlineData("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('o','e') }},{% endfor %}", "-2-o,1-3-e,2--o,")]
    [InlineData("{% for x in [] %}x{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}{{ loop.last }},{% endfor %}", "11False,32False,53False,74False,95True,")]
    [InlineData("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", "0134")]
    [InlineData("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}", "aba1b2")]
    [InlineData("{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}", "37")]
    [InlineData("{% for c in 'ab' %}{{ c }}.{% endfor %}", "a.b.")]
    [InlineData("{% for i in range(2) %}{% for j in range(2) %}{{ loop.depth }}{{ i }}{{ j }} {% endfor %}{% endfor %}", "200 201 210 211 ")]
    [InlineData("{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(3, 0, -1) | list }}", "[0, 1, 2][1, 3, 5][3, 2, 1]")]
    public void Loops(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "1")]
    [InlineData("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}", "4")]
    [InlineData("{% set s %}a{{ 1 }}b{% endset %}[{{ s }}]", "[a1b]")]
    [InlineData("{% set s | upper %}abc{% endset %}{{ s }}", "ABC")]
    [InlineData("{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12")]
    [InlineData("{% with a = 1 %}{{ a }}{% endwith %}{{ a }}", "1")]
    [InlineData("{% if false %}a{% elif true %}b{% else %}c{% endif %}", "b")]
    [InlineData("{% macro greet(name, greeting='Hi') %}{{ greeting }} {{ name }}{% endmacro %}{{ greet('Bob') }}|{{ greet('Al', greeting='Yo') }}|{{ greet() }}", "Hi Bob|Yo Al|Hi ")]
    [InlineData("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}in{% endcall %}", "<b>in</b>")]
    [InlineData("{% macro f(n) %}{% if n <= 1 %}1{% else %}{{ n * (f(n - 1) | int) }}{% endif %}{% endmacro %}{{ f(5) }}", "120")]
    [InlineData("{% filter upper %}abc{{ 'd' }}{% endfilter %}", "ABCD")]
    [InlineData("{% raw %}{{ x }}{% if %}{% endraw %}", "{{ x }}{% if %}")]
    [InlineData("a{# comment {{ x }} #}b", "ab")]
    [InlineData("{% generation %}abc{% endgeneration %}", "abc")]
    [InlineData("{% do l.append(2) %}{{ l }}", "[1, 2]")]
    public void Statements(string t, string expected) => Assert.Equal(expected, R(t, """{"l": [1]}"""));

    [Theory]
    [InlineData("a  {{- 'b' -}}  c", "abc")]
    [InlineData("{% if true -%}\n  x\n{%- endif %}", "x")]
    [InlineData("{% if true %}\nyes\n{% endif %}\n", "yes\n")]
    [InlineData("  {% if true %}\n  x\n  {% endif %}\nend", "  x\nend")]
    [InlineData("  {{ 'x' }}", "  x")]
    [InlineData("  {%+ if true %}x{% endif %}", "  x")]
    [InlineData("a\n  {# c #}\nb", "a\nb")]
    [InlineData("x\n", "x")]
    [InlineData("x\n\n", "x\n")]
    [InlineData("{{ 'a' }}\n{{ 'b' }}", "a\nb")]
    [InlineData("a {% if true %} b {% endif %} c", "a  b  c")]
    [InlineData("{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n", "  1\n  2\n")]
    [InlineData("<{%- if true %} x {% endif -%}>", "< x >")]
    [InlineData("{% raw -%}  a  {%- endraw %}", "a")]
    public void Whitespace(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{{ 'a,b,c'.split(',') }}|{{ '  x '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'xxhi'.lstrip('x') }}|{{ 'hi\\n\\n'.rstrip('\\n') }}", "['a', 'b', 'c']|x|hi|hi|hi")]
    [InlineData("{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ 'abc'.upper() }}{{ 'ABC'.lower() }}", "TrueTrueABCabc")]
    [InlineData("{{ 'a b'.title() }}|{{ 'hello World'.capitalize() }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.rfind('c') }}|{{ 'abc'.find('z') }}|{{ 'abcabc'.index('b') }}|{{ 'abcabc'.count('b') }}",
        "A B|Hello world|2|5|-1|1|2")]
    [InlineData("{{ '{}-{}'.format(1, 'x') }}|{{ '{0}{0}'.format('a') }}|{{ '{name}!'.format(name='Bo') }}|{{ '-'.join(['a','b']) }}", "1-x|aa|Bo!|a-b")]
    [InlineData("{{ 'a b  c'.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}", "['a', 'b', 'c']|['a', 'b,c']|['a,b', 'c']|['a', 'b', 'c']")]
    [InlineData("{{ 'aXbX'.replace('X', '-') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ '123'.isdigit() }}{{ 'ab'.isalpha() }}{{ 'a1'.isalpha() }}", "a-b-|bba|TrueTrueFalse")]
    public void StringMethods(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{% set d = {'a': 1} %}{{ d.get('a') }}{{ d.get('z', 9) }}{{ d.get('z') }}{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %}{{ d.keys() | list }}{{ d.values() | list }}",
        "19Nonea=1['a'][1]")]
    [InlineData("{% set d = {'a': 1} %}{% set _ = d.update({'b': 2}) %}{{ d }}{{ d.pop('a') }}{{ d }}{{ d.pop('q', 'dflt') }}", "{'a': 1, 'b': 2}1{'b': 2}dflt")]
    [InlineData("{% set l = [1] %}{% set _ = l.append(2) %}{% set _ = l.extend([3, 4]) %}{% set _ = l.insert(0, 0) %}{{ l }}{{ l.pop() }}{{ l.index(2) }}{{ l.count(1) }}{{ l.pop(0) }}{{ l }}",
        "[0, 1, 2, 3, 4]4210[1, 2, 3]")]
    [InlineData("{% set d = {'z': 1, 'a': 2, 'm': 3} %}{{ d | tojson }}", "{\"z\": 1, \"a\": 2, \"m\": 3}")]
    public void DictAndListMethods(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{{ {'a': [1, 2.5, 'é\"\\n', none, true]} | tojson }}", "{\"a\": [1, 2.5, \"é\\\"\\n\", null, true]}")]
    [InlineData("{{ {'a': [1], 'b': {}} | tojson(indent=2) }}", "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}")]
    [InlineData("{{ 'é' | tojson(ensure_ascii=true) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}", "\"\\u00e9\"|{\"a\": 2, \"b\": 1}|[1,2]")]
    [InlineData("{{ '  x  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'ab cd' | title }}|{{ 'aB' | capitalize }}", "x|AB|ab|Ab Cd|Ab")]
    [InlineData("{{ [3,1,2] | sort }}|{{ [3,1,2] | sort(reverse=true) }}|{{ ['b','A','c'] | sort }}|{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') | map(attribute='n') | list }}", "[1, 2, 3]|[3, 2, 1]|['A', 'b', 'c']|[1, 2]")]
    [InlineData("{{ [1,2,3] | first }}|{{ [1,2,3] | last }}|{{ [1,2,3] | length }}|{{ 'abc' | count }}|{{ [1,2] | join(',') }}|{{ [1,2] | join }}", "1|3|3|3|1,2|12")]
    [InlineData("{{ [1,2,3] | sum }}|{{ [1,5,3] | max }}|{{ [1,5,3] | min }}|{{ [1,1,2,'a','A'] | unique | list }}|{{ [1,2] | reverse | list }}|{{ 'ab' | reverse }}", "6|5|1|[1, 2, 'a']|[2, 1]|ba")]
    [InlineData("{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.4 | round(0, 'ceil') }}|{{ 3 | float }}|{{ '42' | int }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ '1.5' | float }}", "3|2.57|2.0|4.0|3.0|3.0|42|0|3|1.5")]
    [InlineData("{{ 'x' | default('d') }}|{{ y | default('d') }}|{{ y | d('e') }}|{{ '' | default('d', true) }}|{{ none | default('d') }}", "x|d|e|d|None")]
    [InlineData("{{ 'a b c' | wordcount }}|{{ 'abc' | replace('b', 'X') }}|{{ '%s-%d' | format('a', 3) }}|{{ 'ab' | center(6) }}|{{ '<a href=\"x\">' | e }}|{{ '<b>' | safe }}", "3|aXc|a-3|  ab  |&lt;a href=&#34;x&#34;&gt;|<b>")]
    [InlineData("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}|{{ 'a' | indent('> ', first=true) }}", "a\n  b\n\n  c|  a\n  b|a\n  \n  b|> a")]
    [InlineData("{{ [1,2,3] | batch(2) | list }}|{{ [1,2,3] | batch(2, 0) | list }}|{{ 'hello world foo' | truncate(9) }}|{{ 'hello' | truncate(9) }}", "[[1, 2], [3]]|[[1, 2], [3, 0]]|hello...|hello")]
    [InlineData("{% for k, v in {'b': 1, 'a': 2} | items %}{{ k }}{{ v }}{% endfor %}|{% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %}|{{ {'a': 1} | list }}|{{ 1 | string }}{{ [1] | string }}", "b1a2|a2b1|['a']|1[1]")]
    [InlineData("{{ x | attr('a') }}|{{ x | attr('__class__') }}|{{ [1, 2] | map('string') | join('-') }}", "1||1-2")]
    public void Filters(string t, string expected) => Assert.Equal(expected, R(t, """{"x": {"a": 1}}"""));

    [Theory]
    [InlineData("{% set users = [{'n': 'a', 'ok': true}, {'n': 'b', 'ok': false}] %}{{ users | map(attribute='n') | join }}|{{ users | selectattr('ok') | map(attribute='n') | list }}|{{ users | rejectattr('ok') | map(attribute='n') | list }}|{{ users | selectattr('n', 'equalto', 'b') | map(attribute='ok') | first }}|{{ users | map(attribute='zz', default='-') | join }}",
        "ab|['a']|['b']|False|--")]
    [InlineData("{{ [1,2,3,4] | select('even') | list }}|{{ [1,2,3,4] | reject('even') | list }}|{{ ['a','b'] | map('upper') | list }}|{{ [0, 1, '', 'x'] | select | list }}|{{ [1, 5, 10] | select('gt', 4) | list }}",
        "[2, 4]|[1, 3]|['A', 'B']|[1, 'x']|[5, 10]")]
    public void HigherOrderFilters(string t, string expected) => Assert.Equal(expected, R(t));

    [Theory]
    [InlineData("{{ 1 is number }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 3 is divisibleby 3 }}{{ 2 is even }}{{ 3 is odd }}", "TrueTrueTrueTrueTrueTrueTrueTrue")]
    [InlineData("{{ 1.5 is float }}{{ 1 is integer }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 1 is true }}{{ range is callable }}{{ [] is sequence }}", "TrueTrueTrueTrueTrueFalseTrueTrue")]
    [InlineData("{{ 5 is gt(3) }}{{ 5 is lt 3 }}{{ 'a' is eq('a') }}{{ 'a' is ne 'a' }}{{ 1 is ge 1 }}{{ 1 is le 0 }}{{ 2 is in [1, 2] }}{{ 'a' is not string }}{{ x is not defined }}", "TrueFalseTrueFalseTrueFalseTrueFalseTrue")]
    [InlineData("{{ {} is not mapping }}{{ 1 is string or 1 is number }}{{ none is not none }}", "FalseTrueFalse")]
    public void TestsOperator(string t, string expected) => Assert.Equal(expected, R(t));

    [Fact]
    public void GlobalsWork()
    {
        Assert.Equal("2026-01-15 10:30 Jan Thursday 15 AM", R("{{ strftime_now('%Y-%m-%d %H:%M %b %A %-d %p') }}"));
        Assert.Equal("{'a': 1, 'b': 2}", R("{{ dict(a=1, b=2) }}"));
        var ex = Assert.Throws<TemplateRaisedException>(() => R("line\n{{ raise_exception('No system role!') }}"));
        Assert.Equal("No system role!", ex.TemplateMessage);
        Assert.Equal(2, ex.Line);
    }

    [Fact]
    public void RendersJsonVariablesAndMessages()
    {
        string t = "{% for m in messages %}[{{ m.role }}:{{ m['content'] }}]{% endfor %}{{ n }}{{ f }}{{ b }}";
        Assert.Equal("[user:hi][assistant:yo]31.5True", R(t, """{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "n": 3, "f": 1.5, "b": true}"""));
    }

    [Fact]
    public void TemplateIsReusableAndThreadSafe()
    {
        var t = new JinjaTemplate("{% set ns = namespace(s=0) %}{% for i in range(n) %}{% set ns.s = ns.s + i %}{% endfor %}{{ ns.s }}");
        Parallel.For(0, 64, i =>
        {
            var vars = new JsonObject { ["n"] = i };
            Assert.Equal((i * (i - 1) / 2).ToString(System.Globalization.CultureInfo.InvariantCulture), t.Render(vars));
        });
    }

    [Theory]
    [InlineData("{% if %}", 1)]
    [InlineData("line1\n{{ 1 + }}", 2)]
    [InlineData("a\nb\n{% for x in y %}", 3)]
    [InlineData("{% endif %}", 1)]
    [InlineData("{{ 'abc }}", 1)]
    [InlineData("{{ x | nosuchfilter }}", 1)]
    [InlineData("{{ x is nosuchtest }}", 1)]
    [InlineData("{% unknowntag %}", 1)]
    [InlineData("{{ x ", 1)]
    [InlineData("\n\n{# open comment", 3)]
    [InlineData("{% for x in y %}{% endif %}", 1)]
    public void ParseErrorsCarryLine(string t, int line)
    {
        var ex = Assert.Throws<TemplateException>(() => new JinjaTemplate(t));
        Assert.Equal(line, ex.Line);
        Assert.True(ex.Column > 0);
        Assert.Contains($"line {line}, column", ex.Message);
    }

    [Theory]
    [InlineData("{{ foo() }}")]
    [InlineData("{{ x + 1 }}")]
    [InlineData("{{ x.y() }}")]
    [InlineData("{{ 1 + 'a' }}")]
    [InlineData("{{ 1 / 0 }}")]
    [InlineData("{{ 1 < 'a' }}")]
    [InlineData("{% for i in 5 %}{% endfor %}")]
    [InlineData("{{ 'a'.nosuchmethod() }}")]
    [InlineData("{% set x = 1 %}{% set x.y = 2 %}")]
    public void RuntimeErrorsAreTemplateExceptions(string t) =>
        Assert.Throws<TemplateException>(() => R(t));

    [Fact]
    public void RenderIsFast()
    {
        var t = new JinjaTemplate("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
        var vars = JsonNode.Parse("""{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}], "add_generation_prompt": true}""")!.AsObject();
        t.Render(vars);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 1000; i++) t.Render(vars);
        Assert.True(sw.ElapsedMilliseconds < 2000, $"1000 renders took {sw.ElapsedMilliseconds} ms");
    }
}
