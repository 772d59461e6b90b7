using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>llama.cpp server's helper endpoints: tokenize, detokenize, apply-template (errors are OpenAI-shaped, as on /v1).</summary>
internal static class LlamaCppApi
{
    /// <summary>The paths these routes live on, which the API key guards as it does /v1 and /api.</summary>
    public static readonly string[] Paths = ["/tokenize", "/detokenize", "/apply-template"];

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/tokenize", TokenizeAsync);
        app.MapPost("/detokenize", DetokenizeAsync);
        app.MapPost("/apply-template", ApplyTemplateAsync);
    }

    private static async Task TokenizeAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        // As llama.cpp, one model's tokenizer whatever "model" says; with several, "model" picks it.
        var runtime = await state.RuntimeForAsync(http, state.Models.Several ? r.String("model") : null);
        string content = r.String("content") ?? throw RequestException.BadRequest("'content' is required", "content");
        // llama.cpp's defaults: no BOS unless asked, control-token text parsed into control tokens.
        var ids = runtime.Tokenize(content, r.Bool("add_special", false), r.Bool("parse_special", true));
        var tokens = new JsonArray();
        if (r.Bool("with_pieces", false))
            foreach (int id in ids) tokens.Add(new JsonObject { ["id"] = id, ["piece"] = Piece(runtime, id) });
        else
            foreach (int id in ids) tokens.Add(id);
        await HttpOutput.Json(http, new JsonObject { ["tokens"] = tokens });
    }

    /// <summary>A token's text, or (as llama.cpp) its bytes when they are not whole UTF-8 on their own (byte-fallback tokens).</summary>
    private static JsonNode Piece(ModelRuntime runtime, int id)
    {
        byte[] bytes = runtime.TokenBytes(id);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return new JsonArray(bytes.Select(b => (JsonNode)(int)b).ToArray());
        }
    }

    private static async Task DetokenizeAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        // As llama.cpp, one model's tokenizer whatever "model" says; with several, "model" picks it.
        var runtime = await state.RuntimeForAsync(http, state.Models.Several ? r.String("model") : null);
        if (r.Get("tokens") is not { ValueKind: JsonValueKind.Array } array) throw RequestException.BadRequest("'tokens' must be an array of token ids", "tokens");
        int vocab = runtime.VocabSize;
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (var e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0 || id >= vocab)
                throw RequestException.BadRequest($"'tokens' holds a value that is not a token id (0…{vocab - 1})", "tokens");
            ids[i++] = id;
        }
        await HttpOutput.Json(http, new JsonObject { ["content"] = runtime.Detokenize(ids) });
    }

    /// <summary>The prompt chat completions would feed the model for these messages, generation prompt included.</summary>
    private static async Task ApplyTemplateAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        var messages = ApiRequests.Messages(r);
        var tools = ApiRequests.ToolChoice(r, ApiRequests.Tools(r)).Tools;
        await HttpOutput.Json(http, new JsonObject { ["prompt"] = runtime.FormatChat(messages, tools, addGenerationPrompt: true) });
    }
}
