namespace Kaiyuan.Chat;

/// <summary>An error that becomes an OpenAI-shaped response: <c>{"error":{"message","type","param","code"}}</c>.</summary>
/// <param name="status">The HTTP status it answers with.</param>
/// <param name="message">What is wrong, for a person.</param>
/// <param name="param">The request field at fault, if one is.</param>
/// <param name="code">A machine-readable code (<c>context_length_exceeded</c>, <c>invalid_grammar</c>, …).</param>
/// <param name="type">The error type; by default, from the status (<c>invalid_request_error</c>, <c>server_error</c>, …).</param>
public sealed class RequestException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    /// <summary>The HTTP status it answers with.</summary>
    public int Status { get; } = status;
    /// <summary>The request field at fault, if one is.</summary>
    public string? Param { get; } = param;
    /// <summary>A machine-readable code, if there is one.</summary>
    public string? Code { get; } = code;
    /// <summary>OpenAI's error type (<c>invalid_request_error</c>, <c>rate_limit_error</c>, <c>server_error</c>, …).</summary>
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "invalid_request_error",
        429 => "rate_limit_error",
        503 => "unavailable_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    /// <summary>A 400 about the request.</summary>
    public static RequestException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    /// <summary>A 400 for a field or value this server does not support: "'<paramref name="param"/>' <paramref name="what"/> is not supported".</summary>
    public static RequestException Unsupported(string param, string what) =>
        new(400, $"'{param}' {what} is not supported by this server", param, "unsupported_parameter");
}
