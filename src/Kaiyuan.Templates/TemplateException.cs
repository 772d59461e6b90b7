namespace Kaiyuan.Templates;

/// <summary>A template failed to parse or render (syntax error, type error, or a sandbox limit was hit).</summary>
public class TemplateException : Exception
{
    public TemplateException(string message, int line = 0, int column = 0, Exception? inner = null)
        : base(Format(message, line, column), inner)
    {
        Line = line;
        Column = column;
        RawMessage = message;
    }

    /// <summary>1-based source line, or 0 when unknown.</summary>
    public int Line { get; }

    /// <summary>1-based source column, or 0 when unknown.</summary>
    public int Column { get; }

    /// <summary>The message without the location suffix.</summary>
    public string RawMessage { get; }

    private static string Format(string message, int line, int column) =>
        line <= 0 ? message : column <= 0 ? $"{message} (line {line})" : $"{message} (line {line}, column {column})";
}

/// <summary>The template itself called <c>raise_exception(msg)</c>; <see cref="TemplateMessage"/> is exactly msg.</summary>
internal sealed class TemplateRaisedException(string message, int line = 0)
    : TemplateException(message, line)
{
    public string TemplateMessage { get; } = message;
}
