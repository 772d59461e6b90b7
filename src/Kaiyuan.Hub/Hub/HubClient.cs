using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Kaiyuan.Hub;

/// <summary>A failure talking to the Hub, with a message meant for the user.</summary>
public sealed class HubException(string message, HttpStatusCode? status = null, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>
    /// The HTTP status behind the failure (404 also when a repository has no file that matches); null when there was none (the
    /// Hub unreachable, an unexpected answer).
    /// </summary>
    public HttpStatusCode? Status { get; } = status;
}

/// <summary>A file in a Hub repository; <see cref="Sha256"/> is the LFS object id when the Hub publishes one.</summary>
public sealed record HubFile(string Repo, string Path, long Size, string? Sha256);

/// <summary>Where the Hub is and who we are to it.</summary>
public sealed record HubOptions
{
    /// <summary>The Hub used when <c>HF_ENDPOINT</c> is unset: <c>https://huggingface.co</c>.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>The Hub's base URL (<c>HF_ENDPOINT</c>).</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;
    /// <summary>A Hugging Face access token (<c>HF_TOKEN</c>), sent as a bearer token to the Hub's own host only.</summary>
    public string? Token { get; init; }
    /// <summary>Download attempts, each resuming from what the previous ones fetched.</summary>
    public int MaxAttempts { get; init; } = 5;
    /// <summary>The pause before each retry of an interrupted download.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Limit for API calls (listing); downloads have none but stall detection by the TCP stack.</summary>
    public TimeSpan ApiTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Options from <c>HF_ENDPOINT</c> and <c>HF_TOKEN</c> (trimmed; blank counts as unset), the rest at their defaults.</summary>
    public static HubOptions FromEnvironment()
    {
        var endpoint = Environment.GetEnvironmentVariable("HF_ENDPOINT");
        var token = Environment.GetEnvironmentVariable("HF_TOKEN");
        return new HubOptions
        {
            Endpoint = string.IsNullOrWhiteSpace(endpoint) ? DefaultEndpoint : endpoint.Trim(),
            Token = string.IsNullOrWhiteSpace(token) ? null : token.Trim(),
        };
    }
}

