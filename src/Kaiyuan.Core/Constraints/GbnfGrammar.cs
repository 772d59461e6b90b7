namespace Kaiyuan.Constraints;

// TEMPORARY stand-in until the GBNF front end lands (same API).
public static class GbnfGrammar
{
    /// <summary>A llama.cpp GBNF grammar (root rule "root").</summary>
    public static Grammar Parse(string text) => throw new GrammarException("GBNF grammars are not supported yet");
}
