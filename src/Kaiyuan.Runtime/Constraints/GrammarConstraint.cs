using Kaiyuan.Templates.Parsing;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Constraints;

/// <summary>
/// Structured output for the low-level <see cref="Inference.Generator"/>: a JSON Schema, a GBNF grammar (llama.cpp's
/// syntax) or a regular expression, compiled once against a model's vocabulary (and cached, as the server's are); each
/// generation takes a fresh <see cref="TokenConstraint"/> from it through
/// <see cref="Inference.GenerationOptions.Constraint"/>. The chat pipeline (<see cref="Chat.StructuredOutput"/>) builds
/// the same constraints from requests.
/// </summary>
public sealed class GrammarConstraint
{
    private readonly CompiledGrammar _grammar;
    private readonly Vocabulary _vocabulary;

    private GrammarConstraint(CompiledGrammar grammar, Vocabulary vocabulary)
    {
        _grammar = grammar;
        _vocabulary = vocabulary;
    }

    /// <summary>Output that is JSON valid against <paramref name="schema"/> (the schema's text).</summary>
    /// <exception cref="GrammarException">The schema is not valid JSON, or uses what the compiler does not support.</exception>
    public static GrammarConstraint FromJsonSchema(string schema, Tokenizer tokenizer) =>
        Compile("json-schema", schema, tokenizer, () => JsonSchemaGrammar.Compile(schema));

    /// <summary>Output that the GBNF grammar <paramref name="gbnf"/> (llama.cpp's syntax, starting at <c>root</c>) allows.</summary>
    /// <exception cref="GrammarException">The grammar does not parse or has no <c>root</c>.</exception>
    public static GrammarConstraint FromGbnf(string gbnf, Tokenizer tokenizer) =>
        Compile("gbnf", gbnf, tokenizer, () => GbnfGrammar.Parse(gbnf));

    /// <summary>Output that matches the regular expression <paramref name="pattern"/> as a whole.</summary>
    /// <exception cref="GrammarException">The pattern does not parse, or uses what the compiler does not support.</exception>
    public static GrammarConstraint FromRegex(string pattern, Tokenizer tokenizer) =>
        Compile("regex", pattern, tokenizer, () => Grammar.Of(RegexGrammar.Parse(pattern)));

    private static GrammarConstraint Compile(string kind, string source, Tokenizer tokenizer, Func<Grammar> build)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var vocabulary = tokenizer.Vocabulary;
        return new GrammarConstraint(GrammarCache.Get(kind, source, TokenTrie.For(vocabulary), build), vocabulary);
    }

    /// <summary>A constraint for one generation from a raw prompt: the grammar applies from the first token.</summary>
    public TokenConstraint Create() => _grammar.CreateMatcher();

    /// <summary>
    /// A constraint for one chat answer: the grammar applies where the answer starts, after a reasoning block that
    /// <paramref name="renderedPrompt"/> leaves open or that the model may open itself (the markers of the family that
    /// <paramref name="chatTemplate"/> belongs to); from the first token for a model without them.
    /// </summary>
    public TokenConstraint CreateForAnswer(string renderedPrompt, string? chatTemplate)
    {
        ArgumentNullException.ThrowIfNull(renderedPrompt);
        var format = chatTemplate is null ? null : OutputParserFactory.DetectFormat(chatTemplate);
        bool mayReason = chatTemplate is not null && TriggeredConstraint.MayReason(format, chatTemplate);
        return TriggeredConstraint.ForAnswer(_grammar.CreateMatcher(), _vocabulary, format, renderedPrompt, mayReason);
    }
}