/// <summary>
/// The few Hugging Face Hub calls a pull needs: list a repository's files (<c>/api/models/REPO/tree/main</c>), and download
/// one (<c>/REPO/resolve/main/FILE</c>, following the redirect to the CDN) with HTTP Range resume.
/// </summary>
public sealed class HubClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _endpoint;

    /// <summary>The options the client was made with.</summary>
    public HubOptions Options { get; }

    /// <summary>A client for the Hub at <see cref="HubOptions.Endpoint"/>.</summary>
    /// <exception cref="HubException">The endpoint is not an http(s) URL.</exception>
    public HubClient(HubOptions options)
    {
        Options = options;
        if (!Uri.TryCreate(options.Endpoint.TrimEnd('/') + "/", UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new HubException($"HF_ENDPOINT '{options.Endpoint}' is not an http(s) URL");
        _endpoint = endpoint;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            ConnectTimeout = TimeSpan.FromSeconds(20),
            AutomaticDecompression = DecompressionMethods.None,
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("kaiyuan/0.1");
    }

    /// <summary>Closes the client's HTTP connections.</summary>
    public void Dispose() => _http.Dispose();

    private static string Escape(string path) => string.Join('/', path.Split('/').Select(Uri.EscapeDataString));

    /// <summary>The API URL that lists every file of <paramref name="repo"/> (<c>OWNER/REPO</c>) on its main branch.</summary>
    public Uri TreeUrl(string repo) => new(_endpoint, $"api/models/{Escape(repo)}/tree/main?recursive=true");
    /// <summary>The download URL of <paramref name="file"/> (a path in the repository) on <paramref name="repo"/>'s main branch.</summary>
    public Uri ResolveUrl(string repo, string file) => new(_endpoint, $"{Escape(repo)}/resolve/main/{Escape(file)}");

    /// <summary>All files of a repository's main branch, with sizes and LFS SHA-256s.</summary>
    public async Task<IReadOnlyList<HubFile>> ListFilesAsync(string repo, CancellationToken ct = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Options.ApiTimeout);
        var url = TreeUrl(repo);
        string body;
        try
        {
            using var response = await SendAsync(url, 0, timeout.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode) throw StatusError(response.StatusCode, $"repository {repo}", repo);
            body = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (Unreachable(e, ct)) { throw Offline(e); }

        var files = new List<HubFile>();
        try
        {
            using var doc = JsonDocument.Parse(body);
            foreach (var item in doc.RootElement.EnumerateArray())
            {
                if (!item.TryGetProperty("type", out var type) || type.GetString() != "file") continue;
                var path = item.GetProperty("path").GetString() ?? "";
                long size = item.TryGetProperty("size", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt64() : -1;
                string? sha = null;
                if (item.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                {
                    if (lfs.TryGetProperty("oid", out var oid)) sha = NormalizeSha(oid.GetString());
                    if (lfs.TryGetProperty("size", out var ls) && ls.ValueKind == JsonValueKind.Number) size = ls.GetInt64();
                }
                files.Add(new HubFile(repo, path, size, sha));
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw new HubException($"the Hub's file list for {repo} is not what was expected ({e.Message})", null, e);
        }
        return files;
    }

    /// <summary>
    /// The GGUF file a reference names: the exact file, or the one whose name carries the quantization (case-insensitive).
    /// </summary>
    public async Task<HubFile> ChooseFileAsync(Store.ModelReference reference, CancellationToken ct = default)
    {
        var files = await ListFilesAsync(reference.Repo, ct).ConfigureAwait(false);
        var ggufs = files.Where(f => f.Path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)).ToList();
        if (reference.File is { } wanted)
        {
            return ggufs.FirstOrDefault(f => f.Path == wanted)
                   ?? ggufs.FirstOrDefault(f => f.Path.Equals(wanted, StringComparison.OrdinalIgnoreCase))
                   ?? throw new HubException($"{reference.Repo} has no file {wanted}{Available(ggufs)}", HttpStatusCode.NotFound);
        }
        var models = ggufs.Where(f => !Path.GetFileName(f.Path).Contains("mmproj", StringComparison.OrdinalIgnoreCase)).ToList();
        if (models.Count == 0) throw new HubException($"{reference.Repo} has no GGUF files", HttpStatusCode.NotFound);
        var matching = models.Where(f => QuantNames.Matches(f.Path, reference.Quant!)).ToList();
        if (matching.Count == 0 && !reference.QuantExplicit && models.Count == 1) matching = models;
        if (matching.Count == 0)
            throw new HubException($"{reference.Repo} has no {reference.Quant} GGUF file{Available(models)}", HttpStatusCode.NotFound);
        var whole = matching.Where(f => !QuantNames.IsSplitPart(f.Path)).ToList();
        if (whole.Count == 0)
            throw new HubException($"{reference.Repo}: the {reference.Quant} model is split into parts ({matching[0].Path}, ...); " +
                                   "split GGUF files are not supported: merge them with llama-gguf-split --merge and pass the file path");
        return whole.OrderBy(f => f.Path.Count(c => c == '/')).ThenBy(f => f.Path.Length).ThenBy(f => f.Path, StringComparer.Ordinal).First();
    }

    private static string Available(List<HubFile> files)
    {
        if (files.Count == 0) return "";
        var quants = files.Select(f => QuantNames.FromFileName(f.Path)).OfType<string>().Distinct().ToList();
        return quants.Count > 0 ? $"; available: {string.Join(", ", quants)}" : $"; files: {string.Join(", ", files.Take(8).Select(f => f.Path))}";
    }

    /// <summary>
    /// Downloads <paramref name="file"/> into <paramref name="partialPath"/>, resuming from its current length with an HTTP
    /// Range request and retrying a cut connection up to <see cref="HubOptions.MaxAttempts"/> times. Returns the SHA-256 the
    /// Hub advertised in its <c>X-Linked-Etag</c>/<c>ETag</c> headers, if any. The caller verifies.
    /// </summary>
    public async Task<string?> DownloadAsync(HubFile file, string partialPath, Action<long, long>? progress = null,
        Action<string>? log = null, CancellationToken ct = default)
    {
        var url = ResolveUrl(file.Repo, file.Path);
        string? advertised = null;
        long expected = file.Size;
        for (int attempt = 1; ; attempt++)
        {
            long have = File.Exists(partialPath) ? new FileInfo(partialPath).Length : 0;
            if (expected >= 0 && have > expected)
            {
                File.Delete(partialPath);
                have = 0;
            }
            if (expected > 0 && have == expected) return advertised;
            try
            {
                using var response = await SendAsync(url, have, ct, headers =>
                {
                    advertised ??= NormalizeSha(Header(headers, "X-Linked-Etag"));
                    if (expected < 0 && long.TryParse(Header(headers, "X-Linked-Size"), out var linked)) expected = linked;
                }).ConfigureAwait(false);
                advertised ??= NormalizeSha(Header(response.Headers, "ETag"));
                switch (response.StatusCode)
                {
                    case HttpStatusCode.OK:
                        have = 0;
                        if (expected < 0 && response.Content.Headers.ContentLength is { } length) expected = length;
                        break;
                    case HttpStatusCode.PartialContent:
                        if (response.Content.Headers.ContentRange is not { From: { } from } range || from != have)
                        {
                            File.Delete(partialPath);
                            continue;
                        }
                        if (expected < 0 && range.Length is { } total) expected = total;
                        break;
                    case HttpStatusCode.RequestedRangeNotSatisfiable:
                        if (expected < 0 || have != expected) File.Delete(partialPath);
                        if (have == expected) return advertised;
                        continue;
                    default:
                        throw StatusError(response.StatusCode, $"file {file.Path} in {file.Repo}", file.Repo);
                }
                if (have > 0) log?.Invoke($"resuming at {have:N0} bytes");
                await using var source = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await using (var sink = new FileStream(partialPath, have == 0 ? FileMode.Create : FileMode.Append, FileAccess.Write,
                                 FileShare.None, 1 << 16, FileOptions.Asynchronous))
                {
                    var buffer = new byte[1 << 20];
                    long done = have;
                    progress?.Invoke(done, expected);
                    int n;
                    while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        await sink.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        done += n;
                        progress?.Invoke(done, expected);
                    }
                    await sink.FlushAsync(ct).ConfigureAwait(false);
                    if (expected >= 0 && done < expected) throw new IOException($"the connection closed at {done:N0} of {expected:N0} bytes");
                }
                return advertised;
            }
            catch (Exception e) when (attempt < Options.MaxAttempts && !ct.IsCancellationRequested && e is IOException or HttpRequestException or TaskCanceledException)
            {
                log?.Invoke($"download interrupted ({e.Message}); retrying ({attempt + 1}/{Options.MaxAttempts})");
                await Task.Delay(Options.RetryDelay, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (Unreachable(e, ct))
            {
                throw Offline(e);
            }
            catch (IOException e) when (!ct.IsCancellationRequested)
            {
                throw new HubException($"the download of {file.Path} failed after {attempt} attempts ({e.Message}); run the pull again to resume", null, e);
            }
        }
    }

    /// <summary>Sends a GET (with a Range from <paramref name="from"/> when above zero), following redirects by hand so the
    /// token goes to the Hub's own host only and the Hub's headers (X-Linked-Etag) are seen before the CDN's.</summary>
    private async Task<HttpResponseMessage> SendAsync(Uri url, long from, CancellationToken ct, Action<HttpResponseHeaders>? firstHeaders = null)
    {
        for (int hop = 0; hop < 10; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (from > 0) request.Headers.Range = new RangeHeaderValue(from, null);
            if (Options.Token is { } token && url.Scheme == _endpoint.Scheme && url.Authority == _endpoint.Authority)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (hop == 0) firstHeaders?.Invoke(response.Headers);
            int code = (int)response.StatusCode;
            if (code is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location)
            {
                url = new Uri(url, location);
                response.Dispose();
                continue;
            }
            return response;
        }
        throw new HubException($"too many redirects from {url}");
    }

    private static string? Header(HttpResponseHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    /// <summary>A 64-hex SHA-256 from an LFS oid or an ETag (<c>"…"</c>, <c>W/"…"</c>, <c>sha256:…</c>), lower-case; else null.</summary>
    public static string? NormalizeSha(string? value)
    {
        if (value is null) return null;
        var v = value.Trim();
        if (v.StartsWith("W/", StringComparison.Ordinal)) v = v[2..];
        v = v.Trim('"');
        if (v.StartsWith("sha256:", StringComparison.OrdinalIgnoreCase)) v = v[7..];
        return v.Length == 64 && v.All(Uri.IsHexDigit) ? v.ToLowerInvariant() : null;
    }

    private HubException StatusError(HttpStatusCode status, string what, string repo)
    {
        int code = (int)status;
        string page = new Uri(_endpoint, Escape(repo)).ToString();
        string message = status switch
        {
            HttpStatusCode.Unauthorized when Options.Token is not null =>
                $"{what}: the Hub refused the token in HF_TOKEN (401 Unauthorized); check that it is valid and has access to {page}",
            HttpStatusCode.Unauthorized =>
                $"{what}: the Hub needs a token (401 Unauthorized): the repository is gated or private, or does not exist; " +
                "set HF_TOKEN to a Hugging Face access token (https://huggingface.co/settings/tokens)",
            HttpStatusCode.Forbidden =>
                $"{what}: access denied (403 Forbidden): the repository is gated; accept its terms at {page} and set HF_TOKEN to a token of that account",
            HttpStatusCode.NotFound => $"{what}: not found on the Hub (404); check the name",
            HttpStatusCode.TooManyRequests => $"{what}: the Hub is rate-limiting requests (429); wait a little and try again" +
                                              (Options.Token is null ? ", or set HF_TOKEN" : ""),
            _ when code >= 500 => $"{what}: the Hub answered {code} {status}; try again later",
            _ => $"{what}: the Hub answered {code} {status}",
        };
        return new HubException(message, status);
    }

    private static bool Unreachable(Exception e, CancellationToken ct) =>
        e is HttpRequestException { StatusCode: null } || (e is TaskCanceledException or OperationCanceledException && !ct.IsCancellationRequested);

    private HubException Offline(Exception e)
    {
        string reason = e is OperationCanceledException ? "timed out" : e.InnerException?.Message ?? e.Message;
        return new HubException($"cannot reach the Hub at {_endpoint.ToString().TrimEnd('/')} ({reason}); check the network (or HF_ENDPOINT), " +
                                "or pass a local file path instead", null, e);
    }
}
