using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Kaiyuan.Gguf;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan tokenize</c> and <c>kaiyuan detokenize</c>: a model's tokenizer from the command line.</summary>
internal static class TokenizeCommand
{
    public static Command CreateTokenize()
    {
        var model = ModelOption();
        var text = new Option<string>("--text") { Description = "Text to tokenize; '-' reads it from standard input", Required = true };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not add BOS/EOS even where the model asks for them" };
        var special = new Option<bool>("--special") { Description = "Parse special-token texts such as <|im_start|> into their tokens" };
        var json = new Option<bool>("--json") { Description = "Print {\"ids\":[...],\"pieces\":[...]} instead of one 'id<TAB>piece' line per token" };
        var command = new Command("tokenize", "Split text into a model's tokens") { model, text, noBos, special, json };
        command.SetAction(parse => Run(parse, () =>
        {
            var tokenizer = Tokenizer.FromGguf(parse.GetValue(model)!);
            string input = parse.GetValue(text)!;
            if (input == "-") input = Console.In.ReadToEnd();
            var ids = tokenizer.Encode(input, addSpecial: !parse.GetValue(noBos), parseSpecial: parse.GetValue(special));
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) output.WriteLine(ToJson(tokenizer, ids));
            else foreach (int id in ids) output.WriteLine($"{id}\t{Escape(Piece(tokenizer, id))}");
        }));
        return command;
    }

    public static Command CreateDetokenize()
    {
        var model = ModelOption();
        var ids = new Option<string>("--ids") { Description = "Token ids, comma-separated (e.g. 1,15043,3186)", Required = true };
        var hideSpecial = new Option<bool>("--hide-special") { Description = "Leave control tokens such as BOS out of the text" };
        var command = new Command("detokenize", "Turn token ids back into text") { model, ids, hideSpecial };
        command.SetAction(parse => Run(parse, () =>
        {
            var tokenizer = Tokenizer.FromGguf(parse.GetValue(model)!);
            int[] list = parse.GetValue(ids)!
                .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
                    ? v : throw new FormatException($"--ids: '{s}' is not a token id"))
                .ToArray();
            foreach (int id in list)
                if ((uint)id >= (uint)tokenizer.VocabSize) throw new FormatException($"--ids: token id {id} is outside the vocabulary (0..{tokenizer.VocabSize - 1})");
            parse.InvocationConfiguration.Output.WriteLine(tokenizer.Decode(list, renderSpecial: !parse.GetValue(hideSpecial)));
        }));
        return command;
    }

    private static Option<string> ModelOption() => new("--model", "-m") { Description = "GGUF model (or vocab-only GGUF) file", Required = true };

    /// <summary>Runs a command body, turning expected failures into one stderr line and exit code 1.</summary>
    internal static int Run(ParseResult parse, Action body)
    {
        try
        {
            body();
            return 0;
        }
        catch (Exception e) when (e is GgufFormatException or GgufMetadataException or NotSupportedException or IOException
                                     or UnauthorizedAccessException or FormatException or ArgumentException)
        {
            // The same prefix as every other command's errors.
            parse.InvocationConfiguration.Error.WriteLine($"kaiyuan: {e.Message.ReplaceLineEndings(" ").Trim()}");
            return 1;
        }
    }

    private static string Piece(Tokenizer tokenizer, int id) => Encoding.UTF8.GetString(tokenizer.TokenBytes(id, renderSpecial: true));

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t");

    internal static string ToJson(Tokenizer tokenizer, int[] ids)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartArray("ids");
            foreach (int id in ids) w.WriteNumberValue(id);
            w.WriteEndArray();
            w.WriteStartArray("pieces");
            foreach (int id in ids) w.WriteStringValue(Piece(tokenizer, id));
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
