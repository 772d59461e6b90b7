using System.ComponentModel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Kaiyuan.Tests.Samples;

/// <summary>Semantic Kernel over the in-process IChatClient (SK's MEAI bridge): the kernel calls its own functions.</summary>
public sealed class SemanticKernelTests
{
    private sealed class Clock
    {
        public int Calls;

        [KernelFunction("get_time"), Description("Gets the current time")]
        public string GetTime()
        {
            Interlocked.Increment(ref Calls);
            return "12:34";
        }
    }

    [Fact]
    public async Task AKernelInvokesItsFunctionThroughTheChatClient()
    {
        var ct = TestContext.Current.CancellationToken;
        using var model = SampleModels.LoadQwen3();
        // What SK asks of the model, as the chat client sees it.
        var requests = new List<ChatOptions?>();
        IChatClient client = model.AsChatClient().AsBuilder()
            .Use(async (messages, options, next, cancel) => { lock (requests) requests.Add(options?.Clone()); await next(messages, options, cancel); })
            .Build();

        var builder = Kernel.CreateBuilder();
        // SK's bridge: its function-invoking client runs the kernel's functions that the model calls (the bridge alone
        // hands the calls back unrun), and AsChatCompletionService makes the pipeline the kernel's chat service.
        builder.Services.AddSingleton(client.AsBuilder().UseKernelFunctionInvocation().Build().AsChatCompletionService());
        var clock = new Clock();
        builder.Plugins.AddFromObject(clock, "clock");
        var kernel = builder.Build();

        foreach (int seed in SampleModels.Seeds)
        {
            requests.Clear();
            // Required: the random model must call a function (SK then stops offering them, so the next answer is text);
            // one call, or the grammar would let it go on to more calls until the token limit.
            var settings = new PromptExecutionSettings
            {
                FunctionChoiceBehavior = FunctionChoiceBehavior.Required(options: new FunctionChoiceBehaviorOptions { AllowParallelCalls = false }),
                ExtensionData = new Dictionary<string, object>
                {
                    ["temperature"] = 1.0,
                    ["top_p"] = 1.0,
                    ["seed"] = (long)seed,
                    ["max_tokens"] = 300,
                    ["strictJsonSchema"] = true,
                },
            };
            var answer = await kernel.InvokePromptAsync("What time is it?", new KernelArguments(settings), cancellationToken: ct);
            var first = requests[0]!;
            Assert.IsType<RequiredChatToolMode>(first.ToolMode);
            Assert.Equal("clock_get_time", Assert.Single(first.Tools!).Name);
            Assert.Equal(seed, first.Seed);
            Assert.False(first.AllowMultipleToolCalls);
            if (clock.Calls == 0) continue; // the forced call ran out of tokens before it closed
            // The kernel ran its function and asked the model again with the result, which answered.
            Assert.Equal(1, clock.Calls);
            Assert.Equal(2, requests.Count);
            Assert.IsNotType<RequiredChatToolMode>(requests[1]!.ToolMode);
            Assert.NotNull(answer.GetValue<string>());
            return;
        }
        Assert.Fail("no seed completed the forced call for the kernel to run");
    }
}
