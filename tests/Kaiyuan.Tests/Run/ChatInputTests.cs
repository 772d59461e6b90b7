using Kaiyuan.Cli;

namespace Kaiyuan.Tests.Run;

public sealed class ChatInputTests
{
    private static List<string> ReadAll(string text)
    {
        var reader = new StringReader(text);
        var messages = new List<string>();
        while (ChatInput.Read(reader, null) is { } m) messages.Add(m);
        return messages;
    }

    [Fact]
    public void OneLineIsOneMessage() => Assert.Equal(["hello", "/bye"], ReadAll("hello\n/bye\n"));

    [Fact]
    public void BackslashContinuesTheLine() => Assert.Equal(["first\nsecond\nthird", "next"], ReadAll("first\\\nsecond\\\nthird\nnext\n"));

    [Fact]
    public void TripleQuotesWrapABlock()
    {
        Assert.Equal(["line one\n\nline three", "after"], ReadAll("\"\"\"line one\n\nline three\"\"\"\nafter\n"));
        Assert.Equal(["inline"], ReadAll("\"\"\"inline\"\"\"\n"));
        Assert.Equal(["\nbody\n"], ReadAll("\"\"\"\nbody\n\"\"\"\n"));
    }

    [Fact]
    public void EndOfInputEndsAnOpenMessage() => Assert.Equal(["unfinished\nblock"], ReadAll("\"\"\"unfinished\nblock\n"));
}
