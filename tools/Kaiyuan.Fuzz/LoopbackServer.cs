using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kaiyuan.Fuzz;

/// <summary>A real Kaiyuan server on a free loopback port, every endpoint mapped, serving the fixture model aidreams260K as "m".</summary>
internal sealed class LoopbackServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private LoopbackServer(WebApplication app, HttpClient http)
    {
        _app = app;
        Http = http;
    }

    public HttpClient Http { get; }

    public static async Task<LoopbackServer> StartAsync(string fixtures, int parallel, int maxQueue = 64, long cacheRamMiB = -1)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddKaiyuan(o =>
        {
            o.ModelPath = Path.Combine(fixtures, "models/aidreams260K/aidreams260K-f32.gguf");
            o.Alias = "m";
            o.Parallel = parallel;
            o.MaxQueue = maxQueue;
            o.ContextSize = 256;
            o.Threads = 1;
            o.CacheRamMiB = cacheRamMiB;
        });
        var app = builder.Build();
        app.MapKaiyuanEndpoints();
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        // The model loads once the app has started; until then the endpoints answer 503.
        for (int i = 0; i < 600 && (await http.GetAsync("/health")).StatusCode != HttpStatusCode.OK; i++) await Task.Delay(50);
        return new LoopbackServer(app, http);
    }

    /// <summary>A gauge or counter from <c>/metrics</c> (the first sample whose name and labels start with <paramref name="series"/>).</summary>
    public async Task<double> MetricAsync(string series)
    {
        string text = await Http.GetStringAsync("/metrics");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series, StringComparison.Ordinal) && !l.StartsWith('#'));
        return line is null ? double.NaN : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
