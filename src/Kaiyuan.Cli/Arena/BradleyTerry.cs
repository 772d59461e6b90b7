namespace Kaiyuan.Cli.Arena;

/// <summary>One voted battle between two models: <see cref="ScoreA"/> is 1 when A won, 0 when B won, 0.5 for a tie (either kind).</summary>
internal readonly record struct Outcome(string ModelA, string ModelB, double ScoreA);

/// <summary>A model's line on the leaderboard.</summary>
/// <param name="Rating">Bradley–Terry rating: 400·log10 of the odds scale, anchored so the models' mean is 1000.</param>
/// <param name="Low">Lower bound of the 95% bootstrap interval.</param>
/// <param name="High">Upper bound of the 95% bootstrap interval.</param>
/// <param name="Rank">1 + the number of models whose lower bound is above this model's upper bound (overlapping intervals share a rank).</param>
internal sealed record ModelRating(string Model, double Rating, double Low, double High, int Battles, int Wins, int Ties, int Losses, int Rank);

/// <summary>The whole leaderboard: ratings best first, and the pairwise win rates (ties counted half) and battle counts.</summary>
internal sealed record Leaderboard(IReadOnlyList<ModelRating> Ratings, IReadOnlyList<string> Models, double?[,] WinRate, int[,] Counts, int TotalBattles);

/// <summary>
/// Bradley–Terry ratings fitted by maximum likelihood. Model i beats j with probability p_i / (p_i + p_j), p_i = e^θ_i;
/// a tie counts as half a win each way (the likelihood of a tie is (p_i/(p_i+p_j))^½ (p_j/(p_i+p_j))^½). Ratings are
/// reported like LMArena's: 400·log10(p_i) = θ_i·400/ln 10, so 400 points are 10:1 odds; then shifted so that the mean
/// rating is 1000 (the likelihood only fixes differences). A model with no wins (or no losses) has no finite maximum:
/// the fit adds a weak Gaussian prior on the log-strengths, −λ/2·Σθ², with λ = <see cref="DefaultRidge"/> by default —
/// the pull of about 1/100 of a tied game towards the mean, which moves a rating with a few dozen battles by well under
/// a point but keeps an all-losing model finite. The maximum is found by Newton's method on the (concave) penalized
/// log-likelihood with step halving.
/// </summary>
internal static class BradleyTerry
{
    public const double DefaultRidge = 0.01;
    public const double Scale = 400 / 2.302585092994046; // 400 / ln 10
    public const double Anchor = 1000;

    /// <summary>
    /// Fits ratings from aggregated results: <paramref name="wins"/>[i,j] is i's score against j (wins plus half the ties),
    /// so wins[i,j] + wins[j,i] is the number of battles between them. Returns ratings on the 400·log10 scale, mean 1000.
    /// </summary>
    public static double[] Fit(double[,] wins, double ridge = DefaultRidge, int maxIterations = 100)
    {
        int n = wins.GetLength(0);
        if (n == 0) return [];
        var theta = new double[n];
        var gradient = new double[n];
        var hessian = new double[n, n];
        double current = LogLikelihood(wins, theta, ridge);
        for (int iteration = 0; iteration < maxIterations; iteration++)
        {
            // Gradient and negative Hessian of the penalized log-likelihood.
            Array.Clear(gradient);
            Array.Clear(hessian);
            for (int i = 0; i < n; i++)
            {
                gradient[i] -= ridge * theta[i];
                hessian[i, i] += ridge;
                for (int j = i + 1; j < n; j++)
                {
                    double games = wins[i, j] + wins[j, i];
                    if (games <= 0) continue;
                    double p = Sigmoid(theta[i] - theta[j]);
                    double g = wins[i, j] - games * p;
                    gradient[i] += g;
                    gradient[j] -= g;
                    double h = games * p * (1 - p);
                    hessian[i, i] += h;
                    hessian[j, j] += h;
                    hessian[i, j] -= h;
                    hessian[j, i] -= h;
                }
            }
            // The likelihood does not move when every θ moves together: a term along (1,…,1) makes the system solvable
            // without changing the step (the gradient is orthogonal to it when the ridge is 0, and the mean is re-anchored anyway).
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    hessian[i, j] += 1.0 / n;
            var step = Solve(hessian, gradient);
            double size = 1;
            double next;
            var trial = new double[n];
            while (true)
            {
                for (int i = 0; i < n; i++) trial[i] = theta[i] + size * step[i];
                next = LogLikelihood(wins, trial, ridge);
                if (next >= current - 1e-12 || size < 1e-6) break;
                size /= 2;
            }
            double moved = 0;
            for (int i = 0; i < n; i++) moved = Math.Max(moved, Math.Abs(trial[i] - theta[i]));
            Array.Copy(trial, theta, n);
            current = next;
            if (moved < 1e-10) break;
        }
        double mean = theta.Average();
        return theta.Select(t => Anchor + (t - mean) * Scale).ToArray();
    }

