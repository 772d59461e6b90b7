using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Scheduling;

/// <summary>
/// A long prompt's prefill on a thread of its own, beside running streams: the pool's threads are split in two, the
/// streams decode on one part while chunks of the prompt run on the other. Deep in a long prompt one token's attention
/// costs more than a whole decode step (it reads every cached row), so even a one-token share of each step more than
/// doubled the streams' inter-token latency; on their own threads they slow only by the threads they give up.
/// </summary>
/// <remarks>
/// The two forward passes touch different sequences' KV blocks (the prompt's were reserved when it was admitted) and
/// separate workspaces; the scheduler thread alone changes block tables, the prefix cache and sequence state, and
/// applies a chunk only after <see cref="Done"/>.
/// </remarks>
internal sealed class SplitPrefill : IDisposable
{
    private readonly TransformerModel _model;
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly WorkerPool _prefillPool;
    private readonly bool[] _want;
    private readonly float[] _logits;
    private readonly float[]? _hidden;
    private readonly Thread _thread;
    private readonly SemaphoreSlim _start = new(0);
    private readonly ManualResetEventSlim _done = new(true);
    private volatile bool _stopping;
    private bool _endsPrompt;
    private Exception? _error;
    private readonly bool _background;

    private SplitPrefill(TransformerModel model, KvCache cache, int threads, int chunk, bool background, bool keepHidden)
    {
        _background = background;
        _model = model;
        int decodeThreads = threads / 2;
        DecodePool = new WorkerPool(decodeThreads);
        _prefillPool = new WorkerPool(threads - decodeThreads, background);
        _batch = new ForwardBatch(chunk);
        _ctx = new ForwardContext(_batch, cache, new Workspace(), _prefillPool);
        _want = new bool[chunk];
        _logits = new float[model.VocabSize];
        _hidden = keepHidden ? new float[chunk * model.Config.EmbeddingLength] : null;
        _thread = new Thread(Loop) { IsBackground = true, Name = "kaiyuan-prefill" };
        _thread.Start();
    }

    /// <summary>A split for a pool of <paramref name="threads"/>, or null where splitting cannot help (one thread) or cannot work (a hybrid model's recurrent state is stepped in order with the batch).</summary>
    /// <param name="background">Prefill in the OS's lowest scheduling class (<see cref="BackgroundThread"/>), so the streams' threads and their token hand-offs never wait behind it.</param>
    /// <param name="keepHidden">Keep every row's final hidden state (<see cref="Hidden"/>) for a multi-token-prediction drafter.</param>
    public static SplitPrefill? Create(TransformerModel model, KvCache cache, int threads, int chunk, bool background, bool keepHidden = false) =>
        threads >= 2 && cache.Recurrent is null ? new SplitPrefill(model, cache, threads, chunk, background, keepHidden) : null;

    /// <summary>The finished chunk's tokens, positions and slot.</summary>
    public ForwardBatch Batch => _batch;

    /// <summary>The finished chunk's final hidden states, a row per token (empty unless kept).</summary>
    public ReadOnlySpan<float> Hidden => _hidden is null ? default : _hidden.AsSpan(0, _batch.Count * _model.Config.EmbeddingLength);

    /// <summary>The threads the streams decode on while a chunk runs.</summary>
    public WorkerPool DecodePool { get; }

    /// <summary>Tokens a chunk holds at most.</summary>
    public int Capacity => _want.Length;

    /// <summary>Whether no chunk is running (one has finished, or none was started).</summary>
    public bool Done => _done.IsSet;

    /// <summary>The logits after the chunk's last token, when the chunk ended its prompt.</summary>
    public ReadOnlySpan<float> Logits => _logits;

    /// <summary>Starts tokens <paramref name="from"/>…<paramref name="from"/>+<paramref name="count"/>−1 of <paramref name="history"/> on <paramref name="slot"/>; logits are kept only for the history's last token.</summary>
    public void Start(int slot, List<int> history, int from, int count)
    {
        if (!Done) throw new InvalidOperationException("a prefill chunk is still running");
        if (count < 1 || count > Capacity) throw new ArgumentOutOfRangeException(nameof(count));
        _batch.Clear();
        for (int i = 0; i < count; i++)
        {
            int position = from + i;
            _want[i] = position == history.Count - 1;
            _batch.Add(history[position], position, slot);
        }
        _endsPrompt = from + count == history.Count;
        _error = null;
        _done.Reset();
        _start.Release();
    }

    /// <summary>Waits up to <paramref name="milliseconds"/> for the running chunk.</summary>
    public bool Wait(int milliseconds) => _done.Wait(milliseconds);

    /// <summary>The running chunk's failure, once it is done (null: it succeeded).</summary>
    public Exception? Error => Done ? _error : null;

    /// <summary>The prefill thread's Linux thread id, once it has started (for tests of its scheduling class).</summary>
    public int? LinuxThreadId { get; private set; }

    private void Loop()
    {
        if (_background) BackgroundThread.Lower();
        LinuxThreadId = BackgroundThread.CurrentLinuxThreadId();
        while (true)
        {
            _start.Wait();
            if (_stopping) return;
            try
            {
                _model.Forward(_ctx, _want.AsSpan(0, _batch.Count), _logits.AsSpan(0, _endsPrompt ? _model.VocabSize : 0),
                    _hidden is null ? default : _hidden.AsSpan(0, _batch.Count * _model.Config.EmbeddingLength));
            }
            catch (Exception e)
            {
                _error = e;
            }
            _done.Set();
        }
    }

    public void Dispose()
    {
        _done.Wait();
        _stopping = true;
        _start.Release();
        _thread.Join();
        DecodePool.Dispose();
        _prefillPool.Dispose();
        _start.Dispose();
        _done.Dispose();
    }
}
