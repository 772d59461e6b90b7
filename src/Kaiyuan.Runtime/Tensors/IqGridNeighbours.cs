using Kaiyuan.Gguf;

namespace Kaiyuan.Tensors;

/// <summary>
/// The search tables the grid i-quant quantizers need (what llama.cpp's <c>iq2xs_init_impl</c> / <c>iq3xs_init_impl</c>
/// build): for every lattice point a quantizer can round to, either its grid index or, when it is not on the grid, the
/// list of grid points nearest to it (every point at the smallest few distinct squared distances, ordered by distance and
/// then index, so a search over the list breaks ties as llama.cpp's does). Built once per grid, on first use, thread-safely.
/// </summary>
internal sealed class IqGridNeighbours
{
    private static readonly Lazy<IqGridNeighbours> Iq2XxsTable = new(() => new(IqGridPoints.Iq2Xxs, 8, 2, 2, 2));
    private static readonly Lazy<IqGridNeighbours> Iq2XsTable = new(() => new(IqGridPoints.Iq2Xs, 8, 2, 2, 2));
    private static readonly Lazy<IqGridNeighbours> Iq2STable = new(() => new(IqGridPoints.Iq2S, 8, 2, 2, 1));
    private static readonly Lazy<IqGridNeighbours> Iq1STable = new(() => new(IqGridPoints.Iq1S, 8, 2, 2, 3));
    private static readonly Lazy<IqGridNeighbours> Iq3XxsTable = new(() => new(IqGridPoints.Iq3Xxs, 4, 3, 7, 2));
    private static readonly Lazy<IqGridNeighbours> Iq3STable = new(() => new(IqGridPoints.Iq3S, 4, 3, 7, 3));

    /// <summary>Grid points as odd coordinates 2l+1, <see cref="Dimension"/> per point (llama.cpp's kgrid_q2xs / q3xs).</summary>
    private readonly sbyte[] points;

    /// <summary>Per lattice key: the grid index (≥ 0), or −(offset + 1) of the point's list in <see cref="lists"/>.</summary>
    private readonly int[] map;

    /// <summary>Neighbour lists, each a count followed by that many grid indices.</summary>
    private readonly ushort[] lists;

    private IqGridNeighbours(ReadOnlySpan<ushort> grid, int dimension, int bits, int maxLevel, int distances)
    {
        Dimension = dimension;
        Bits = bits;
        int mask = (1 << bits) - 1;
        points = new sbyte[grid.Length * dimension];
        for (int p = 0; p < grid.Length; p++)
        {
            for (int i = 0; i < dimension; i++) points[p * dimension + i] = (sbyte)(2 * (grid[p] >> (bits * i) & mask) + 1);
        }

        map = new int[1 << (bits * dimension)];
        Array.Fill(map, -1);
        for (int p = 0; p < grid.Length; p++) map[grid[p]] = p;

        // Only keys whose levels are all within what the quantizers clamp to get a list: the others are never looked up
        // (llama.cpp fills them too, which changes nothing for the lists of the keys used).
        var found = new List<ushort>();
        var order = new int[grid.Length];
        Span<int> level = stackalloc int[dimension];
        for (int key = 0; key < map.Length; key++)
        {
            if (map[key] >= 0) continue;
            bool inRange = true;
            for (int i = 0; i < dimension; i++)
            {
                level[i] = key >> (bits * i) & mask;
                inRange &= level[i] <= maxLevel;
            }

            if (!inRange) continue;
            for (int p = 0; p < grid.Length; p++)
            {
                int d2 = 0;
                for (int i = 0; i < dimension; i++)
                {
                    int diff = points[p * dimension + i] - (2 * level[i] + 1);
                    d2 += diff * diff;
                }

                // Distance in the high bits, index in the low: sorting orders by distance, then index (as qsort with
                // iq2_compare_func).
                order[p] = d2 << 16 | p;
            }

            Array.Sort(order);
            map[key] = -(found.Count + 1);
            int countAt = found.Count;
            found.Add(0);
            int have = 1, distance = order[0] >> 16;
            foreach (int entry in order)
            {
                if (entry >> 16 > distance)
                {
                    if (have == distances) break;
                    distance = entry >> 16;
                    have++;
                }

                found.Add((ushort)(entry & 0xFFFF));
            }

            found[countAt] = (ushort)(found.Count - countAt - 1);
        }

        lists = [.. found];
    }

