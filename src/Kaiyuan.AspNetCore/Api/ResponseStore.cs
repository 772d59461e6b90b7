namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// A response the Responses API kept (<c>store</c>, the default): the response object as sent, and the conversation it
/// answered, so that <c>previous_response_id</c> can continue it. Held as JSON text: immutable, and its size is known.
/// </summary>
/// <param name="Id">The response's id (<c>resp_…</c>).</param>
/// <param name="Json">The response object.</param>
/// <param name="Context">A JSON array of the input items the model read: the conversation before this request (earlier
/// inputs and outputs) followed by this request's own input; the instructions are not among them.</param>
/// <param name="InputCount">How many items at the end of <paramref name="Context"/> are this request's own input.</param>
internal sealed record StoredResponse(string Id, string Json, string Context, int InputCount)
{
    /// <summary>About what it holds in memory (UTF-16 text).</summary>
    public long Bytes => 2L * (Id.Length + Json.Length + Context.Length) + 128;
}

/// <summary>
/// The stored responses, in memory, least recently used first out: at most <see cref="MaxCount"/> of them and
/// <see cref="MaxBytes"/> of text. A response larger than the whole budget is not kept. Lost when the server stops.
/// </summary>
internal sealed class ResponseStore(int maxCount = 1000, long maxBytes = 64L << 20)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<StoredResponse> _order = new();
    private readonly Dictionary<string, LinkedListNode<StoredResponse>> _byId = new(StringComparer.Ordinal);
    private long _bytes;

    public int MaxCount { get; } = maxCount;
    public long MaxBytes { get; } = maxBytes;

    public int Count
    {
        get { lock (_lock) return _byId.Count; }
    }

    public long Bytes
    {
        get { lock (_lock) return _bytes; }
    }

    /// <summary>Keeps <paramref name="response"/>, evicting the least recently used ones over the bounds.</summary>
    public bool Add(StoredResponse response)
    {
        if (response.Bytes > MaxBytes || MaxCount <= 0) return false;
        lock (_lock)
        {
            RemoveLocked(response.Id);
            _byId[response.Id] = _order.AddFirst(response);
            _bytes += response.Bytes;
            while (_byId.Count > MaxCount || _bytes > MaxBytes) RemoveLocked(_order.Last!.Value.Id);
        }
        return true;
    }

    /// <summary>The stored response (now the most recently used), or null.</summary>
    public StoredResponse? Get(string id)
    {
        lock (_lock)
        {
            if (!_byId.TryGetValue(id, out var node)) return null;
            _order.Remove(node);
            _order.AddFirst(node);
            return node.Value;
        }
    }

    public bool Remove(string id)
    {
        lock (_lock) return RemoveLocked(id);
    }

    private bool RemoveLocked(string id)
    {
        if (!_byId.Remove(id, out var node)) return false;
        _order.Remove(node);
        _bytes -= node.Value.Bytes;
        return true;
    }
}
