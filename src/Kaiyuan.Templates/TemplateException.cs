namespace Kaiyuan.Templates;

/// <summary>A template failed to parse or render (syntax error, type error, or a sandbox limit was hit).</summary>
public class TemplateException : Exception
{
    /// <summary>A template error; a known location is appended to <see cref="Exception.Message"/> as "(line L, column C)".</summary>
    /// <param name="message">What went wrong, without the location.</param>
    /// <param name="line">1-based source line, or 0 when unknown.</param>
    /// <param name="column">1-based source column, or 0 when unknown.</param>
    /// <param name="inner">The exception that caused this one, if any.</param>
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
