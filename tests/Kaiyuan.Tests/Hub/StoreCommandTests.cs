using Kaiyuan.Hub;

namespace Kaiyuan.Tests.Hub;

[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>Runs the command line in-process with stdout and stderr captured (tests in the "Console" collection only).</summary>
internal static class ConsoleRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o);
        Console.SetError(e);
        try
        {
            int code = Kaiyuan.Cli.CommandLine.Run(args);
            return (code, o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}

/// <summary><c>list</c>, <c>show</c>, <c>info</c> and <c>rm</c> through the real command line, on a store filled from the fake Hub.</summary>
[Collection("Console")]
public sealed class StoreCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => ConsoleRunner.Run(args);

    [Fact]
    public async Task ListShowInfoAndRemoveWorkOnPulledModels()
    {
        using var hub = new FakeHub();
        // show and info need a model with full metadata, which only the fixtures have: without them the test is skipped.
        var file = new FakeHub.FakeFile("tiny-Q6_K.gguf", File.ReadAllBytes(Fixtures.ModelPath("aidreams260K", "aidreams260K-q6_k.gguf")));
        hub.Add("kaiyuan-test/tiny-GGUF", file);
        using var temp = new TempStore();
        using var client = TempStore.Client(hub);
        await new ModelPuller(temp.Store, client, ModelCatalog.BuiltIn()).PullAsync("hf.co/kaiyuan-test/tiny-GGUF:Q6_K", TestContext.Current.CancellationToken);
        string store = temp.Store.Root;

        var list = Run("list", "--store", store);
        Assert.Equal(0, list.Code);
        Assert.Contains("hf.co/kaiyuan-test/tiny-GGUF/tiny-Q6_K.gguf", list.Out);
        Assert.Contains(file.Sha256[..12], list.Out);

        var show = Run("show", "hf.co/kaiyuan-test/tiny-GGUF:Q6_K", "--store", store);
        Assert.Equal(0, show.Code);
        Assert.Contains("architecture  llama", show.Out);
        Assert.Contains("quantization", show.Out);
        Assert.Contains("chat template", show.Out);

        var info = Run("info", "hf.co/kaiyuan-test/tiny-GGUF:Q6_K", "--store", store, "--no-tensors");
        Assert.Equal(0, info.Code);
        Assert.Contains("architecture:  llama", info.Out);

        var missing = Run("show", "hf.co/kaiyuan-test/tiny-GGUF:Q8_0", "--store", store);
        Assert.Equal(1, missing.Code);
        Assert.Contains("not in the local store", missing.Err);
        Assert.DoesNotContain("   at ", missing.Err);

        var rm = Run("rm", "hf.co/kaiyuan-test/tiny-GGUF:Q6_K", "--store", store);
        Assert.Equal(0, rm.Code);
        Assert.Contains("removed", rm.Out);
        Assert.Contains("no models", Run("list", "--store", store).Out);
    }
}
