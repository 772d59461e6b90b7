namespace Kaiyuan.Chat;

/// <summary>An error that becomes an OpenAI-shaped response: <c>{"error":{"message","type","param","code"}}</c>.</summary>
internal sealed class RequestException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
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

    public static RequestException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    public static RequestException Unsupported(string param, string what) =>
        new(400, $"'{param}' {what} is not supported by this server", param, "unsupported_parameter");
}
