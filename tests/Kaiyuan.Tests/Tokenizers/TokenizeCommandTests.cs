using System.CommandLine;
using Kaiyuan.Cli.Commands;

namespace Kaiyuan.Tests.Tokenizers;

public class TokenizeCommandTests
{
    private static (int Code, string Out, string Err) Invoke(params string[] args)
    {
        var root = new RootCommand { TokenizeCommand.CreateTokenize(), TokenizeCommand.CreateDetokenize() };
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void TokenizeJson()
    {
        string model = Fixtures.Require("tokenizers", "ggml-vocab-llama-spm.gguf");
        var (code, output, _) = Invoke("tokenize", "-m", model, "--text", "Hello world", "--json");
        Assert.Equal(0, code);
        Assert.Equal("{\"ids\":[1,15043,3186],\"pieces\":[\"<s>\",\" Hello\",\" world\"]}", output.Trim());
    }

    [Fact]
    public void TokenizeLinesAndDetokenize()
    {
        string model = Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf");
        var (code, output, _) = Invoke("tokenize", "-m", model, "--text", "<|im_start|>a\nb", "--special", "--no-bos");
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("151644\t<|im_start|>", lines[0]);
        Assert.Contains("\\n", output);

        var (code2, text, _) = Invoke("detokenize", "-m", model, "--ids", "151644,64,198,65");
        Assert.Equal(0, code2);
        Assert.Equal("<|im_start|>a\nb", text.TrimEnd('\n'));
    }

    [Fact]
    public void BadInputsFailWithOneLine()
    {
        var (code, _, err) = Invoke("tokenize", "-m", "/nonexistent/model.gguf", "--text", "x");
        Assert.NotEqual(0, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("kaiyuan: ", err);

        string model = Fixtures.Require("tokenizers", "ggml-vocab-llama-spm.gguf");
        var (code2, _, err2) = Invoke("detokenize", "-m", model, "--ids", "1,x");
        Assert.NotEqual(0, code2);
        Assert.Contains("'x'", err2);
        var (code3, _, err3) = Invoke("detokenize", "-m", model, "--ids", "99999999");
        Assert.NotEqual(0, code3);
        Assert.Contains("outside the vocabulary", err3);
    }
}
