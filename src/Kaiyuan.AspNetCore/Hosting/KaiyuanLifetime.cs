namespace Kaiyuan.AspNetCore.Hosting;

/// <summary>
/// Ties the models to the host's lifetime: the default model starts loading once the app has started (requests get 503
/// until it is ready), new work stops when the app is asked to stop (running streams finish while the server drains),
/// and the models are freed once the app has stopped (or when the container is disposed without stopping).
/// </summary>
internal sealed class KaiyuanLifetime(ServerState state, IHostApplicationLifetime lifetime, ILoggerFactory logs) : IHostedService, IDisposable
{
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _log = logs.CreateLogger("kaiyuan.server");
    private int _disposed;

    /// <summary>Completes when the default model is loaded (faults if that failed); with several models, once the app has started.</summary>
    public Task Ready => _ready.Task;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() => _ = LoadAsync());
        lifetime.ApplicationStopping.Register(state.Models.Drain);
        lifetime.ApplicationStopped.Register(Dispose);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task LoadAsync()
    {
        if (state.Models.Several)
        {
            _ready.TrySetResult();
            return;
        }
        try
        {
            await state.Models.LoadAtStartup().ConfigureAwait(false);
            _ready.TrySetResult();
        }
        catch (Exception e)
        {
            // Whoever awaits Ready reports the error (and /health tells it), so the log keeps it out of the way.
            _log.LogDebug("cannot load the model: {Message}", e.Message);
            _ready.TrySetException(e);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) state.Models.Dispose();
    }
}
