namespace Kaiyuan.Kernels;

/// <summary>How rotary pairs are formed: adjacent values (llama.cpp's "normal") or halves of the rotated span ("NeoX").</summary>
internal enum RopeStyle { Normal, NeoX }

/// <summary>
/// Rotary position embedding as ggml computes it, YaRN included: θ starts at the position and is multiplied by
/// base^(-2/n_dims) per pair in float, the way ggml's rope cache does, so angles match llama.cpp's bit for bit.
/// </summary>
internal sealed class Rope
{
    private readonly int _dims;
    private readonly RopeStyle _style;
    private readonly float _thetaScale;
    private readonly float _freqScale;
    private readonly float _extFactor;
    private readonly float _attnFactor;
    private readonly float _corrLow, _corrHigh;
    private readonly float[]? _freqFactors;

    public Rope(RopeConfig c)
    {
        Config = c;
        _dims = c.Dimensions;
        _style = c.Style;
        _thetaScale = MathF.Pow(c.FreqBase, -2f / c.Dimensions);
        _freqScale = c.FreqScale;
        _extFactor = c.ExtFactor;
        _attnFactor = c.AttnFactor;
        _freqFactors = c.FreqFactors;
        // YaRN correction range: the dimensions whose wavelength sits between beta_fast and beta_slow rotations.
        float CorrDim(float rotations) => c.Dimensions * MathF.Log(c.OriginalContext / (rotations * 2 * MathF.PI)) / (2 * MathF.Log(c.FreqBase));
        _corrLow = MathF.Max(0, MathF.Floor(CorrDim(c.BetaFast)));
        _corrHigh = MathF.Min(c.Dimensions - 1, MathF.Ceiling(CorrDim(c.BetaSlow)));
    }

    public int Dimensions => _dims;
    public RopeConfig Config { get; }

    /// <summary>Fills cos/sin (length dims/2) for a position.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        float theta = position;
        for (int i = 0; i < _dims / 2; i++)
        {
            float extrapolated = _freqFactors is null ? theta : theta / _freqFactors[i];
            float interpolated = _freqScale * extrapolated;
            float angle = interpolated;
            float mscale = _attnFactor;
            if (_extFactor != 0)
            {
                float ramp = RampMix(2 * i) * _extFactor;
                angle = interpolated * (1 - ramp) + extrapolated * ramp;
                mscale *= 1f + 0.1f * MathF.Log(1f / _freqScale);
            }
            cos[i] = MathF.Cos(angle) * mscale;
            sin[i] = MathF.Sin(angle) * mscale;
            theta *= _thetaScale;
        }
    }

    private float RampMix(int i0)
    {
        float y = (i0 / 2 - _corrLow) / MathF.Max(0.001f, _corrHigh - _corrLow);
        return 1 - MathF.Min(1, MathF.Max(0, y));
    }

    /// <summary>Rotates the first <see cref="Dimensions"/> values of each head of <paramref name="x"/> in place.</summary>
    public void Apply(Span<float> x, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = _dims / 2;
        for (int h = 0; h + headDim <= x.Length; h += headDim)
        {
            var head = x.Slice(h, headDim);
            for (int i = 0; i < half; i++)
            {
                int a = _style == RopeStyle.Normal ? 2 * i : i;
                int b = _style == RopeStyle.Normal ? 2 * i + 1 : i + half;
                float x0 = head[a], x1 = head[b];
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// <summary>Rotary embedding parameters as a model's metadata gives them.</summary>
internal sealed record RopeConfig
{
    public required int Dimensions { get; init; }
    public required RopeStyle Style { get; init; }
    public float FreqBase { get; init; } = 10000f;
    /// <summary>1 / scaling factor for linear and YaRN scaling.</summary>
    public float FreqScale { get; init; } = 1f;
    /// <summary>YaRN extrapolation mix; 0 disables YaRN.</summary>
    public float ExtFactor { get; init; }
    public float AttnFactor { get; init; } = 1f;
    public float BetaFast { get; init; } = 32f;
    public float BetaSlow { get; init; } = 1f;
    public float OriginalContext { get; init; } = 4096f;
    /// <summary>Per-pair frequency divisors (Llama 3's rope_freqs tensor), or null.</summary>
    public float[]? FreqFactors { get; init; }
}
