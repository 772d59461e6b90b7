using Kaiyuan.Extensions.AI;
using Kaiyuan.Samples.ConsoleChat;
using Microsoft.Extensions.AI;

if (args.Length != 1)
{
    Console.Error.WriteLine("usage: ConsoleChat MODEL   (a .gguf path, or a reference pulled into the store such as qwen2.5:0.5b)");
    return 2;
}

// Loading maps the GGUF file and builds the tokenizer; one loaded model serves any number of clients.
using var model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[0] });
Console.Error.WriteLine($"{model.ModelId}: type a message, an empty line or Ctrl-D to quit.");

await ChatLoop.RunAsync(model.AsChatClient(), Console.In, Console.Out,
    new ChatOptions { Temperature = 0.7f, MaxOutputTokens = 1024 },
    systemPrompt: "You are a helpful assistant.");
return 0;
