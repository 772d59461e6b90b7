using Kaiyuan.Models;
using Kaiyuan.Samples.Completion;
using Kaiyuan.Sampling;
using Kaiyuan.Tokenizers;

if (args.Length is < 2 or > 3 || (args.Length == 3 && !int.TryParse(args[2], out _)))
{
    Console.Error.WriteLine("usage: Completion MODEL.gguf \"prompt\" [MAX_TOKENS]");
    return 2;
}

using var model = ModelLoader.Load(args[0]);
var tokenizer = Tokenizer.FromGguf(model.File.Metadata);
Console.Write(args[1]);
int count = TextCompletion.Complete(model, tokenizer, args[1], args.Length == 3 ? int.Parse(args[2]) : 128,
    new SamplerOptions { Temperature = 0.8f, Seed = 42 }, Console.Out);
Console.WriteLine();
Console.Error.WriteLine($"{model.Architecture}: {count} tokens");
return 0;
