using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Kernels;

/// <summary>One measurement of <see cref="KernelBenchmarks.MatMul"/>.</summary>
/// <param name="Type">The weight type.</param>
/// <param name="Tokens">Activation rows per multiply.</param>
/// <param name="Seconds">Median time of one multiply.</param>
/// <param name="GmacPerSecond">Multiply-accumulates per second, in billions.</param>
/// <param name="WeightGbPerSecond">Weight bytes read per second, in GB.</param>
public sealed record MatMulTiming(GgmlType Type, int Tokens, double Seconds, double GmacPerSecond, double WeightGbPerSecond);

/// <summary>One measurement of <see cref="KernelBenchmarks.ReadBandwidth"/>.</summary>
/// <param name="Threads">Threads that read the buffer together.</param>
/// <param name="Bytes">Size of the buffer read in each sample.</param>
/// <param name="MedianGbPerSecond">Median read rate over the samples, in GB/s.</param>
/// <param name="BestGbPerSecond">Best read rate, in GB/s: the ceiling a decode step that only streams weights could reach.</param>
public sealed record BandwidthTiming(int Threads, long Bytes, double MedianGbPerSecond, double BestGbPerSecond);

/// <summary>One measurement of <see cref="KernelBenchmarks.Attention"/>.</summary>
/// <param name="CacheType">The KV cache's row type.</param>
/// <param name="Depth">Rows cached before the query tokens.</param>
/// <param name="Tokens">Consecutive query tokens of the one sequence (1: decode; more: a prompt chunk).</param>
/// <param name="Seconds">Median time of one attention call (one layer).</param>
/// <param name="GflopPerSecond">Scores and weighted sums (2 flops per multiply-add), in billions per second.</param>
/// <param name="CacheGbPerSecond">Cached rows' bytes read per second (each row once per call), in GB.</param>
public sealed record AttentionTiming(GgmlType CacheType, int Depth, int Tokens, double Seconds, double GflopPerSecond, double CacheGbPerSecond);

/// <summary>
/// The quantized kernels measured alone on this machine, as llama.cpp's <c>test-backend-ops perf</c> does: what
/// <c>kaiyuan bench matmul</c> prints, for tools that want the figures themselves.
/// </summary>
public static class KernelBenchmarks
{
    /// <summary>The instruction-set tier the kernels run in here: "avx512", "avx-vnni", "avx2", "arm64-neon-dot" or "scalar".</summary>
    public static string Tier => QuantizedDot.KernelTier;

    /// <summary>Whether a weight type has matmul kernels.</summary>
    public static bool Supports(GgmlType type) => QuantizedDot.IsSupported(type);

    /// <summary>
    /// Random quants for a type Kaiyuan reads but does not write yet (i-quants, ternary): speed does not depend on the
    /// values, only the block scale (an fp16) is kept small and finite.
    /// </summary>
    private static void RandomBlocks(GgmlType type, Span<byte> weights, Random random)
    {
        int scaleAt = type switch
        {
            GgmlType.IQ4_NL => BlockLayouts.IQ4_NL.D,
            GgmlType.IQ4_XS => BlockLayouts.IQ4_XS.D,
            GgmlType.TQ1_0 => BlockLayouts.TQ1_0.D,
            GgmlType.TQ2_0 => BlockLayouts.TQ2_0.D,
            GgmlType.IQ1_M => -1,
            _ when IqGridDecoder.Handles(type) => 0,
            _ => throw new ArgumentException($"cannot make {type} weights to measure"),
        };
        random.NextBytes(weights);
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        ushort scale = BitConverter.HalfToUInt16Bits((Half)0.01f);
        for (int at = 0; at < weights.Length; at += blockBytes)
        {
            if (scaleAt < 0) IqGridDecoder.WriteIq1MScale(weights.Slice(at, blockBytes), scale);
            else System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(weights[(at + scaleAt)..], scale);
        }
    }

