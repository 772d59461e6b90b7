using Kaiyuan.Extensions.AI;
using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Tokenizers;
using Microsoft.Extensions.AI;

// An application built on the packages alone: the in-process IChatClient, and the runtime's own decode loop.
using var model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[0], Threads = 2, Parallel = 1, ContextLength = 256 });
IChatClient chat = model.AsChatClient();
var answer = await chat.GetResponseAsync("Once upon a time", new ChatOptions { Temperature = 0, MaxOutputTokens = 16 });
Console.WriteLine($"chat: {answer.FinishReason}, {answer.Usage?.OutputTokenCount} tokens");
if (answer.FinishReason is null || answer.Usage?.OutputTokenCount is not > 0) return 1;

using var raw = ModelLoader.Load(args[0]);
var tokenizer = Tokenizer.FromGguf(raw.File.Metadata);
var ids = Generator.Generate(new InferenceSession(raw, 256), tokenizer.Encode("Once upon a time", true, false), new Sampler(SamplerOptions.Greedy),
    new GenerationOptions { MaxTokens = 16, IsEndOfGeneration = tokenizer.IsEndOfGeneration }).Select(t => t.Id).ToArray();
string text = tokenizer.Decode(ids, renderSpecial: false);
Console.WriteLine($"runtime: {text.Trim()}");
return ids.Length > 0 && text.Trim().Length > 0 ? 0 : 1;
