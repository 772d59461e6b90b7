namespace Kaiyuan.Tensors;

/// <summary>
/// ggml's scale searches for the K-quant reference quantizers (make_qx_quants, make_q3_quants, make_qkx2_quants).
/// Arithmetic is written in ggml's evaluation order, one rounding per C operator, so the chosen levels match bit for bit.
/// </summary>
internal static class ScaleSearch
{
    /// <summary>Groups whose largest magnitude is below this are stored as all-zero (GROUP_MAX_EPS).</summary>
    public const float GroupMaxEpsilon = 1e-15f;

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

    /// <summary>
    /// The first fit both symmetric searches start from: levels at the scale -nmax/max (max = the value of largest
    /// magnitude), stored plus <paramref name="levelBias"/>, with their x²-weighted sums Σw·x·l and Σw·l². False (levels
    /// cleared) for a group too close to zero to fit.
    /// </summary>
    private static bool InitialSymmetricFit(ReadOnlySpan<float> x, int nmax, Span<sbyte> levels, int levelBias, out float max, out float sumlx, out float suml2)
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
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        return true;
    }

    /// <summary>
    /// Symmetric levels in [-nmax, nmax) stored biased by nmax, weighted by x^2 (rmse_type 1 without an importance
    /// matrix): tries the scale nmax/max and 18 nearby ones, keeping the best weighted least-squares fit.
    /// </summary>
    public static float SymmetricWeightedBySquares(ReadOnlySpan<float> x, int nmax, Span<sbyte> levels)
    {
        if (!InitialSymmetricFit(x, nmax, levels, levelBias: nmax, out float max, out float sumlx, out float suml2)) return 0f;

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
                float w = x[i] * x[i];
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
        if (!InitialSymmetricFit(x, nmax, levels, levelBias: 0, out _, out float sumlx, out float suml2)) return 0f;

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
    /// squared). Returns the scale; <paramref name="negatedMin"/> receives -min.
    /// </summary>
    public static float AsymmetricWithMin(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int nmax, Span<byte> levels,
        Span<byte> scratch, out float negatedMin, float rmin, float rdelta, int nstep, bool useAbsoluteError)
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
                int l = Math.Max(0, Math.Min(nmax, Rounding.NearestInt(iscale * (x[i] - min))));
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
}
