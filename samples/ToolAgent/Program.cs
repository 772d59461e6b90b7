using Kaiyuan.Extensions.AI;
using Kaiyuan.Samples.ToolAgent;

if (args.Length is < 1 or > 3 || (args.Length > 1 && args[1] is not ("--meai" or "--agent-framework")))
{
    Console.Error.WriteLine("usage: ToolAgent MODEL [--meai|--agent-framework] [QUESTION]   (MODEL: a .gguf path or a store reference such as qwen2.5:0.5b)");
    return 2;
}
string question = args.Length == 3 ? args[2] : "What's the weather like in Lisbon, and what time is it there?";

using var model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[0] });
if (args.Length > 1 && args[1] == "--agent-framework")
    await AgentFrameworkAgent.AskAsync(model.AsChatClient(), [question, "And in Tokyo?"], Console.Out);
else
    await WeatherAgent.AskAsync(model.AsChatClient(), question, Console.Out);
return 0;
