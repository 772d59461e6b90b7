using Kaiyuan.Extensions.AI;
using Kaiyuan.Samples.StructuredExtraction;

if (args.Length is < 1 or > 2)
{
    Console.Error.WriteLine("usage: StructuredExtraction MODEL [TEXT]   (MODEL: a .gguf path or a store reference such as qwen2.5:0.5b)");
    return 2;
}
string text = args.Length == 2 ? args[1]
    : "Hi, it's Ada Lovelace from Analytical Engines Ltd. Reach me at ada@engines.example or +44 20 7946 0000.";

using var model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[0] });
var contact = await ContactExtractor.ExtractAsync(model.AsChatClient(), text, Console.Out);
return contact is null ? 1 : 0;
