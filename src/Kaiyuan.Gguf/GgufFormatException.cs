namespace Kaiyuan.Gguf;

/// <summary>A GGUF file is malformed or unsupported; the message names the file and the problem.</summary>
public sealed class GgufFormatException(string fileName, string problem)
    : Exception($"{fileName}: {problem}")
{
    /// <summary>The file's name (without its directory) as the message gives it.</summary>
    public string FileName { get; } = fileName;
    /// <summary>What is wrong with the file, without the file name.</summary>
    public string Problem { get; } = problem;
}

/// <summary>A metadata key is missing or holds a value of another type than asked for.</summary>
internal sealed class GgufMetadataException(string message) : Exception(message);
