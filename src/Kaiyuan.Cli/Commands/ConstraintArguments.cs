using System.CommandLine;
using Kaiyuan.Constraints;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary>The structured-output options `generate` and `run` share: at most one of a JSON schema, a GBNF grammar or a regex.</summary>
internal sealed class ConstraintArguments
{
    public Option<string> JsonSchema { get; } = new("--json-schema") { Description = "Answer with JSON that validates against the JSON Schema in this file" };
    public Option<string> GrammarFile { get; } = new("--grammar-file") { Description = "Answer as the GBNF grammar in this file (llama.cpp's syntax) allows" };
    public Option<string> Regex { get; } = new("--regex") { Description = "Answer with text that matches this regular expression as a whole" };

    public void AddTo(Command command)
    {
        command.Options.Add(JsonSchema);
        command.Options.Add(GrammarFile);
        command.Options.Add(Regex);
        command.Validators.Add(r =>
        {
            int given = (r.GetValue(JsonSchema) is null ? 0 : 1) + (r.GetValue(GrammarFile) is null ? 0 : 1) + (r.GetValue(Regex) is null ? 0 : 1);
            if (given > 1) r.AddError("give at most one of --json-schema, --grammar-file and --regex");
        });
    }

    /// <summary>The requested grammar compiled for the model's vocabulary, or null when none was asked for. Errors name the option.</summary>
    public GrammarConstraint? Compile(ParseResult p, Tokenizer? tokenizer)
    {
        string? schema = p.GetValue(JsonSchema), grammar = p.GetValue(GrammarFile), regex = p.GetValue(Regex);
        if (schema is null && grammar is null && regex is null) return null;
        if (tokenizer is null) throw new NotSupportedException("structured output (--json-schema, --grammar-file, --regex) needs the model's tokenizer");
        var (option, source, build) = schema is not null
            ? ("--json-schema", Read(schema, "--json-schema"), (Func<string, Tokenizer, GrammarConstraint>)GrammarConstraint.FromJsonSchema)
            : grammar is not null
                ? ("--grammar-file", Read(grammar, "--grammar-file"), GrammarConstraint.FromGbnf)
                : ("--regex", regex!, GrammarConstraint.FromRegex);
        try
        {
            return build(source, tokenizer);
        }
        catch (GrammarException e)
        {
            throw new GrammarException($"{option}: {e.Message}");
        }
    }

    private static string Read(string path, string option)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new FileNotFoundException($"{option}: cannot read {path}: {e.Message}");
        }
    }
}
