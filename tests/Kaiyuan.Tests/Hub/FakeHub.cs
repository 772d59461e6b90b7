using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Kaiyuan.Tests.Hub;

/// <summary>
/// A stand-in for the Hugging Face Hub on 127.0.0.1 (a real HTTP server): <c>/api/models/OWNER/REPO/tree/main</c> lists
/// files with LFS oids; <c>/OWNER/REPO/resolve/main/FILE</c> answers 302 with <c>X-Linked-Etag</c>, <c>X-Linked-Size</c> and
/// <c>ETag</c> like the Hub, and the CDN location serves the bytes with <c>Accept-Ranges</c> and 206 Partial Content.
/// </summary>
internal sealed class FakeHub : IDisposable
{
    public sealed record FakeFile(string Path, byte[] Data)
    {
        public string Sha256 { get; } = Convert.ToHexStringLower(SHA256.HashData(Data));
        /// <summary>The SHA-256 the listing and headers advertise (a wrong one to test verification).</summary>
        public string? Advertised { get; init; }
    }

    public sealed class FakeRepo
    {
        public List<FakeFile> Files { get; } = [];
        /// <summary>When set, requests without this bearer token get 401 (a gated repository).</summary>
        public string? Token { get; init; }
        public bool Forbidden { get; init; }
    }

    private readonly HttpListener _listener;
    private readonly Task _loop;
    private int _cdnRequests;

    public Dictionary<string, FakeRepo> Repos { get; } = new(StringComparer.Ordinal);
    public string Endpoint { get; }
    /// <summary>When above zero, the first CDN response is cut (connection aborted) after this many bytes.</summary>
    public int CutFirstResponseAfter { get; set; }
    /// <summary>Delay between 4 KiB chunks of a CDN body, so concurrent pulls overlap.</summary>
    public TimeSpan ChunkDelay { get; set; }
    /// <summary>The Range header of each CDN request ("" when none).</summary>
    public ConcurrentQueue<string> Ranges { get; } = new();
    public ConcurrentQueue<string?> Authorizations { get; } = new();
    public int CdnRequests => Volatile.Read(ref _cdnRequests);

    public FakeHub()
    {
        (_listener, Endpoint) = LoopbackListener.Start();
        _loop = Task.Run(Loop);
    }

    public FakeRepo Add(string repo, params FakeFile[] files)
    {
        var r = new FakeRepo();
        r.Files.AddRange(files);
        Repos[repo] = r;
        return r;
    }

