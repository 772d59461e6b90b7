using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Templates;

namespace Kaiyuan.Cli.Commands;

/// <summary><c>kaiyuan template</c>: renders a chat prompt through a model's (or a file's) chat template.</summary>
internal static class TemplateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF model whose tokenizer.chat_template to use" };
        var template = new Option<string>("--template") { Description = "A Jinja chat template file" };
        var messages = new Option<string>("--messages") { Description = "JSON file: an array of OpenAI-style messages, or an object with \"messages\" (and \"tools\")", Required = true };
        var tools = new Option<string>("--tools") { Description = "JSON file with an OpenAI tools array" };
        var noGen = new Option<bool>("--no-generation-prompt") { Description = "Do not append the assistant generation prompt" };
        var vars = new Option<string[]>("--var") { Description = "Extra template variable as key=JSON (repeatable), e.g. --var enable_thinking=false", AllowMultipleArgumentsPerToken = false };
        var bos = new Option<string>("--bos-token") { Description = "bos_token value (default: from the model, else empty)" };
        var eos = new Option<string>("--eos-token") { Description = "eos_token value (default: from the model, else empty)" };
        var cmd = new Command("template", "Render a chat prompt with a chat template and print it exactly")
        {
            model, template, messages, tools, noGen, vars, bos, eos,
        };
        cmd.SetAction(p =>
        {
            var io = p.InvocationConfiguration;
            try
            {
                string prompt = Render(p.GetValue(model), m => StoreCommands.ResolveModel(p, m), p.GetValue(template), p.GetValue(messages)!, p.GetValue(tools), !p.GetValue(noGen),
                    p.GetValue(vars) ?? [], p.GetValue(bos), p.GetValue(eos));
                io.Output.Write(prompt);
                io.Output.Flush();
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or JsonException or TemplateException or UnauthorizedAccessException or InvalidOperationException)
            {
                io.Error.WriteLine($"kaiyuan template: {OneLine(e.Message)}");
                return 1;
            }
        });
        return cmd;
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    private static string Render(string? model, Func<string, string> resolveModel, string? templateFile, string messagesFile, string? toolsFile,
        bool addGenerationPrompt, string[] vars, string? bos, string? eos)
    {
        if ((model is null) == (templateFile is null))
            throw new ArgumentException("give exactly one of -m MODEL or --template FILE.jinja");
        if (model is not null) model = resolveModel(model);
        string source;
        string modelBos = "", modelEos = "";
        if (templateFile != null)
        {
            source = File.ReadAllText(templateFile);
        }
        else
        {
            (source, modelBos, modelEos) = ReadModelTemplate(model!);
        }

        var messagesNode = ParseJsonFile(messagesFile, "--messages") ?? throw new ArgumentException("--messages: file holds null");
        JsonNode? toolsNode = null;
        if (messagesNode is JsonObject request)
        {
            toolsNode = request["tools"]?.DeepClone();
            messagesNode = request["messages"]?.DeepClone() ?? throw new ArgumentException("--messages: object has no \"messages\"");
        }
        if (messagesNode is not JsonArray) throw new ArgumentException("--messages: expected a JSON array of messages");
        if (toolsFile != null)
            toolsNode = ParseJsonFile(toolsFile, "--tools");

        var extra = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var v in vars)
        {
            int eq = v.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--var '{v}': expected key=JSON");
            string value = v[(eq + 1)..];
            try
            {
                extra[v[..eq]] = JsonNode.Parse(value);
            }
            catch (JsonException)
            {
                throw new ArgumentException($"--var '{v}': the value is not JSON (quote strings: key='\"text\"')");
            }
        }

        var formatter = new ChatFormatter(source);
        return formatter.Render(new ChatRenderRequest
        {
            Messages = messagesNode,
            Tools = toolsNode,
            AddGenerationPrompt = addGenerationPrompt,
            BosToken = bos ?? modelBos,
            EosToken = eos ?? modelEos,
            Extra = extra,
        });
    }

    /// <summary>The chat template and bos/eos token strings stored in a GGUF file.</summary>
    private static (string Template, string Bos, string Eos) ReadModelTemplate(string path)
    {
        using var f = Kaiyuan.Gguf.GgufFile.Open(path);
        string t = f.Metadata.GetStringOrNull("tokenizer.chat_template")
            ?? throw new ArgumentException($"{path}: the model has no tokenizer.chat_template");
        string TokenText(string key)
        {
            long id = f.Metadata.GetInteger(key, -1);
            if (id < 0 || !f.Metadata.Contains("tokenizer.ggml.tokens")) return "";
            var tokens = f.Metadata.GetStringArray("tokenizer.ggml.tokens");
            return id < tokens.Length ? tokens[id] : "";
        }
        return (t, TokenText("tokenizer.ggml.bos_token_id"), TokenText("tokenizer.ggml.eos_token_id"));
    }

    /// <summary>A JSON file's content; a syntax error names the option, the file and the line instead of the parser's wording.</summary>
    private static JsonNode? ParseJsonFile(string path, string option)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{option}: {path} is not valid JSON (line {(e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1})", e);
        }
    }
}
