using System.CommandLine;
using System.Globalization;
using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan run MODEL</c>: chat in the terminal with the model's own chat template (or, for a model without one, complete
/// each input as a raw prompt, as llama.cpp's completion mode does). <c>-p</c> (or piped stdin) answers once and exits.
/// A store reference that is not pulled yet is pulled first.
/// </summary>
internal static class RunCommand
{
    private const string Help = """
        /set temperature 0.7   sampling temperature (0 = greedy); also top_k, top_p, min_p, repeat_penalty, seed, num_predict
        /set system TEXT       the system message (chat templates only); /set system with no text removes it
        /show                  the current settings
        /clear                 forget the conversation
        /bye                   quit (Ctrl-D works too); Ctrl-C stops an answer
        Multi-line input: end a line with \ to continue it, or wrap the message in triple quotes.
        """;

    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "A store reference (e.g. qwen2.5:0.5b, hf.co/OWNER/REPO:Q4_K_M) or a GGUF file path" };
        var prompt = new Option<string>("--prompt", "-p") { Description = "Answer this once and exit (piped stdin works too)" };
        // Ollama's form, `run MODEL "prompt"`, is the same as -p.
        var promptArgument = new Argument<string?>("prompt") { Description = "Answer this once and exit (as -p)", Arity = ArgumentArity.ZeroOrOne };
        var system = new Option<string>("--system") { Description = "System message (chat templates only)" };
        var samplingArgs = new SamplingArguments();
        var constraintArgs = new ConstraintArguments();
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        var cacheType = Arguments.CacheType();
        var promptCache = Arguments.PromptCache();
        var promptCacheMax = Arguments.PromptCacheMax();
        var cmd = new Command("run", "Chat with a model in the terminal (or answer one prompt with -p)")
        {
            model, promptArgument, prompt, system, threads, ctxSize, cacheType, promptCache, promptCacheMax,
        };
        samplingArgs.AddTo(cmd);
        constraintArgs.AddTo(cmd);
        var speculation = new SpeculationArguments();
        speculation.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var sampling = samplingArgs.Read(p);
            string path = StoreCommands.ResolveOrPull(p, p.GetValue(model)!);
            using var file = GgufFile.Open(path);
            using var loaded = ModelLoader.Load(file);
            var type = Arguments.ParseCacheType(p.GetValue(cacheType));
            using var session = new InferenceSession(loaded, p.GetValue(ctxSize), p.GetValue(threads), type);
            using var draftModel = speculation.DraftModelPath(p) is { } draftPath ? ModelLoader.Load(draftPath) : null;
            // Disposed last: it finishes writing the entries offered.
            using var store = p.GetValue(promptCache) is { } dir
                ? PromptCacheStore.Open(dir, loaded, type, p.GetValue(promptCacheMax) << 20, message => Console.Error.WriteLine($"kaiyuan: {message}"))
                : null;
            var tokenizer = Tokenizer.FromGguf(file.Metadata);
            var codec = TokenCodec.For(tokenizer);
            var format = PromptFormats.For(file.Metadata, tokenizer);
            var chat = new ChatLoop(session, codec, format)
            {
                Sampling = sampling,
                System = p.GetValue(system),
                MaxTokens = p.GetValue(samplingArgs.Count),
                PromptCache = store,
                LookupDraftTokens = speculation.Read(p),
                MtpDraftTokens = speculation.ReadMtp(p),
                Draft = draftModel is null ? null : new Speculative.DraftModel(draftModel, loaded, p.GetValue(speculation.DraftMax)),
            };
            if (constraintArgs.Compile(p, tokenizer) is { } grammar)
            {
                // The answer is constrained after any reasoning block, as the server does.
                string? template = format.IsChat ? file.Metadata.GetStringOrNull("tokenizer.chat_template") : null;
                chat.Constraint = rendered => grammar.CreateForAnswer(rendered, template);
            }

            if (p.GetValue(prompt) is not null && p.GetValue(promptArgument) is not null)
                throw new ArgumentException("give the prompt once: as an argument or with -p, not both");
            if ((p.GetValue(prompt) ?? p.GetValue(promptArgument)) is { } once) return AnswerOnce(chat, once);
            if (Console.IsInputRedirected)
            {
                string piped = Console.In.ReadToEnd().TrimEnd('\r', '\n');
                return piped.Length == 0 ? 0 : AnswerOnce(chat, piped);
            }
            return Interactive(chat, format, p.GetValue(model)!, Console.In, Console.Out, Console.Error);
        });
        return cmd;
    }

    private static int AnswerOnce(ChatLoop chat, string text)
    {
        chat.Answer(text, Console.Out, Console.Error);
        return 0;
    }

    /// <summary>The interactive loop: messages and slash commands from <paramref name="input"/> until /bye or end of input.</summary>
    internal static int Interactive(ChatLoop chat, IPromptFormat format, string name, TextReader input, TextWriter output, TextWriter messages)
    {
        messages.WriteLine(format.IsChat
            ? $"chatting with {name}; /? for help, /bye to quit"
            : $"{name} has no chat template: each input is completed as a raw prompt (completion mode); /? for help, /bye to quit");
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (chat.Cancel()) e.Cancel = true;
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            while (ChatInput.Read(input, output) is { } text)
            {
                string trimmed = text.Trim();
                if (trimmed.Length == 0) continue;
                if (trimmed.StartsWith('/'))
                {
                    if (!Command(chat, trimmed, messages)) break;
                    continue;
                }
                try
                {
                    chat.Answer(text, output, messages);
                }
                catch (ContextOverflowException e)
                {
                    messages.WriteLine(e.Message);
                }
                output.WriteLine();
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        return 0;
    }

    /// <summary>Carries out a slash command; false means quit.</summary>
    internal static bool Command(ChatLoop chat, string line, TextWriter messages)
    {
        var parts = line.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        switch (parts[0].ToLowerInvariant())
        {
            case "/bye" or "/exit" or "/quit":
                return false;
            case "/clear":
                chat.Clear();
                messages.WriteLine("conversation cleared");
                return true;
            case "/?" or "/help":
                messages.WriteLine(Help);
                return true;
            case "/show":
                var s = chat.Sampling;
                messages.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"temperature {s.Temperature}, top_k {s.TopK}, top_p {s.TopP}, min_p {s.MinP}, repeat_penalty {s.RepeatPenalty}, " +
                    $"seed {(s.Seed?.ToString(CultureInfo.InvariantCulture) ?? "random")}, num_predict {chat.MaxTokens}; system: {chat.System ?? "(none)"}"));
                return true;
            case "/set" when parts.Length >= 2:
                Set(chat, parts[1].ToLowerInvariant(), parts.Length > 2 ? parts[2] : "", messages);
                return true;
            default:
                messages.WriteLine($"unknown command {parts[0]}; /? for help");
                return true;
        }
    }

    private static void Set(ChatLoop chat, string key, string value, TextWriter messages)
    {
        if (key == "system")
        {
            chat.System = value.Length == 0 ? null : value;
            messages.WriteLine(value.Length == 0 ? "system message removed" : "system message set");
            return;
        }
        var inv = CultureInfo.InvariantCulture;
        bool ok;
        var s = chat.Sampling;
        switch (key)
        {
            case "temperature" or "temp":
                ok = float.TryParse(value, NumberStyles.Float, inv, out var t) && t >= 0;
                if (ok) chat.Sampling = s with { Temperature = t };
                break;
            case "top_k":
                ok = int.TryParse(value, NumberStyles.Integer, inv, out var k) && k >= 0;
                if (ok) chat.Sampling = s with { TopK = k };
                break;
            case "top_p":
                ok = float.TryParse(value, NumberStyles.Float, inv, out var tp) && tp is >= 0 and <= 1;
                if (ok) chat.Sampling = s with { TopP = tp };
                break;
            case "min_p":
                ok = float.TryParse(value, NumberStyles.Float, inv, out var mp) && mp is >= 0 and <= 1;
                if (ok) chat.Sampling = s with { MinP = mp };
                break;
            case "repeat_penalty":
                ok = float.TryParse(value, NumberStyles.Float, inv, out var rp) && rp > 0;
                if (ok) chat.Sampling = s with { RepeatPenalty = rp };
                break;
            case "seed":
                ok = ulong.TryParse(value, NumberStyles.Integer, inv, out var seed);
                if (ok) chat.Sampling = s with { Seed = seed };
                break;
            case "num_predict":
                ok = int.TryParse(value, NumberStyles.Integer, inv, out var n) && n >= -1;
                if (ok) chat.MaxTokens = n;
                break;
            default:
                messages.WriteLine($"unknown setting '{key}'; /? for help");
                return;
        }
        messages.WriteLine(ok ? $"set {key} to {value}" : $"'{value}' is not a valid {key}");
    }
}