    /// <summary>
    /// A random <paramref name="rows"/> × <paramref name="cols"/> weight matrix of <paramref name="type"/> times 1…N
    /// activation rows (each of <paramref name="tokenCounts"/>) on <paramref name="threads"/> threads: the median of
    /// <paramref name="repetitions"/> timed samples after a second of warm-up. <paramref name="cold"/>: each multiply
    /// reads its own copy of the matrix, of copies that together exceed <see cref="ColdBytes"/>, so that every one
    /// streams its weights from memory as a decode step does (a decode reads a layer's matrices once per token, and the
    /// small ones, half a megabyte for a 896-wide projection, took twice their in-cache time there).
    /// </summary>
    public static unsafe IReadOnlyList<MatMulTiming> MatMul(GgmlType type, int rows, int cols, IReadOnlyList<int> tokenCounts, int repetitions, int threads, bool cold = false)
    {
        if (!Supports(type)) throw new ArgumentException($"no kernel for weight type {type}");
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        var (blockSize, _) = GgmlTypeInfo.Geometry(type);
        if (cols <= 0 || cols % blockSize != 0) throw new ArgumentException($"{cols} columns are not a multiple of the {type} block size {blockSize} (--cols)");
        var random = new Random(7);
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, cols);
        long matrixBytes = (long)rows * rowBytes;
        // Copies at distinct addresses, taken in turn: the caches keep none of them from one use to the next.
        int copies = cold ? (int)Math.Max(2, (ColdBytes + matrixBytes - 1) / matrixBytes) : 1;
        // The padding a repacked matrix has past its end (the model's weights are multiplied in KernelType's layout).
        byte* all = (byte*)NativeMemory.AlignedAlloc((nuint)(copies * matrixBytes + Q5Fields.Padding), 64);
        try
        {
            var weights = new Span<byte>(all, checked((int)matrixBytes));
            var row = new float[cols];
            // The grid i-quants' writers need an importance matrix and search long; their kernels' speed does not depend
            // on the values, so random blocks stand in for them.
            if (Quantize.IsSupported(type) && !IqGridDecoder.Handles(type))
            {
                for (int i = 0; i < rows; i++)
                {
                    for (int j = 0; j < cols; j++) row[j] = (float)(random.NextDouble() * 2 - 1);
                    Quantize.Row(type, row, weights.Slice(i * rowBytes, rowBytes));
                }
            }
            else RandomBlocks(type, weights, random);
            var kernelType = QuantMatrix.KernelType(type);
            if (kernelType != type) Q5Fields.Pack(all, all, matrixBytes / GgmlTypeInfo.Geometry(type).TypeSize);
            for (int i = 1; i < copies; i++) weights.CopyTo(new Span<byte>(all + i * matrixBytes, weights.Length));
            new Span<byte>(all + copies * matrixBytes, Q5Fields.Padding).Clear();
            return Time(type, kernelType, rows, cols, tokenCounts, repetitions, threads, all, copies, matrixBytes, random);
        }
        finally
        {
            NativeMemory.AlignedFree(all);
        }
    }

    /// <summary>What the copies of a <c>cold</c> <see cref="MatMul"/> matrix exceed together: several times any L3 cache.</summary>
    private const long ColdBytes = 256L << 20;

    private static unsafe List<MatMulTiming> Time(GgmlType type, GgmlType kernelType, int rows, int cols, IReadOnlyList<int> tokenCounts, int repetitions, int threads, byte* all, int copies,
        long matrixBytes, Random random)
    {
        using var pool = new WorkerPool(threads);
        var results = new List<MatMulTiming>();
        var matrices = new QuantMatrix[copies];
        for (int i = 0; i < copies; i++) matrices[i] = new QuantMatrix(all + i * matrixBytes, kernelType, rows, cols);
        int next = 0;
        foreach (int tokens in tokenCounts)
        {
            var x = new float[tokens * cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
            var y = new float[(long)tokens * rows];
            var scratch = new byte[Kernels.MatMul.ScratchBytes(matrices[0], tokens)];
            // Enough multiplies per sample that one lasts ~10 ms or more. A second of warm-up first: the dispatch
            // code a batch size reaches first runs unoptimized until tiered compilation replaces it, which one
            // warm-up sample did not outlast (a case right after another token count read 51 GMAC/s, not 145).
            int inner = Math.Max(1, (int)(2e7 / ((double)rows * cols * tokens / 32)));
            for (long warm = Stopwatch.GetTimestamp(); Stopwatch.GetElapsedTime(warm).TotalSeconds < 1;)
                Kernels.MatMul.Multiply(matrices[next++ % copies], x, tokens, y, scratch, pool);
            var samples = new List<double>();
            for (int rep = 0; rep < repetitions; rep++)
            {
                long start = Stopwatch.GetTimestamp();
                for (int i = 0; i < inner; i++) Kernels.MatMul.Multiply(matrices[next++ % copies], x, tokens, y, scratch, pool);
                samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds / inner);
            }
            samples.Sort();
            double seconds = samples[samples.Count / 2];
            results.Add(new MatMulTiming(type, tokens, seconds, (double)rows * cols * tokens / seconds / 1e9, matrixBytes / seconds / 1e9));
        }
        return results;
    }

    /// <summary>
    /// This machine's memory read bandwidth as decode sees it: <paramref name="threads"/> threads of the same worker pool
    /// the kernels use stream a buffer far larger than the caches with vector loads, in chunks claimed as the kernels
    /// claim rows; the median and best of <paramref name="repetitions"/> samples after one warm-up.
    /// </summary>
    public static unsafe BandwidthTiming ReadBandwidth(int threads, long bytes = 512L << 20, int repetitions = 7)
    {
        const int Chunk = 1 << 20;
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, (long)Chunk);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        bytes -= bytes % Chunk;
        using var pool = new WorkerPool(threads);
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            // Written first, so every page is resident and backed by its own memory (not the shared zero page).
            new Span<byte>(buffer, Chunk).Fill(1);
            for (long at = Chunk; at < bytes; at += Chunk) Buffer.MemoryCopy(buffer, buffer + at, Chunk, Chunk);
            var sums = new ulong[pool.Threads * 8]; // a cache line per worker, so the sums do not share one
            var samples = new List<double>();
            for (int rep = 0; rep <= repetitions; rep++)
            {
                long start = Stopwatch.GetTimestamp();
                pool.For((int)(bytes / Chunk), (first, end, worker) =>
                {
                    for (int c = first; c < end; c++) sums[worker * 8] += SumChunk(buffer + (long)c * Chunk, Chunk);
                });
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (rep > 0) samples.Add(bytes / seconds / 1e9);
            }
            if (sums.Sum(x => (double)x) == 0) throw new InvalidOperationException("the bandwidth buffer read back empty");
            samples.Sort();
            return new BandwidthTiming(pool.Threads, bytes, samples[samples.Count / 2], samples[^1]);
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    /// <summary>Reads a chunk with eight independent vector sums, so the loads, not an add chain, set the pace.</summary>
    private static unsafe ulong SumChunk(byte* p, int length)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ulong> a = default, b = default, c = default, d = default;
            for (int i = 0; i < length; i += 256)
            {
                a += Vector512.Load((ulong*)(p + i));
                b += Vector512.Load((ulong*)(p + i + 64));
                c += Vector512.Load((ulong*)(p + i + 128));
                d += Vector512.Load((ulong*)(p + i + 192));
            }
            return Vector512.Sum(a + b + c + d);
        }
        Vector256<ulong> e = default, f = default, g = default, h = default;
        for (int i = 0; i < length; i += 128)
        {
            e += Vector256.Load((ulong*)(p + i));
            f += Vector256.Load((ulong*)(p + i + 32));
            g += Vector256.Load((ulong*)(p + i + 64));
            h += Vector256.Load((ulong*)(p + i + 96));
        }
        return Vector256.Sum(e + f + g + h);
    }

    /// <summary>
    /// One layer's causal attention alone (<c>kaiyuan bench attention</c>): <paramref name="heads"/> query heads over
    /// <paramref name="headsKv"/> key/value heads of <paramref name="headDim"/> floats, <paramref name="tokens"/> query
    /// tokens after <paramref name="depth"/> cached rows of random values, on <paramref name="threads"/> threads; the median of
    /// <paramref name="repetitions"/> samples after a warm-up. Decode deep in a long context is bound by this kernel.
    /// </summary>
    public static AttentionTiming Attention(GgmlType cacheType, int heads, int headsKv, int headDim, int depth, int tokens, int repetitions, int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(headsKv, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(depth);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        if (heads % headsKv != 0) throw new ArgumentException($"{heads} query heads do not divide into {headsKv} key/value heads");
        int width = headsKv * 2 * headDim, length = depth + tokens;
        // As many layers as make ~256 MiB, called in turn as a decode step does: each call then reads its rows from memory,
        // not from a cache that held them since the last call.
        long layerBytes = (long)length * GgmlTypeInfo.RowBytes(cacheType, width);
        int layers = (int)Math.Clamp((256L << 20) / layerBytes, 1, 64);
        var cache = new Inference.KvCache(Enumerable.Repeat(width, layers).ToArray(), 1, length, cacheType);
        if (!cache.Reserve(0, length)) throw new InvalidOperationException("the KV pool cannot hold the rows");
        var random = new Random(11);
        var row = new float[width];
        for (int p = 0; p < length; p++)
        {
            for (int i = 0; i < width; i++) row[i] = (float)(random.NextDouble() * 2 - 1);
            for (int layer = 0; layer < layers; layer++) cache.Write(layer, 0, p, row);
        }
        var batch = new Models.Blocks.ForwardBatch(tokens);
        for (int t = 0; t < tokens; t++) batch.Add(0, depth + t, 0);
        var q = new float[tokens * heads * headDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(random.NextDouble() * 2 - 1);
        var output = new float[tokens * heads * headDim];
        using var pool = new WorkerPool(threads);
        var ctx = new Models.Blocks.ForwardContext(batch, cache, new Inference.Workspace(), pool);
        // Each query token t multiplies-and-adds every visible row (depth + t + 1 of them) into a score and a weighted sum per head.
        double flops = 0;
        for (int t = 0; t < tokens; t++) flops += 2.0 * 2 * heads * headDim * (depth + t + 1);
        int inner = Math.Max(1, (int)(2e7 / Math.Max(1, flops / 16)));
        int next = 0;
        void Call() => Models.Blocks.AttentionKernel.Run(ctx, next++ % layers, q, heads * headDim, heads, headsKv, headDim, headDim, keyOffset: 0,
            valueOffset: headsKv * headDim, 1 / MathF.Sqrt(headDim), output);
        // A second of calls first: the kernels' loops run long, and the runtime replaces their first code (tier 0, then
        // on-stack replacement) with optimized code only after a delay.
        for (long warm = Stopwatch.GetTimestamp(); Stopwatch.GetElapsedTime(warm).TotalSeconds < 1;) Call();
        var samples = new List<double>();
        for (int rep = 0; rep < repetitions; rep++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < inner; i++) Call();
            samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds / inner);
        }
        samples.Sort();
        double seconds = samples[samples.Count / 2];
        return new AttentionTiming(cacheType, depth, tokens, seconds, flops / seconds / 1e9, layerBytes / seconds / 1e9);
    }
}
