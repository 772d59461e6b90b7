namespace Kaiyuan.Constraints;

// TEMPORARY stand-in until the regular-expression front end lands (same API).
public static class RegexGrammar
{
    /// <summary>The pattern as a grammar node matching the whole output.</summary>
    public static GrammarNode Parse(string pattern) => throw new GrammarException("regular expressions are not supported yet");

    /// <summary>The pattern anywhere in the output.</summary>
    public static GrammarNode ParseSearch(string pattern) => throw new GrammarException("regular expressions are not supported yet");
}
