namespace Kaiyuan.Tensors;

/// <summary>
/// ggml's scale searches for the K-quant and legacy quantizers (make_qx_quants, make_q3_quants, make_qkx2_quants and,
/// for the importance-matrix paths, make_qkx3_quants and make_qp_quants). Arithmetic is written in ggml's evaluation order, one rounding per C operator, so the chosen levels match bit for bit.
/// </summary>
internal static class ScaleSearch
{
    /// <summary>Groups whose largest magnitude is below this are stored as all-zero (GROUP_MAX_EPS).</summary>
    public const float GroupMaxEpsilon = 1e-15f;

    /// <summary>Σ x², summed in order, for the importance paths' sigma2 (over the row for the legacy types, the super-block for K-quants).</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            sum += x[i] * x[i];
        }

        return sum;
    }

    /// <summary>
    /// The element weights of ggml's quantizers: qw·sqrt(sigma2 + x²) with an importance (the importance scaled so that
    /// small values still count), x² without one.
    /// </summary>
    public static void ElementWeights(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, float sigma2, Span<float> weights)
    {
        for (int l = 0; l < x.Length; l++)
        {
            weights[l] = qw.IsEmpty ? x[l] * x[l] : qw[l] * MathF.Sqrt(sigma2 + x[l] * x[l]);
        }
    }

    /// <summary>
    /// The importance paths' <see cref="ElementWeights"/>; returns their sum, which weights the group when its scale is
    /// itself quantized.
    /// </summary>
    public static float ImportanceWeights(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, float sigma2, Span<float> weights)
    {
        ElementWeights(x, qw, sigma2, weights);
        float sum = 0;
        for (int l = 0; l < x.Length; l++)
        {
            sum += weights[l];
        }

        return sum;
    }

    /// <summary>The value of largest magnitude, with its sign (the first one on ties); its magnitude in <paramref name="amax"/>.</summary>
    private static float SignedMaxAbs(ReadOnlySpan<float> x, out float amax)
    {
        float max = 0;
        amax = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        return max;
    }

    /// <summary>The weight of element <paramref name="i"/>: the importance-derived one when given, else x² (rmse_type 1).</summary>
    private static float WeightOf(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int i) => weights.IsEmpty ? x[i] * x[i] : weights[i];

    /// <summary>
    /// The first fit both symmetric searches start from: levels at the scale -nmax/max (max = the value of largest
    /// magnitude), stored plus <paramref name="levelBias"/>, with their weighted sums Σw·x·l and Σw·l² (w = x² when
    /// <paramref name="weights"/> is empty). False (levels cleared) for a group too close to zero to fit.
    /// </summary>
    private static bool InitialSymmetricFit(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<sbyte> levels, int levelBias,
        out float max, out float sumlx, out float suml2)
    {
        max = SignedMaxAbs(x, out float amax);
        sumlx = suml2 = 0;
        if (amax < GroupMaxEpsilon)
        {
            levels[..x.Length].Clear();
            return false;
        }

        float iscale = -nmax / max;
        for (int i = 0; i < x.Length; i++)
        {
            int l = Math.Clamp(Rounding.NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)(l + levelBias);
            float w = WeightOf(x, weights, i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        return true;
    }

    /// <summary>
    /// Symmetric levels in [-nmax, nmax) stored biased by nmax (make_qx_quants, rmse_type 1): tries the scale nmax/max
    /// and 18 nearby ones, keeping the best weighted least-squares fit. <paramref name="weights"/> are the per-element
    /// weights an importance matrix gives (quant_weights); empty weights each value by x², as without one.
    /// </summary>
    public static float SymmetricWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<sbyte> levels)
    {
        if (!InitialSymmetricFit(x, weights, nmax, levels, levelBias: nmax, out float max, out float sumlx, out float suml2)) return 0f;

        float iscale;
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }

            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < x.Length; i++)
            {
                int l = Math.Clamp(Rounding.NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = WeightOf(x, weights, i);
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }

            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < x.Length; i++)
                {
                    levels[i] = (sbyte)(nmax + Math.Clamp(Rounding.NearestInt(iscale * x[i]), -nmax, nmax - 1));
                }

                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }

        return scale;
    }

    /// <summary>
    /// Q3_K's search (make_q3_quants with do_rmse): start from nmax/max, then up to 5 passes moving single levels
    /// while the x^2-weighted fit improves. Levels come back biased by nmax.
    /// </summary>
    public static float SymmetricIterative(ReadOnlySpan<float> x, int nmax, Span<sbyte> levels)
    {
        if (!InitialSymmetricFit(x, default, nmax, levels, levelBias: 0, out _, out float sumlx, out float suml2)) return 0f;

        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < x.Length; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * levels[i] * levels[i];
                    int newLevel = Math.Clamp(Rounding.NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newLevel != levels[i])
                    {
                        slx += w * x[i] * newLevel;
                        sl2 += w * newLevel * newLevel;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)newLevel;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }

            if (changed == 0)
            {
                break;
            }
        }

        for (int i = 0; i < x.Length; i++)
        {
            levels[i] = (sbyte)(levels[i] + nmax);
        }

        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }

    /// <summary>
    /// Asymmetric levels in [0, nmax] with a min (make_qkx2_quants): fit x ~ scale * l + min (min &lt;= 0) by weighted
    /// least squares over nstep + 1 candidate scales, keeping the one with the least weighted error (absolute or
    /// squared). Returns the scale; <paramref name="negatedMin"/> receives -min. <paramref name="boundedLevels"/> selects
    /// make_qkx3_quants (the importance-matrix paths), which is the same search except that a candidate's level is
    /// rounded from iscale·(x - min) after bounding it to (0, nmax]: the same levels for every in-range value, but
    /// defined when a fitted min near max makes that product huge or not a number.
    /// </summary>
    public static float AsymmetricWithMin(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<byte> levels,
        Span<byte> scratch, out float negatedMin, float rmin, float rdelta, int nstep, bool useAbsoluteError, bool boundedLevels = false)
    {
        int n = x.Length;
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min)
            {
                min = x[i];
            }

            if (x[i] > max)
            {
                max = x[i];
            }

            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }

        if (min > 0)
        {
            min = 0;
        }

        if (max == min)
        {
            levels[..n].Clear();
            negatedMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Rounding.NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * levels[i] + min - x[i];
            diff = useAbsoluteError ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }

        if (nstep < 1)
        {
            negatedMin = -min;
            return scale;
        }

        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l;
                if (boundedLevels)
                {
                    float v = iscale * (x[i] - min);
                    l = v > 0 ? Rounding.NearestInt(MathF.Min(v, nmax)) : 0;
                }
                else
                {
                    l = Math.Max(0, Math.Min(nmax, Rounding.NearestInt(iscale * (x[i] - min))));
                }

                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }

            float determinant = sumW * sumL2 - sumL * sumL;
            if (determinant > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / determinant;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / determinant;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }

                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * scratch[i] + thisMin - x[i];
                    diff = useAbsoluteError ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }

                if (error < bestError)
                {
                    scratch[..n].CopyTo(levels);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }

        negatedMin = -min;
        return scale;
    }

    /// <summary>
    /// Non-negative levels in [0, nmax] for non-negative values (make_qp_quants), which the importance-matrix K-quants use
    /// to quantize their group scales and mins against the super-block scale, each group weighted by its summed element
    /// weights: the best of nine scales near nmax/max by weighted squared error, then up to 5 passes moving single levels
    /// while the weighted least-squares fit improves. Returns that fit's scale.
    /// </summary>
    /// <remarks>
    /// Levels are stored as bytes, as ggml's uint8_t: a negative value (a negative scale, which the searches can in
    /// principle return) wraps there, and the stored, wrapped level is what later steps read back.
    /// </remarks>
    public static float NonNegativeWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<byte> levels)
    {
        int n = x.Length;
        float max = 0;
        for (int i = 0; i < n; i++)
        {
            max = max > x[i] ? max : x[i];
        }

        if (max < GroupMaxEpsilon)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = nmax / max;
        for (int i = 0; i < n; i++)
        {
            levels[i] = (byte)Rounding.NearestInt(iscale * x[i]);
        }

        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = x[i] - scale * levels[i];
            bestError += weights[i] * diff * diff;
        }

        for (int step = -4; step <= 4; step++)
        {
            if (step == 0)
            {
                continue;
            }

            float stepIscale = (0.1f * step + nmax) / max;
            float stepScale = 1 / stepIscale;
            float error = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, Rounding.NearestInt(stepIscale * x[i]));
                float diff = x[i] - stepScale * l;
                error += weights[i] * diff * diff;
            }

            if (error < bestError)
            {
                bestError = error;
                iscale = stepIscale;
            }
        }

        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, Rounding.NearestInt(iscale * x[i]));
            levels[i] = (byte)l;
            float w = weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = weights[i];
                float slx = sumlx - w * x[i] * levels[i];
                float sl2 = suml2 - w * levels[i] * levels[i];
                if (slx > 0 && sl2 > 0)
                {
                    int newLevel = Math.Min(nmax, Rounding.NearestInt(x[i] * sl2 / slx));
                    if (newLevel != levels[i])
                    {
                        slx += w * x[i] * newLevel;
                        sl2 += w * newLevel * newLevel;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (byte)newLevel;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }

            if (changed == 0)
            {
                break;
            }
        }

        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
}
