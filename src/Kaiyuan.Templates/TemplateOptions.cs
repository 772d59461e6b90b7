namespace Kaiyuan.Templates;

/// <summary>Parsing and sandbox settings. The defaults match Hugging Face transformers' environment.</summary>
public sealed record TemplateOptions
{
    /// <summary>The default options, shared.</summary>
    public static readonly TemplateOptions Default = new();

    /// <summary>Remove the first newline after a block tag (Jinja trim_blocks).</summary>
    public bool TrimBlocks { get; init; } = true;

    /// <summary>Strip spaces and tabs before a block tag at the start of a line (Jinja lstrip_blocks).</summary>
    public bool LstripBlocks { get; init; } = true;

    /// <summary>Largest output, and largest single string value, in characters.</summary>
    public int MaxOutputLength { get; init; } = 8 * 1024 * 1024;

    /// <summary>Largest list a template may build.</summary>
    public int MaxListLength { get; init; } = 1_000_000;

    /// <summary>Total loop iterations (all loops together) in one render.</summary>
    public long MaxLoopIterations { get; init; } = 1_000_000;

    /// <summary>Deepest nesting of macro calls.</summary>
    public int MaxRecursionDepth { get; init; } = 100;

    /// <summary>Deepest nesting of expressions and blocks accepted by the parser.</summary>
    public int MaxParseDepth { get; init; } = 200;

    /// <summary>Wall-clock budget of one render; null for none.</summary>
    public TimeSpan? MaxRenderTime { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Clock behind <c>strftime_now</c> (local time as Python's datetime.now()).</summary>
    public Func<DateTime> Clock { get; init; } = () => DateTime.Now;
}
