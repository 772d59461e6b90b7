using System.Diagnostics;
using System.Text.Json.Nodes;
using Kaiyuan.Templates;

namespace Kaiyuan.Tests.Templates;

/// <summary>Hostile templates end in a clear TemplateException, quickly and with bounded memory.</summary>
public class SandboxTests
{
    private static TemplateException Fails(string template, string vars = "{}", TemplateOptions? options = null)
    {
        var sw = Stopwatch.StartNew();
        var ex = Assert.ThrowsAny<TemplateException>(() => new JinjaTemplate(template, options).Render(JsonNode.Parse(vars)!.AsObject()));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
        return ex;
    }

    [Fact]
    public void HugeRangeIsRefused() => Assert.Contains("limit", Fails("{% for i in range(10**9) %}x{% endfor %}").Message);

    [Fact]
    public void NestedLoopsHitTheIterationBudget() =>
        // A smaller budget than the default keeps the test quick on a loaded machine; the mechanism is the same.
        Assert.Contains("loop iterations", Fails("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            options: new TemplateOptions { MaxLoopIterations = 200_000 }).Message);

    [Fact]
    public void StringMultiplicationIsCheckedBeforeAllocating() => Assert.Contains("limit", Fails("{{ 'x' * 10**9 }}").Message);

    [Fact]
    public void ListDoublingIsBounded() =>
        Fails("{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}");

    [Fact]
    public void HugeOutputIsBounded() =>
        Assert.Contains("output", Fails("{% for i in range(1000000) %}{{ 'x' * 1000 }}{% endfor %}").Message);

    [Fact]
    public void MacroOutputGrowthIsBounded() =>
        Fails("{% macro m(n) %}{% for i in range(1000) %}{{ 'y' * 100000 }}{% endfor %}{% endmacro %}{% for i in range(1000) %}{{ m(i) }}{% endfor %}");

    /// <summary>
    /// Values that contain themselves (set ns.x = ns; a.append(a)), or are nested thousands deep, fail to print or compare
    /// with an error: before, printing such a namespace or comparing two such lists overflowed the stack and killed the
    /// process (found by the Jinja fuzz target).
    /// </summary>
    [Theory]
    [InlineData("{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }}", "print")]
    [InlineData("{% set a = [] %}{% set b = [] %}{% set _ = a.append(a) %}{% set _ = b.append(b) %}{{ a == b }}", "compare")]
    [InlineData("{% set a = [] %}{% set b = [] %}{% set _ = a.append(a) %}{% set _ = b.append(b) %}{{ a < b }}", "compare")]
    [InlineData("{% set a = [] %}{% set b = [] %}{% set _ = a.append(a) %}{% set _ = b.append(b) %}{{ a in [b] }}", "compare")]
    [InlineData("{% set a = [] %}{% set b = [] %}{% set _ = a.append(a) %}{% set _ = b.append(b) %}{{ [a, b] | unique | list | length }}", "compare")]
    [InlineData("{% set a = {} %}{% set b = {} %}{% set _ = a.update({'k': a}) %}{% set _ = b.update({'k': b}) %}{{ a == b }}", "compare")]
    [InlineData("{% set ns = namespace(x=[], y=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}{% endfor %}{{ ns.x == ns.y }}", "compare")]
    public void SelfContainingAndDeepValuesFailToPrintOrCompareWithAnError(string template, string what) =>
        Assert.Contains($"nested too deeply to {what}", Fails(template).Message);

    [Fact]
    public void NestedValuesStillPrintAndCompare()
    {
        string output = new JinjaTemplate("{% set ns = namespace(x=1, y='a') %}{{ ns }} {{ [[1], [2]] == [[1], [2]] }} {{ [[1], [3]] < [[1], [4]] }} " +
            "{{ {'a': [1]} == {'a': [1]} }} {{ [1, [2]] in [[1, [2]]] }} {{ [[2], [1], [2]] | unique | list }}").Render(new JsonObject());
        Assert.Equal("<Namespace x=1, y='a'> True True True True [[2], [1]]", output);
    }

    [Fact]
    public void RecursiveMacroIsBounded() =>
        Assert.Contains("recursion", Fails("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}").Message);

    [Fact]
    public void MutualRecursionIsBounded() =>
        Fails("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}");

    [Fact]
    public void DeeplyNestedExpressionDoesNotOverflow() =>
        Fails("{{ " + new string('(', 100000) + "1" + new string(')', 100000) + " }}");

    [Fact]
    public void DeeplyNestedBlocksDoNotOverflow() =>
        Fails(string.Concat(Enumerable.Repeat("{% if true %}", 100000)));

    [Fact]
    public void DeeplyNestedListsDoNotOverflow() =>
        Fails("{{ " + new string('[', 100000) + new string(']', 100000) + " }}");

    [Fact]
    public void SelfReferencingListPrintsOrFailsCleanly() =>
        Fails("{% set l = [] %}{% set _ = l.append(l) %}{{ l }}");

    [Theory]
    [InlineData("{{ ''.__class__ }}")]
    [InlineData("{{ ''.__class__.__mro__ }}")]
    [InlineData("{{ x.__init__ }}")]
    [InlineData("{{ x.GetType }}")]
    [InlineData("{{ messages.__class__.__base__ }}")]
    [InlineData("{{ range.__globals__ }}")]
    [InlineData("{{ ''['__class__'] }}")]
    [InlineData("{{ x | attr('__dict__') }}")]
    public void DotNetAndPythonInternalsAreJustUndefined(string t) =>
        Assert.Equal("", new JinjaTemplate(t).Render(JsonNode.Parse("""{"x": {"a": 1}, "messages": []}""")!.AsObject()));

    [Theory]
    [InlineData("{{ x.GetType() }}")]
    [InlineData("{{ ''.GetType() }}")]
    [InlineData("{{ ''.__class__() }}")]
    [InlineData("{{ nosuch() }}")]
    [InlineData("{{ x.ToString() }}")]
    [InlineData("{{ (1).__add__(2) }}")]
    public void CallingMissingMembersIsAnError(string t) => Fails(t, """{"x": {"a": 1}}""");

    [Fact]
    public void TimeBudgetStopsSlowRenders()
    {
        var options = new TemplateOptions { MaxRenderTime = TimeSpan.FromMilliseconds(50), MaxLoopIterations = long.MaxValue };
        var t = new JinjaTemplate("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}",
            options with { MaxLoopIterations = 10_000_000_000 });
        var sw = Stopwatch.StartNew();
        Assert.Throws<TemplateException>(() => t.Render(new JsonObject()));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
    }
}
