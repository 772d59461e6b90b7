namespace Kaiyuan.AspNetCore;

/// <summary>
/// The models a server serves and which of them are loaded: loads on demand (requests for a model that is loading wait
/// for it), unloads the least recently used idle model beyond <see cref="ServerOptions.MaxModels"/> or the memory budget,
/// and unloads idle models whose keep-alive has run out. A model with requests in flight is never unloaded.
/// </summary>
internal sealed class ModelRegistry : IDisposable
{
    private readonly object _gate = new();
    private readonly Func<ServedModel, ModelRuntime> _load;
    private readonly Slot[] _slots;
    private readonly Timer _expiry;
    private readonly CancellationTokenSource _closing = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _startup;

    public ModelRegistry(ServerOptions options, Func<ServedModel, ModelRuntime> load)
    {
        Options = options;
        _load = load;
        var models = options.Models.Count > 0 ? options.Models : [ServedModel.ForFile(options.ModelPath, options.Alias)];
        foreach (var twin in models.GroupBy(m => m.Name, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
            throw new ArgumentException($"two models are named '{twin.Key}' ({string.Join(", ", twin.Select(m => m.Path))}); serve one of them");
        _slots = models.Select(m => new Slot(m)).ToArray();
        DefaultKeepAlive = options.KeepAlive ?? (_slots.Length == 1 ? KeepAlive.Forever : KeepAlive.Default);
        _expiry = new Timer(_ => Expire(), null, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250));
    }

    public ServerOptions Options { get; }
    /// <summary>Every servable model; the first is the default (an empty "model" picks it).</summary>
    public IReadOnlyList<ServedModel> Models => _slots.Select(s => s.Model).ToArray();
    public bool Several => _slots.Length > 1;
    /// <summary>How long a model stays loaded after its last request when the request does not say (Ollama's keep_alive).</summary>
    public TimeSpan DefaultKeepAlive { get; }
    /// <summary>Why the startup load failed (one model only: the server then answers 503 until restarted, as before).</summary>
    public string? StartupError { get; private set; }
    /// <summary>Whether requests can be served: the startup load (one model) is done; with several, at once.</summary>
    public bool Ready => StartupError is null && (_startup is null || _startup.IsCompletedSuccessfully);

    /// <summary>A loaded model as /api/ps reports it.</summary>
    public sealed record Loaded(ServedModel Model, ModelRuntime Runtime, long Bytes, DateTimeOffset? ExpiresAt);

    public IReadOnlyList<Loaded> LoadedModels()
    {
        lock (_gate)
            return _slots.Where(s => s.Runtime is not null).OrderByDescending(s => s.LastUsed)
                .Select(s => new Loaded(s.Model, s.Runtime!, s.Bytes, s.ExpiresAt)).ToArray();
    }

    /// <summary>The default model when it is loaded, else the most recently used loaded one (metrics, the CLI's banner).</summary>
    public ModelRuntime? AnyLoaded()
    {
        lock (_gate) return _slots[0].Runtime ?? _slots.Where(s => s.Runtime is not null).MaxBy(s => s.LastUsed)?.Runtime;
    }

    /// <summary>The default model's runtime when it is loaded.</summary>
    public ModelRuntime? DefaultRuntime => _slots[0].Runtime;

    /// <summary>What a model's file says about it (from its runtime once loaded, else its GGUF header) and the memory it takes loaded.</summary>
    public (ModelDescription Description, long Bytes) Describe(ServedModel model)
    {
        var slot = SlotOf(model);
        lock (_gate)
            if (slot.Description is { } known) return (known, slot.Bytes);
        (ModelDescription, long) inspected;
        try
        {
            inspected = ModelRuntime.Inspect(model.Path, Options);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or Gguf.GgufFormatException or Gguf.GgufMetadataException)
        {
            // A file that cannot be read says nothing; loading it reports why.
            return (new ModelDescription("unknown", "unknown", 0, 0, 0, 0, null, new Dictionary<string, object>()), 0);
        }
        lock (_gate)
        {
            slot.Description ??= inspected.Item1;
            if (slot.Bytes == 0) slot.Bytes = inspected.Item2;
        }
        return inspected;
    }

    /// <summary>
    /// The model a request names: the only one whatever the name (when the name is empty); with several, the default for
    /// an empty name and 404 for an unknown one.
    /// </summary>
    public ServedModel Find(string? requested, string param = "model")
    {
        if (string.IsNullOrEmpty(requested)) return _slots[0].Model;
        foreach (var slot in _slots)
            if (slot.Model.Matches(requested)) return slot.Model;
        string served = Several ? "this server serves " + string.Join(", ", _slots.Select(s => $"'{s.Model.Name}'")) : $"this server serves '{_slots[0].Model.Name}'";
        throw new RequestException(404, $"the model '{requested}' does not exist; {served}", param, "model_not_found");
    }

    /// <summary>Loads the default model now (one model: as the server starts); requests get 503 until it is ready.</summary>
    public Task LoadAtStartup()
    {
        var slot = _slots[0];
        Task<ModelRuntime> loading;
        lock (_gate)
        {
            slot.InFlight++;
            loading = slot.Loading = StartLoad(slot);
        }
        return _startup = Finish(loading);

        async Task Finish(Task<ModelRuntime> loading)
        {
            try
            {
                await loading.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                StartupError = e.Message;
                throw;
            }
            finally
            {
                Release(slot, null);
            }
        }
    }

    /// <summary>
    /// A loaded model for one request, loading it when needed; dispose the lease when the request is done (it then stays
    /// loaded for <paramref name="keepAlive"/>, or <see cref="DefaultKeepAlive"/>).
    /// </summary>
    public async Task<Lease> AcquireAsync(ServedModel model, TimeSpan? keepAlive, CancellationToken cancel)
    {
        if (StartupError is { } error) throw new RequestException(503, $"the model failed to load: {error}", code: "model_loading");
        if (_startup is { IsCompleted: false }) throw new RequestException(503, "the model is still loading", code: "model_loading");
        var slot = SlotOf(model);
        Task<ModelRuntime> loading;
        lock (_gate)
        {
            slot.InFlight++;
            loading = slot.Runtime is { } loaded ? Task.FromResult(loaded) : slot.Loading ??= StartLoad(slot);
        }
        try
        {
            return new Lease(this, slot, await loading.WaitAsync(cancel).ConfigureAwait(false), keepAlive);
        }
        catch (Exception e)
        {
            Release(slot, null);
            if (e is RequestException or OperationCanceledException) throw;
            throw new RequestException(500, $"cannot load the model '{model.Name}': {e.Message}", code: "model_load_failed");
        }
    }

    private Task<ModelRuntime> StartLoad(Slot slot) => Task.Run(() => Load(slot), CancellationToken.None);

    private async Task<ModelRuntime> Load(Slot slot)
    {
        var (_, bytes) = Describe(slot.Model);
        try
        {
            await MakeRoom(slot, bytes).ConfigureAwait(false);
            var runtime = _load(slot.Model);
            lock (_gate)
            {
                slot.Runtime = runtime;
                slot.Description = runtime.Description;
                slot.Loading = null;
                slot.LastUsed = DateTimeOffset.UtcNow;
            }
            Pulse();
            return runtime;
        }
        catch
        {
            lock (_gate) slot.Loading = null;
            Pulse();
            throw;
        }
    }

    /// <summary>
    /// Unloads least recently used idle models until one more of <paramref name="bytes"/> fits in the model count and
    /// memory budget; waits while the other models are busy; 503 when it cannot fit beside the busy ones.
    /// </summary>
    private async Task MakeRoom(Slot target, long bytes)
    {
        long budget = MemoryBudget();
        while (true)
        {
            var unload = new List<ModelRuntime>();
            bool room;
            Task changed;
            lock (_gate)
            {
                var others = _slots.Where(s => s != target && (s.Runtime is not null || s.Loading is not null)).ToList();
                long busy = others.Where(s => s.InFlight > 0 || s.Runtime is null).Sum(s => s.Bytes);
                if (busy + bytes > budget)
                {
                    throw new RequestException(503, $"not enough memory to load '{target.Model.Name}': it needs about {MiB(bytes)} MiB (weights and KV cache); " +
                        $"{MiB(Math.Max(0, budget - busy))} MiB of the {MiB(budget)} MiB budget is free{(busy > 0 ? " while the models in use stay loaded" : "")}", code: "insufficient_memory");
                }
                var idle = new Queue<Slot>(others.Where(s => s.InFlight == 0 && s.Runtime is not null).OrderBy(s => s.LastUsed));
                long held = others.Sum(s => s.Bytes);
                int count = others.Count;
                bool Fits() => held + bytes <= budget && (Options.MaxModels <= 0 || count < Options.MaxModels);
                while (!Fits() && idle.TryDequeue(out var victim))
                {
                    unload.Add(Unload(victim));
                    held -= victim.Bytes;
                    count--;
                }
                room = Fits();
                changed = _changed.Task;
            }
            foreach (var runtime in unload) Free(runtime);
            if (room) return;
            // Every other model is busy: wait for one to go idle.
            await changed.WaitAsync(_closing.Token).ConfigureAwait(false);
        }
    }

    /// <summary>The budget, else the memory this process may use; one model alone is not checked (as before: its weights are mapped, its KV cache grows as used).</summary>
    private long MemoryBudget() => Options.MemoryBudgetBytes ?? (Several ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : long.MaxValue);

    private static long MiB(long bytes) => (bytes + (1 << 20) - 1) >> 20;

    /// <summary>Ends a request's hold on a model; sets when the model expires; unloads it now for a keep-alive of 0.</summary>
    private void Release(Slot slot, TimeSpan? keepAlive)
    {
        ModelRuntime? unload = null;
        lock (_gate)
        {
            slot.InFlight--;
            slot.LastUsed = DateTimeOffset.UtcNow;
            // As Ollama: each request sets how long the model stays after it (its keep_alive, else the server's).
            var alive = keepAlive ?? DefaultKeepAlive;
            slot.ExpiresAt = alive == KeepAlive.Forever ? null : slot.LastUsed + alive;
            if (slot.InFlight == 0 && slot.Runtime is not null && alive == TimeSpan.Zero) unload = Unload(slot);
        }
        if (unload is not null) Free(unload);
        Pulse();
    }

    private void Expire()
    {
        var unload = new List<ModelRuntime>();
        lock (_gate)
        {
            var now = DateTimeOffset.UtcNow;
            foreach (var slot in _slots)
                if (slot.Runtime is not null && slot.InFlight == 0 && slot.ExpiresAt is { } at && at <= now) unload.Add(Unload(slot));
        }
        foreach (var runtime in unload) Free(runtime);
        if (unload.Count > 0) Pulse();
    }

    /// <summary>Takes a slot's runtime away (under the lock); <see cref="Free"/> disposes it outside.</summary>
    private static ModelRuntime Unload(Slot slot)
    {
        var runtime = slot.Runtime!;
        slot.Runtime = null;
        slot.ExpiresAt = null;
        return runtime;
    }

    private static void Free(ModelRuntime runtime)
    {
        // Idle: nothing is running, so the scheduler stops at once; the weights' mapping and the KV pool go with it.
        runtime.Dispose();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    private void Pulse()
    {
        TaskCompletionSource old;
        lock (_gate)
        {
            old = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        old.TrySetResult();
    }

    /// <summary>Stops taking work on every loaded model (the server is stopping).</summary>
    public void Drain()
    {
        foreach (var loaded in LoadedModels()) _ = loaded.Runtime.DrainAsync(CancellationToken.None);
    }

    public void Dispose()
    {
        _expiry.Dispose();
        _closing.Cancel();
        Task?[] loading;
        lock (_gate) loading = [.. _slots.Select(s => (Task?)s.Loading), _startup];
        foreach (var task in loading.OfType<Task>())
        {
            try
            {
                task.Wait();
            }
            catch (AggregateException)
            {
                // Reported to whoever waited for it.
            }
        }
        List<ModelRuntime> runtimes;
        lock (_gate) runtimes = _slots.Where(s => s.Runtime is not null).Select(Unload).ToList();
        foreach (var runtime in runtimes) runtime.Dispose();
        _closing.Dispose();
    }

    private Slot SlotOf(ServedModel model) => _slots.First(s => s.Model == model);

    internal sealed class Slot(ServedModel model)
    {
        public ServedModel Model { get; } = model;
        public ModelRuntime? Runtime { get; set; }
        public Task<ModelRuntime>? Loading { get; set; }
        public ModelDescription? Description { get; set; }
        public long Bytes { get; set; }
        /// <summary>Requests holding the model, and those waiting for it to load.</summary>
        public int InFlight { get; set; }
        public DateTimeOffset LastUsed { get; set; }
        /// <summary>When an idle model is unloaded; null: never.</summary>
        public DateTimeOffset? ExpiresAt { get; set; }
    }

    /// <summary>One request's hold on a loaded model.</summary>
    public sealed class Lease : IDisposable
    {
        private readonly ModelRegistry _registry;
        private readonly Slot _slot;
        private readonly TimeSpan? _keepAlive;
        private int _released;

        internal Lease(ModelRegistry registry, Slot slot, ModelRuntime runtime, TimeSpan? keepAlive)
        {
            _registry = registry;
            _slot = slot;
            Runtime = runtime;
            _keepAlive = keepAlive;
        }

        public ModelRuntime Runtime { get; }
        public ServedModel Model => _slot.Model;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) _registry.Release(_slot, _keepAlive);
        }
    }
}
