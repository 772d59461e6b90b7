namespace Kaiyuan.Kernels;

/// <summary>Sees the input rows of every weight multiply (see <see cref="ActivationTap"/>).</summary>
internal interface IActivationObserver
{
    /// <summary><paramref name="tokens"/> input rows of <paramref name="weight"/>'s columns, before they are multiplied.</summary>
    void Observe(in QuantMatrix weight, ReadOnlySpan<float> x, int tokens);
}

/// <summary>
/// Where the importance-matrix collector (<c>kaiyuan imatrix</c>) listens to the activations entering each weight
/// matrix. Per thread: a forward pass calls every multiply from the thread that runs it, so a collection sees its own
/// model's activations and no other's; null in every other run, where it costs one test per matrix multiply.
/// </summary>
internal static class ActivationTap
{
    [ThreadStatic]
    private static IActivationObserver? t_observer;

    public static IActivationObserver? Observer
    {
        get => t_observer;
        set => t_observer = value;
    }
}