    /// <summary>
    /// The leaderboard of <paramref name="battles"/>: ratings, 95% intervals from <paramref name="rounds"/> bootstrap
    /// resamples of the battles (each a refit; percentiles 2.5 and 97.5; a fixed <paramref name="seed"/> makes it
    /// reproducible), battle counts, win-rate matrix and ranks.
    /// </summary>
    public static Leaderboard Compute(IReadOnlyList<Outcome> battles, int rounds = 200, int seed = 42, double ridge = DefaultRidge)
    {
        var models = battles.SelectMany(b => new[] { b.ModelA, b.ModelB }).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var index = models.Select((m, i) => (m, i)).ToDictionary(x => x.m, x => x.i, StringComparer.Ordinal);
        int n = models.Count;
        var pairs = battles.Select(b => (A: index[b.ModelA], B: index[b.ModelB], b.ScoreA)).ToArray();
        var ratings = Fit(Aggregate(pairs, n, null), ridge);

        var samples = new double[n][];
        for (int i = 0; i < n; i++) samples[i] = new double[rounds];
        var random = new Random(seed);
        var counts = new int[pairs.Length];
        for (int r = 0; r < rounds; r++)
        {
            Array.Clear(counts);
            for (int k = 0; k < pairs.Length; k++) counts[random.Next(pairs.Length)]++;
            var fitted = Fit(Aggregate(pairs, n, counts), ridge);
            for (int i = 0; i < n; i++) samples[i][r] = fitted[i];
        }

        var winRate = new double?[n, n];
        var games = new int[n, n];
        var score = new double[n, n];
        var (wins, ties, losses, total) = (new int[n], new int[n], new int[n], new int[n]);
        foreach (var (a, b, s) in pairs)
        {
            games[a, b]++;
            games[b, a]++;
            score[a, b] += s;
            score[b, a] += 1 - s;
            total[a]++;
            total[b]++;
            if (s == 1) { wins[a]++; losses[b]++; }
            else if (s == 0) { wins[b]++; losses[a]++; }
            else { ties[a]++; ties[b]++; }
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (games[i, j] > 0) winRate[i, j] = score[i, j] / games[i, j];

        var intervals = new (double Low, double High)[n];
        for (int i = 0; i < n; i++)
        {
            if (rounds == 0) { intervals[i] = (ratings[i], ratings[i]); continue; }
            Array.Sort(samples[i]);
            intervals[i] = (Percentile(samples[i], 0.025), Percentile(samples[i], 0.975));
        }
        var lines = new List<ModelRating>(n);
        for (int i = 0; i < n; i++)
        {
            int above = 0;
            for (int j = 0; j < n; j++) if (j != i && intervals[j].Low > intervals[i].High) above++;
            lines.Add(new ModelRating(models[i], ratings[i], intervals[i].Low, intervals[i].High, total[i], wins[i], ties[i], losses[i], 1 + above));
        }
        lines.Sort((x, y) => x.Rank != y.Rank ? x.Rank.CompareTo(y.Rank) : y.Rating.CompareTo(x.Rating));
        return new Leaderboard(lines, models, winRate, games, pairs.Length);
    }

    /// <summary>Linear interpolation between the order statistics of a sorted sample.</summary>
    internal static double Percentile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int low = (int)Math.Floor(at);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (at - low) * (sorted[high] - sorted[low]);
    }

    private static double[,] Aggregate((int A, int B, double ScoreA)[] pairs, int n, int[]? weights)
    {
        var wins = new double[n, n];
        for (int k = 0; k < pairs.Length; k++)
        {
            int w = weights is null ? 1 : weights[k];
            if (w == 0) continue;
            var (a, b, s) = pairs[k];
            wins[a, b] += w * s;
            wins[b, a] += w * (1 - s);
        }
        return wins;
    }

    private static double LogLikelihood(double[,] wins, double[] theta, double ridge)
    {
        int n = theta.Length;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            sum -= ridge / 2 * theta[i] * theta[i];
            for (int j = 0; j < n; j++)
                if (i != j && wins[i, j] > 0) sum += wins[i, j] * LogSigmoid(theta[i] - theta[j]);
        }
        return sum;
    }

    private static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    private static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));

    /// <summary>Gaussian elimination with partial pivoting (the matrix is symmetric positive definite and small).</summary>
    private static double[] Solve(double[,] matrix, double[] vector)
    {
        int n = vector.Length;
        var a = (double[,])matrix.Clone();
        var b = (double[])vector.Clone();
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int r = col + 1; r < n; r++) if (Math.Abs(a[r, col]) > Math.Abs(a[pivot, col])) pivot = r;
            if (pivot != col)
            {
                for (int c = 0; c < n; c++) (a[col, c], a[pivot, c]) = (a[pivot, c], a[col, c]);
                (b[col], b[pivot]) = (b[pivot], b[col]);
            }
            double d = a[col, col];
            if (Math.Abs(d) < 1e-300) continue;
            for (int r = col + 1; r < n; r++)
            {
                double f = a[r, col] / d;
                if (f == 0) continue;
                for (int c = col; c < n; c++) a[r, c] -= f * a[col, c];
                b[r] -= f * b[col];
            }
        }
        var x = new double[n];
        for (int r = n - 1; r >= 0; r--)
        {
            double s = b[r];
            for (int c = r + 1; c < n; c++) s -= a[r, c] * x[c];
            x[r] = Math.Abs(a[r, r]) < 1e-300 ? 0 : s / a[r, r];
        }
        return x;
    }
}
