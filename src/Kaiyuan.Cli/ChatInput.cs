using System.Text;

namespace Kaiyuan.Cli;

/// <summary>
/// Reads one message from the terminal: a line, or several when a line ends in <c>\</c> (continued on the next) or
/// when the message opens with <c>"""</c> (it runs until a line that ends with <c>"""</c>).
/// </summary>
internal static class ChatInput
{
    /// <summary>The next message, or null at end of input. <paramref name="prompt"/> receives the prompts when interactive.</summary>
    public static string? Read(TextReader reader, TextWriter? prompt)
    {
        prompt?.Write(">>> ");
        prompt?.Flush();
        string? line = reader.ReadLine();
        if (line is null) return null;
        var text = new StringBuilder();
        if (line.TrimStart().StartsWith("\"\"\"", StringComparison.Ordinal))
        {
            string rest = line.TrimStart()[3..];
            while (true)
            {
                if (rest.EndsWith("\"\"\"", StringComparison.Ordinal))
                {
                    text.Append(rest[..^3]);
                    return text.ToString();
                }
                text.Append(rest).Append('\n');
                prompt?.Write("... ");
                prompt?.Flush();
                var next = reader.ReadLine();
                if (next is null) return text.ToString().TrimEnd('\n');
                rest = next;
            }
        }
        while (line.EndsWith('\\'))
        {
            text.Append(line, 0, line.Length - 1).Append('\n');
            prompt?.Write("... ");
            prompt?.Flush();
            line = reader.ReadLine();
            if (line is null) return text.ToString().TrimEnd('\n');
        }
        text.Append(line);
        return text.ToString();
    }
}