    /// <summary>The table of a grid type's codebook (IQ1_M shares IQ1_S's).</summary>
    public static IqGridNeighbours For(GgmlType type) => type switch
    {
        GgmlType.IQ2_XXS => Iq2XxsTable.Value,
        GgmlType.IQ2_XS => Iq2XsTable.Value,
        GgmlType.IQ2_S => Iq2STable.Value,
        GgmlType.IQ1_S or GgmlType.IQ1_M => Iq1STable.Value,
        GgmlType.IQ3_XXS => Iq3XxsTable.Value,
        GgmlType.IQ3_S => Iq3STable.Value,
        _ => throw new ArgumentException($"{type} has no grid.", nameof(type)),
    };

    /// <summary>Coordinates per grid point: 8 for the 2-bit and 1-bit grids, 4 for IQ3.</summary>
    public int Dimension { get; }

    /// <summary>Bits per coordinate in a lattice key.</summary>
    public int Bits { get; }

    /// <summary>The grid index of the point whose levels are packed in <paramref name="key"/>, or −1 when it is off the grid.</summary>
    public int IndexOf(int key) => map[key] < 0 ? -1 : map[key];

    /// <summary>Writes grid point <paramref name="index"/>'s levels (0-based, (2l+1 − 1)/2) into <paramref name="levels"/>.</summary>
    public void Levels(int index, Span<sbyte> levels)
    {
        for (int i = 0; i < Dimension; i++) levels[i] = (sbyte)((points[index * Dimension + i] - 1) / 2);
    }

    /// <summary>
    /// For an off-grid key: the neighbour minimising Σ w·(scale·q − x)², q the odd coordinates (the first on ties), as
    /// iq2_find_best_neighbour / iq3_find_best_neighbour; its levels go to <paramref name="levels"/>.
    /// </summary>
    public int Nearest(int key, ReadOnlySpan<float> xval, ReadOnlySpan<float> weight, float scale, Span<sbyte> levels) =>
        NearestByValues(key, xval, weight, scale, default, levels);

    /// <summary>
    /// <see cref="Nearest"/> with q the value each level stands for in <paramref name="values"/> (the 1-bit grid, as
    /// iq1_find_best_neighbour2), or the odd coordinate itself when <paramref name="values"/> is empty.
    /// </summary>
    public int NearestByValues(int key, ReadOnlySpan<float> xval, ReadOnlySpan<float> weight, float scale, ReadOnlySpan<float> values, Span<sbyte> levels)
    {
        int at = -map[key] - 1;
        int count = lists[at];
        float bestD2 = float.MaxValue;
        int best = -1;
        for (int j = 1; j <= count; j++)
        {
            int p = lists[at + j];
            float d2 = 0;
            for (int i = 0; i < Dimension; i++)
            {
                int coordinate = points[p * Dimension + i];
                float q = values.IsEmpty ? coordinate : values[(coordinate - 1) / 2];
                float diff = scale * q - xval[i];
                d2 += weight[i] * diff * diff;
            }

            if (d2 < bestD2)
            {
                bestD2 = d2;
                best = p;
            }
        }

        // NaN inputs compare false everywhere; fall back to the list's first point, as no point won.
        if (best < 0) best = lists[at + 1];
        Levels(best, levels);
        return best;
    }

    /// <summary>The odd coordinate 2l+1 of grid point <paramref name="index"/>'s element <paramref name="i"/>.</summary>
    public int Coordinate(int index, int i) => points[index * Dimension + i];

    /// <summary>Number of neighbours listed for an off-grid key (tests).</summary>
    internal int NeighbourCount(int key) => map[key] >= 0 ? 0 : lists[-map[key] - 1];
}