    private async Task Loop()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            _ = Task.Run(async () =>
            {
                try { await Handle(context); }
                catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException) { }
            });
        }
    }

    private async Task Handle(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var path = Uri.UnescapeDataString(request.Url!.AbsolutePath).TrimStart('/');
        var parts = path.Split('/');
        if (parts.Length >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "tree" && parts[5] == "main")
        {
            var repo = await FindAsync(Repos, parts[2] + "/" + parts[3], request, response);
            if (repo is null) return;
            var items = new List<object> { new { type = "file", oid = "0123456789abcdef0123456789abcdef01234567", size = 12, path = "README.md" } };
            items.AddRange(repo.Files.Select(f => new
            {
                type = "file",
                oid = "89abcdef0123456789abcdef0123456789abcdef",
                size = f.Data.Length,
                path = f.Path,
                lfs = new { oid = f.Advertised ?? f.Sha256, size = f.Data.Length, pointerSize = 134 },
            }));
            await Send(response, 200, JsonSerializer.Serialize(items), "application/json");
            return;
        }
        if (parts.Length >= 5 && parts[2] == "resolve" && parts[3] == "main")
        {
            Authorizations.Enqueue(request.Headers["Authorization"]);
            var repo = await FindAsync(Repos, parts[0] + "/" + parts[1], request, response);
            if (repo is null) return;
            var file = repo.Files.FirstOrDefault(f => f.Path == string.Join('/', parts[4..]));
            if (file is null)
            {
                response.AddHeader("X-Error-Code", "EntryNotFound");
                await Send(response, 404, "Entry not found", "text/plain");
                return;
            }
            string sha = file.Advertised ?? file.Sha256;
            response.AddHeader("X-Linked-Etag", $"\"{sha}\"");
            response.AddHeader("X-Linked-Size", file.Data.Length.ToString());
            response.AddHeader("ETag", "\"89abcdef0123456789abcdef0123456789abcdef\"");
            response.AddHeader("Location", $"/cdn/{parts[0]}/{parts[1]}/{file.Path}");
            await Send(response, 302, "", "text/plain");
            return;
        }
        if (parts.Length >= 4 && parts[0] == "cdn")
        {
            var file = Repos.GetValueOrDefault(parts[1] + "/" + parts[2])?.Files.FirstOrDefault(f => f.Path == string.Join('/', parts[3..]));
            if (file is null)
            {
                await Send(response, 404, "no such object", "text/plain");
                return;
            }
            await ServeBytes(request, response, file);
            return;
        }
        await Send(response, 404, "not found", "text/plain");
    }

    private static async Task<FakeRepo?> FindAsync(Dictionary<string, FakeRepo> repos, string name, HttpListenerRequest request, HttpListenerResponse response)
    {
        if (!repos.TryGetValue(name, out var repo))
        {
            response.AddHeader("X-Error-Code", "RepoNotFound");
            await Send(response, 404, "{\"error\":\"Repository not found\"}", "application/json");
            return null;
        }
        if (repo.Token is { } token && request.Headers["Authorization"] != "Bearer " + token)
        {
            response.AddHeader("X-Error-Code", "GatedRepo");
            await Send(response, 401, "{\"error\":\"Access to model is restricted\"}", "application/json");
            return null;
        }
        if (repo.Forbidden)
        {
            await Send(response, 403, "{\"error\":\"Forbidden\"}", "application/json");
            return null;
        }
        return repo;
    }

    private async Task ServeBytes(HttpListenerRequest request, HttpListenerResponse response, FakeFile file)
    {
        int first = Interlocked.Increment(ref _cdnRequests);
        string? range = request.Headers["Range"];
        Ranges.Enqueue(range ?? "");
        long start = 0;
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
            start = long.Parse(range[6..^1]);
        response.AddHeader("Accept-Ranges", "bytes");
        response.AddHeader("ETag", $"\"{file.Advertised ?? file.Sha256}\"");
        if (start >= file.Data.Length && start > 0)
        {
            response.AddHeader("Content-Range", $"bytes */{file.Data.Length}");
            await Send(response, 416, "", "text/plain");
            return;
        }
        if (start > 0)
        {
            response.StatusCode = 206;
            response.AddHeader("Content-Range", $"bytes {start}-{file.Data.Length - 1}/{file.Data.Length}");
        }
        else response.StatusCode = 200;
        response.ContentType = "application/octet-stream";
        response.ContentLength64 = file.Data.Length - start;
        var output = response.OutputStream;
        int cut = first == 1 && CutFirstResponseAfter > 0 ? CutFirstResponseAfter : int.MaxValue;
        for (long at = start; at < file.Data.Length;)
        {
            int n = (int)Math.Min(4096, file.Data.Length - at);
            if (at - start + n > cut) n = (int)(cut - (at - start));
            if (n > 0)
            {
                await output.WriteAsync(file.Data.AsMemory((int)at, n));
                at += n;
            }
            if (at - start >= cut)
            {
                await output.FlushAsync();
                // An abort resets the connection, and a reset discards what the client has not read yet: give it a
                // moment to read what was sent (the tests still accept a cut a little earlier than asked).
                await Task.Delay(100);
                response.Abort();
                return;
            }
            if (ChunkDelay > TimeSpan.Zero) await Task.Delay(ChunkDelay);
        }
        response.Close();
    }

    private static async Task Send(HttpListenerResponse response, int status, string body, string type)
    {
        response.StatusCode = status;
        response.ContentType = type;
        var bytes = Encoding.UTF8.GetBytes(body);
        response.ContentLength64 = bytes.Length;
        if (bytes.Length > 0) await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }

    public void Dispose()
    {
        // Close alone (it stops too): Stop then Close makes the managed listener remove its port twice, and the second
        // removal binds the port anew, which fails with "address already in use" while cut connections sit in TIME_WAIT.
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
    }
}
