using System.Text;

namespace Kaiyuan.Cli.Eval;

/// <summary>RFC 4180 CSV (quoted fields may hold commas, quotes doubled, and line breaks), each row with the line it starts on.</summary>
internal static class Csv
{
    public static List<(int Line, List<string> Fields)> Read(string path)
    {
        string text = File.ReadAllText(path, Encoding.UTF8);
        var rows = new List<(int, List<string>)>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, rowLine = 1;
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"')
                {
                    if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                    else quoted = false;
                }
                else
                {
                    if (c == '\n') line++;
                    field.Append(c);
                }
                continue;
            }
            switch (c)
            {
                case '"' when field.Length == 0:
                    quoted = any = true;
                    break;
                case ',':
                    fields.Add(field.ToString());
                    field.Clear();
                    any = true;
                    break;
                case '\r':
                    break;
                case '\n':
                    if (any || field.Length > 0) EndRow();
                    line++;
                    rowLine = line;
                    break;
                default:
                    field.Append(c);
                    any = true;
                    break;
            }
        }
        if (quoted) throw new FormatException($"{path}:{rowLine}: a quoted field is not closed");
        if (any || field.Length > 0) EndRow();
        return rows;

        void EndRow()
        {
            fields.Add(field.ToString());
            rows.Add((rowLine, fields));
            fields = [];
            field.Clear();
            any = false;
        }
    }
}
