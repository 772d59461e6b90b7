using System.CommandLine;
using Kaiyuan.Cli.Commands;

namespace Kaiyuan.Cli;

/// <summary>The <c>kaiyuan</c> command tree and its error policy: one line on stderr and a non-zero exit, no stack trace unless --verbose.</summary>
internal static class CommandLine
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Show stack traces on errors", Recursive = true };

    public static readonly Option<string> StoreRoot = new("--store")
    {
        Description = "Model store folder (default: KAIYUAN_HOME, else ~/.kaiyuan)",
        Recursive = true,
    };

    public static RootCommand Build()
    {
        var root = new RootCommand("Kaiyuan: run open-weight GGUF language models on your own CPU, in pure managed C#.");
        root.Options.Add(Verbose);
        root.Options.Add(StoreRoot);
        foreach (var command in Commands()) root.Subcommands.Add(command);
        return root;
    }

    private static IEnumerable<Command> Commands() =>
    [
        InfoCommand.Create(),
        GenerateCommand.Create(),
        BenchCommand.Create(TokenizerBenchCommand.Create(), ServeCommand.CreateBench(), PrefixBenchCommand.Create(), MatMulBenchCommand.Create(), AttentionBenchCommand.Create(), MemoryBenchCommand.Create(),
            GrammarBenchCommand.Create()),
        TokenizeCommand.CreateTokenize(),
        TokenizeCommand.CreateDetokenize(),
        TemplateCommand.Create(),
        StoreCommands.Pull(),
        StoreCommands.List(),
        StoreCommands.Show(),
        StoreCommands.Remove(),
        QuantizeCommand.Create(),
        ImatrixCommand.Create(),
        SynthCommand.Create(),
        RunCommand.Create(),
        EvalCommand.Create(),
        ArenaCommand.Create(),
        ServeCommand.Create(),
    ];

    public static int Run(string[] args)
    {
        var root = Build();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && parse.CommandResult.Command is { Subcommands.Count: > 0 } group)
        {
            // A command group (kaiyuan, kaiyuan bench) without a known subcommand: name the typo and list the choices.
            string path = parse.CommandResult.Command == root ? "kaiyuan" : $"kaiyuan {group.Name}";
            string commands = string.Join(", ", group.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            if (parse.UnmatchedTokens.FirstOrDefault(t => !t.StartsWith('-')) is { } unknown)
            {
                Console.Error.WriteLine($"{path}: unknown command '{unknown}'; commands: {commands} (see {path} --help)");
                return 2;
            }
            if (parse.UnmatchedTokens.Count == 0 && group.Action is null)
            {
                // Nothing asked for: the help is the answer.
                return group.Parse(["--help"]).Invoke();
            }
        }
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"kaiyuan: {parse.Errors[0].Message} (see kaiyuan --help)");
            return 2;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Fail(e, parse.GetValue(Verbose));
        }
    }

    /// <summary>Reports an exception as one line (the whole chain's messages with --verbose and a stack trace).</summary>
    public static int Fail(Exception e, bool verbose)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"kaiyuan: {e.Message}");
        if (verbose) Console.Error.WriteLine(e);
        return 1;
    }
}
