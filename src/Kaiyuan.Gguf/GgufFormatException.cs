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

/// <summary>
/// The metadata does not describe what it must: a key is missing, holds a value of another type than asked for, or a
/// value the model or tokenizer cannot use (a malformed vocabulary, say).
/// </summary>
/// <param name="message">What is wrong, naming the key or the token.</param>
public sealed class GgufMetadataException(string message) : Exception(message);
