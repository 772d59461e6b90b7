// A web app of its own that also serves a GGUF model over OpenAI's API: its own endpoint, its own API-key policy and
// rate limiter on the mapped Kaiyuan group. Run from this folder: dotnet run -c Release -- --Model path/to/model.gguf
using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

var builder = WebApplication.CreateBuilder(args);
string model = builder.Configuration["Model"] ?? throw new InvalidOperationException("say which GGUF file to serve: --Model path/to/model.gguf");

builder.Services.AddKaiyuan(o =>
{
    o.ModelPath = model;
    o.Alias = builder.Configuration["Alias"];
    o.Parallel = 4;
    o.ContextSize = 4096;
});

// The app's own API keys (from configuration: ApiKeys:0, ApiKeys:1, …) and a per-key rate limit.
builder.Services.AddAuthentication("ApiKey").AddScheme<AuthenticationSchemeOptions, ApiKeyHandler>("ApiKey", null);
builder.Services.AddAuthorization(o => o.AddPolicy("llm", p => p.RequireAuthenticatedUser()));
builder.Services.AddRateLimiter(o =>
{
    o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
    o.AddPolicy("llm", http => RateLimitPartition.GetTokenBucketLimiter(http.User.Identity?.Name ?? "anonymous", _ => new TokenBucketRateLimiterOptions
    {
        TokenLimit = 10,
        TokensPerPeriod = 10,
        ReplenishmentPeriod = TimeSpan.FromMinutes(1),
    }));
});

var app = builder.Build();
app.UseAuthentication();
app.UseAuthorization();
app.UseRateLimiter();

app.MapGet("/", () => "Hello from the app. The model is at /v1 (Authorization: Bearer <key>).");
app.MapOpenAIEndpoints().RequireAuthorization("llm").RequireRateLimiting("llm");

app.Run();

/// <summary>Accepts <c>Authorization: Bearer &lt;key&gt;</c> for a key listed in the configuration's ApiKeys.</summary>
internal sealed class ApiKeyHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, IConfiguration configuration)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return Task.FromResult(AuthenticateResult.NoResult());
        string key = header[7..].Trim();
        string[] keys = configuration.GetSection("ApiKeys").Get<string[]>() ?? [];
        if (!keys.Contains(key, StringComparer.Ordinal)) return Task.FromResult(AuthenticateResult.Fail("unknown API key"));
        var user = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, "key-" + Array.IndexOf(keys, key))], Scheme.Name));
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(user, Scheme.Name)));
    }
}
