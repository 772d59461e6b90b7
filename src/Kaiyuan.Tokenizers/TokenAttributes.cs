namespace Kaiyuan.Tokenizers;

/// <summary>The token types stored in <c>tokenizer.ggml.token_type</c>.</summary>
internal enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>
/// Per-token attribute bits, as llama.cpp keeps them: a token can gain bits after loading (a USER_DEFINED
/// <c>&lt;|endoftext|&gt;</c> becomes CONTROL too), so types alone are not enough.
/// </summary>
[Flags]
internal enum TokenAttributes
{
    Undefined = 0,
    Unknown = 1 << 0,
    Unused = 1 << 1,
    Normal = 1 << 2,
    Control = 1 << 3,
    UserDefined = 1 << 4,
    Byte = 1 << 5,
    Normalized = 1 << 6,
    LStrip = 1 << 7,
    RStrip = 1 << 8,
    SingleWord = 1 << 9,
}
