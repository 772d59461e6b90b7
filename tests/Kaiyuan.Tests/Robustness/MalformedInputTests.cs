using System.Net;
using System.Text;
using Kaiyuan.AspNetCore;
using Kaiyuan.Constraints;
using Kaiyuan.Models;
using Kaiyuan.Gguf;
using Kaiyuan.Tests.Server;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Robustness;

/// <summary>The inputs that once took the process down or answered 500 (issue 21), kept as regression tests.</summary>
public sealed class MalformedInputTests
{
    /// <summary>
    /// aidreams260K's bytes with one byte token's digits mutated (<c>&lt;0x41&gt;</c> → <c>&lt;0xZ1&gt;</c>): decoding pieces were built on a
    /// pool thread, whose FormatException aborted the process. Now the file is refused at load, naming the token.
    /// </summary>
    private static byte[] MutatedByteToken()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        var needle = "<0x41>"u8;
        int at = bytes.AsSpan().IndexOf(needle);
        Assert.True(at > 0, "the fixture has no <0x41> token");
        bytes[at + 3] = (byte)'Z';
        return bytes;
    }

    [Fact]
    public void ABadByteTokenIsALoadErrorNotACrash()
    {
        var file = GgufFile.FromBytes(MutatedByteToken(), "mutated.gguf");
        var e = Assert.Throws<GgufMetadataException>(() => Tokenizer.FromGguf(file.Metadata));
        Assert.Contains("<0xZ1>", e.Message);
        // Loaded to run (the in-process API, and the server, which loads the same way): an error that names the file.
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-mutated-{Guid.NewGuid():N}.gguf");
        File.WriteAllBytes(path, MutatedByteToken());
        try
        {
            var load = Assert.Throws<InvalidDataException>(() => Kaiyuan.Extensions.AI.KaiyuanModel.Load(path));
            Assert.Contains(Path.GetFileName(path), load.Message);
            Assert.Contains("<0xZ1>", load.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void AVocabularyDecodesOnceItsPiecesAreBuiltInTheBackground()
    {
        // The byte tokens are checked before the background build starts, so a valid vocabulary's first decode waits
        // for that build and reads its pieces.
        var tokenizer = Tokenizer.FromGguf(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        var ids = tokenizer.Encode("In my dream", addSpecial: false, parseSpecial: false);
        Assert.Equal("In my dream", tokenizer.Decode(ids).TrimStart());
    }

    /// <summary>The qwen3 fixture written again with one tensor replaced (its shape and data).</summary>
    private static GgufFile Rewrite(string tensor, Func<GgufTensor, (long[] Dimensions, byte[] Data)> change, Action<GgufMetadata>? metadata = null, string folder = "qwen3")
    {
        using var source = GgufFile.Open(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        var writer = new GgufWriter();
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        metadata?.Invoke(writer.Metadata);
        foreach (var t in source.Tensors)
        {
            var (dims, data) = t.Name == tensor ? change(t) : (t.Dimensions, t.Bytes.ToArray());
            writer.AddTensor(t.Name, t.Type, dims, data);
        }
        var stream = new MemoryStream();
        writer.Write(stream);
        return GgufFile.FromBytes(stream.ToArray(), "rewritten.gguf");
    }

    /// <summary>
    /// Tensors whose shapes do not fit the hyper-parameters or each other (found by tools/fuzz.sh gguf as ArgumentExceptions
    /// from the kernels on the first forward pass) are refused when the model is built, the tensor named.
    /// </summary>
    [Theory]
    [InlineData("blk.0.attn_norm.weight")]
    [InlineData("blk.1.ffn_gate.weight")]
    [InlineData("blk.1.attn_output.weight")]
    [InlineData("output_norm.weight")]
    public void ATensorOfTheWrongShapeIsALoadError(string tensor)
    {
        using var file = Rewrite(tensor, t =>
        {
            // One row (or, for a vector, one value) fewer: the data still matches the shape, the model does not.
            var dims = (long[])t.Dimensions.Clone();
            dims[^1] -= 1;
            long bytes = t.ByteSize / t.Dimensions[^1] * dims[^1];
            return (dims, t.Bytes[..(int)bytes].ToArray());
        });
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file));
        Assert.Contains($"'{tensor}'", e.Message);
    }

    /// <summary>
    /// A block count of half a billion (one mutated byte, found by tools/fuzz.sh gguf) made the loader size an array of
    /// layers by it before reading any: 4.3 GB for a 0.5 MB file. Now it is refused against the tensors the file has.
    /// </summary>
    [Fact]
    public void AHugeBlockCountIsRefusedBeforeAnythingIsSizedByIt()
    {
        using var file = Rewrite("none", t => (t.Dimensions, []), m => m.Set("qwen3.block_count", GgufValue.Of(0x2000_0004u)));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file));
        Assert.Contains("block_count is 536870916", e.Message);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 64 << 20);
    }

    /// <summary>
    /// The same for a hybrid model, whose pattern of linear and full-attention layers is sized by the block count while the
    /// metadata is read (found by tools/fuzz.sh gguf on the qwen35 seed: an OutOfMemoryException).
    /// </summary>
    [Fact]
    public void AHybridModelsHugeBlockCountIsRefusedBeforeItsLayerPatternIsSized()
    {
        using var file = Rewrite("none", t => (t.Dimensions, []), m => m.Set("qwen35.block_count", GgufValue.Of(0x7000_0000u)), "qwen35");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file));
        Assert.Contains("block_count is 1879048192", e.Message);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 64 << 20);
    }

    /// <summary>Linear-attention hyper-parameters that do not fit each other are load errors naming the key.</summary>
    [Theory]
    [InlineData("qwen35.ssm.conv_kernel", 0u, "ssm.conv_kernel")]
    [InlineData("qwen35.ssm.time_step_rank", 3u, "ssm.time_step_rank")]
    [InlineData("qwen35.ssm.state_size", 4096u, "ssm.inner_size")]
    [InlineData("qwen35.ssm.inner_size", 100u, "ssm.inner_size")]
    public void InconsistentLinearAttentionHyperParametersAreLoadErrors(string key, uint value, string named)
    {
        using var file = Rewrite("none", t => (t.Dimensions, []), m => m.Set(key, GgufValue.Of(value)), "qwen35");
        Assert.Contains(named, Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file)).Message);
    }

    /// <summary>
    /// A rope dimension count beyond the head (found by tools/fuzz.sh gguf's structured mutations) sized a stack buffer
    /// (a stack overflow ends the process) or indexed past the head; now it is refused at load.
    /// </summary>
    [Theory]
    [InlineData(1u << 30)]
    [InlineData(130u)]
    [InlineData(7u)]
    public void ARopeDimensionCountThatDoesNotFitTheHeadIsALoadError(uint dims)
    {
        using var file = Rewrite("none", t => (t.Dimensions, []), m => m.Set("qwen3.rope.dimension_count", GgufValue.Of(dims)));
        Assert.Contains("rope.dimension_count", Assert.Throws<InvalidDataException>(() => ModelLoader.Load(file)).Message);
    }

    /// <summary>
    /// A WordPiece vocabulary cut short of its unknown token (found by tools/fuzz.sh gguf): a word with no pieces is dropped
    /// instead of becoming id -1, which the model and the decoder refuse.
    /// </summary>
    [Fact]
    public void AVocabularyWithoutItsUnknownTokenNeverEncodesAnIdOutsideIt()
    {
        using var file = GgufFile.Open(Fixtures.Require("tokenizers", "ggml-vocab-bert-bge.gguf"));
        var metadata = new GgufMetadata();
        foreach (var (key, value) in file.Metadata.Entries)
        {
            if (value.Value is GgufArray { Count: > 50 } array && key.StartsWith("tokenizer.ggml.", StringComparison.Ordinal))
            {
                var items = Array.CreateInstance(array.Items.GetType().GetElementType()!, 50);
                Array.Copy(array.Items, items, 50);
                metadata.Set(key, GgufValue.Of(new GgufArray(array.ElementType, items)));
            }
            else metadata.Set(key, value);
        }
        var tokenizer = Tokenizer.FromGguf(metadata);
        var ids = tokenizer.Encode("zebra quartz [CLS] hello", addSpecial: true, parseSpecial: true);
        Assert.All(ids, id => Assert.InRange(id, 0, 49));
        tokenizer.Decode(ids);
    }

    /// <summary>An empty token list (found by tools/fuzz.sh gguf) is refused when the tokenizer is built, not when a word is encoded.</summary>
    [Fact]
    public void AnEmptyVocabularyIsALoadError()
    {
        using var file = GgufFile.Open(Fixtures.Require("tokenizers", "ggml-vocab-bert-bge.gguf"));
        var metadata = new GgufMetadata();
        foreach (var (key, value) in file.Metadata.Entries)
            metadata.Set(key, key.StartsWith("tokenizer.ggml.", StringComparison.Ordinal) && value.Value is GgufArray a
                ? GgufValue.Of(new GgufArray(a.ElementType, Array.CreateInstance(a.Items.GetType().GetElementType()!, 0)))
                : value);
        Assert.Contains("tokens is empty", Assert.Throws<GgufMetadataException>(() => Tokenizer.FromGguf(metadata)).Message);
    }

    /// <summary>Template variables whose strings cannot be read (found by tools/fuzz.sh jinja): a TemplateException, not an InvalidOperationException.</summary>
    [Fact]
    public void UnreadableTemplateVariablesAreATemplateError()
    {
        var template = new Kaiyuan.Templates.JinjaTemplate("{{ messages[0].content }}");
        byte[] invalidUtf8 = [.. "{\"messages\":[{\"content\":\""u8, 0xC0, 0xAF, .. "\"}]}"u8];
        Assert.Contains("not valid Unicode", Assert.Throws<Kaiyuan.Templates.TemplateException>(
            () => template.Render(System.Text.Json.JsonDocument.Parse(invalidUtf8).RootElement)).Message);
        Assert.Throws<Kaiyuan.Templates.TemplateException>(() => template.Render(System.Text.Json.JsonDocument.Parse("""{"messages":[{"content":"\ud800"}]}""").RootElement));
        Assert.Throws<Kaiyuan.Templates.TemplateException>(() => template.Render(System.Text.Json.JsonDocument.Parse("[1]").RootElement));
    }

    /// <summary>
    /// A regex or GBNF grammar that matches nothing (an empty character class; found by tools/fuzz-afl.sh grammar) starts
    /// its automaton dead, which the automaton allows for, but creating a matcher looked up the dead state's configurations
    /// (an ArgumentOutOfRangeException). Now the matcher stands at the dead state: it allows no token and accepts none.
    /// </summary>
    [Theory]
    [InlineData("regex", "[]")]
    [InlineData("regex", "[]d")]
    [InlineData("gbnf", "root ::= []")]
    public void AGrammarThatMatchesNothingAllowsNoToken(string kind, string source)
    {
        var grammar = kind == "regex" ? Grammar.Of(RegexGrammar.Parse(source)) : GbnfGrammar.Parse(source);
        var tokenizer = Tokenizer.FromGguf(Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf"));
        var trie = TokenTrie.For(tokenizer.Vocabulary);
        var compiled = new CompiledGrammar(ByteAutomaton.Compile(grammar), trie);
        var matcher = compiled.CreateMatcher();
        var mask = new ulong[trie.MaskLength];
        matcher.FillMask(mask);
        Assert.All(mask, word => Assert.Equal(0UL, word));
        Assert.False(matcher.Accept(tokenizer.Encode("d", addSpecial: false, parseSpecial: false)[0]));
        Assert.False(matcher.IsAccepting);
        // After the automaton is cleared (a long generation under a large grammar), the matcher finds the dead state again.
        compiled.Automaton.Reset();
        matcher.FillMask(mask);
        Assert.All(mask, word => Assert.Equal(0UL, word));
    }

    public static TheoryData<string> JsonRoutes => new()
    {
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
        "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show", "/tokenize", "/apply-template",
    };

    [Theory]
    [MemberData(nameof(JsonRoutes))]
    public async Task InvalidUtf8InAJsonBodyIsA400AndTheServerGoesOn(string route)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "fine"));
        using var http = new HttpClient { BaseAddress = server.Address };
        // Valid JSON structure, but a string holds bytes that are not UTF-8 (a lone continuation byte, an overlong form).
        byte[] body = [.. "{\"model\":\"scripted\",\"prompt\":\""u8, 0x80, 0xC0, 0xAF, .. "\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}],\"input\":\"x\"}"u8];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/json");
        using var response = await http.PostAsync(route, content, ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("UTF-8", await response.Content.ReadAsStringAsync(ct));

        // Valid UTF-8 whose escapes decode to a lone surrogate, in a value and in a property name (found by tools/fuzz.sh http).
        foreach (string json in new[] { """{"model":"scripted","prompt":"\ud800","messages":[{"role":"user","content":"\udfff x"}],"input":"x"}""", """{"model":"scripted","\ud800":1}""" })
        {
            using var escaped = new StringContent(json, Encoding.UTF8, "application/json");
            using var refused = await http.PostAsync(route, escaped, ct);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("lone surrogate", await refused.Content.ReadAsStringAsync(ct));
        }

        using var ok = await http.PostAsync("/v1/completions", new StringContent("""{"model":"scripted","prompt":"hi","max_tokens":4}""", Encoding.UTF8, "application/json"), ct);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }
}
