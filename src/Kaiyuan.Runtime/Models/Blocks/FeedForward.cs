using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Gated feed-forward: down(SiLU(gate(x)) ⊙ up(x)). With no separate gate, <c>ffn_up</c> holds gate and up fused
/// (gate first, as GLM-4 stores it).
/// </summary>
internal sealed class DenseFeedForward(Linear? gate, Linear up, Linear down) : IFeedForwardBlock
{
    public int HiddenSize => down.InFeatures;

    public void CheckShapes(int embedding)
    {
        Shapes.Input(up, embedding);
        Shapes.Output(up, gate is null ? 2 * HiddenSize : HiddenSize);
        if (gate is not null)
        {
            Shapes.Input(gate, embedding);
            Shapes.Output(gate, HiddenSize);
        }
        Shapes.Output(down, embedding);
    }

    public void Forward(ForwardContext ctx, ReadOnlySpan<float> x, int tokens, Span<float> output)
    {
        var ws = ctx.Workspace;
        int hidden = HiddenSize;
        var g = ws.Floats(Buf.FfnGate, tokens * hidden);
        if (gate is not null)
        {
            var u = ws.Floats(Buf.FfnUp, tokens * hidden);
            Linear.ForwardTogether(x, tokens, ws, ctx.Pool, gate, g, up, u);
            VectorOps.SwiGlu(g, u);
        }
        else
        {
            var fused = ws.Floats(Buf.FfnUp, tokens * 2 * hidden);
            up.Forward(x, tokens, fused, ws, ctx.Pool);
            for (int t = 0; t < tokens; t++)
            {
                var row = fused.Slice(t * 2 * hidden, 2 * hidden);
                var dst = g.Slice(t * hidden, hidden);
                row[..hidden].CopyTo(dst);
                VectorOps.SwiGlu(dst, row[hidden..]);
            }
        }
        down.Forward(g, tokens, output, ws, ctx.Pool);
    }
}

/// <summary>
/// Mixture of experts: a router scores every expert per token (softmax or sigmoid), picks the top k (optionally
/// biased by <c>exp_probs_b</c> and restricted to the best expert groups), weights them (optionally normalised and
/// scaled), and runs only those experts; shared experts, when present, run for every token, scaled by
/// sigmoid(<c>ffn_gate_inp_shexp</c> · x) where the file has that gate (Qwen3.5-MoE).
/// </summary>
internal sealed class MoeFeedForward : IFeedForwardBlock
{
    private readonly Linear _router;
    private readonly float[]? _selectionBias;
    private readonly QuantMatrix _gate, _up, _down;
    private readonly DenseFeedForward? _shared;
    private readonly float[]? _sharedGate;
    private readonly int _experts, _used, _groups, _groupsUsed;
    private readonly ExpertGating _gating;
    private readonly bool _normalize;
    private readonly float _scale;

    private const int MaxExperts = 4096;

    public MoeFeedForward(ModelConfig c, Linear router, float[]? selectionBias, QuantMatrix gate, QuantMatrix up, QuantMatrix down,
        DenseFeedForward? shared, bool normalize, float scale, ExpertGating gating, float[]? sharedGate = null)
    {
        (_router, _selectionBias, _gate, _up, _down, _shared, _normalize, _scale, _gating, _sharedGate) = (router, selectionBias, gate, up, down, shared, normalize, scale, gating, sharedGate);
        _experts = c.ExpertCount;
        _used = c.ExpertUsedCount;
        _groups = c.ExpertGroupCount;
        _groupsUsed = c.ExpertGroupUsedCount;
        // The router's scores and the group scores live on the stack: bounded far above any model's 256–512 experts.
        if (_experts > MaxExperts) throw new InvalidDataException($"expert_count {_experts} is more than this runtime supports ({MaxExperts})");
        if (_used < 1 || _used > _experts) throw new InvalidDataException($"expert_used_count {_used} is not within 1…{_experts}");
        if (_groups > 1 && (_experts % _groups != 0 || _groupsUsed < 1 || _groupsUsed > _groups))
            throw new InvalidDataException($"expert_group_count {_groups} / expert_group_used_count {_groupsUsed} do not divide {_experts} experts");
        if (router.OutFeatures != _experts) throw new InvalidDataException($"router '{router.Name}' scores {router.OutFeatures} experts, expert_count is {_experts}");
        if (gate.Rows % _experts != 0 || up.Rows != gate.Rows || down.Columns * _experts != gate.Rows)
            throw new InvalidDataException("expert tensors do not match expert_count and expert_feed_forward_length");
    }

    public void CheckShapes(int embedding)
    {
        Shapes.Input(_router, embedding);
        Shapes.Require(_gate.Columns == embedding && _up.Columns == embedding, "ffn_gate_exps", $"experts take {_gate.Columns} inputs, expected {embedding}");
        Shapes.Require(_down.Rows == _experts * embedding, "ffn_down_exps", $"has {_down.Rows} rows, expected {_experts} experts × {embedding}");
        Shapes.Vector(_selectionBias, _experts, "exp_probs_b");
        Shapes.Vector(_sharedGate, embedding, "ffn_gate_inp_shexp");
        Shapes.Require(_sharedGate is null || _shared is not null, "ffn_gate_inp_shexp", "gates a shared expert the file does not have");
        _shared?.CheckShapes(embedding);
    }

    public void Forward(ForwardContext ctx, ReadOnlySpan<float> x, int tokens, Span<float> output)
    {
        var ws = ctx.Workspace;
        int d = _down.Rows / _experts, hidden = _down.Columns;
        var probs = ws.Floats(Buf.RouterLogits, tokens * _experts);
        _router.Forward(x, tokens, probs, ws, ctx.Pool);

        var chosen = ws.Ints(IntBuf.ChosenExperts, tokens * _used);
        var weights = ws.Floats(Buf.ExpertWeights, tokens * _used);
        Span<float> selection = stackalloc float[_experts];
        for (int t = 0; t < tokens; t++)
        {
            var p = probs.Slice(t * _experts, _experts);
            if (_gating == ExpertGating.Sigmoid) VectorOps.Sigmoid(p);
            else VectorOps.Softmax(p);
            p.CopyTo(selection);
            if (_selectionBias is not null) VectorOps.Add(selection, _selectionBias);
            if (_groups > 1) MaskGroups(selection);
            var ids = chosen.Slice(t * _used, _used);
            var w = weights.Slice(t * _used, _used);
            TopK(selection, ids);
            float sum = 0;
            for (int k = 0; k < _used; k++) sum += w[k] = p[ids[k]];
            for (int k = 0; k < _used; k++)
            {
                if (_normalize) w[k] /= sum;
                if (_scale != 0) w[k] *= _scale;
            }
        }

        // Run each expert once over the tokens routed to it.
        output[..(tokens * d)].Clear();
        int dIn = x.Length / tokens;
        ForwardExperts(ctx, x, tokens, chosen, weights, output, d, hidden, dIn);

        if (_shared is not null)
        {
            var shared = ws.Floats(Buf.SharedOut, tokens * d);
            _shared.Forward(ctx, x, tokens, shared);
            if (_sharedGate is null) VectorOps.Add(output[..(tokens * d)], shared);
            else
                for (int t = 0; t < tokens; t++)
                {
                    float gate = 1f / (1f + MathF.Exp(-System.Numerics.Tensors.TensorPrimitives.Dot(x.Slice(t * dIn, dIn), _sharedGate)));
                    VectorOps.AddScaled(output.Slice(t * d, d), shared.Slice(t * d, d), gate);
                }
        }
    }

    /// <summary>
    /// Each active expert once over the tokens routed to it. Experts with fewer tokens than the panel kernels take (all
    /// of them at decode) run together: their gate and up rows in one parallel pass, then their down rows in another
    /// (<see cref="MatMul.Group"/>), instead of three passes each that wake the threads for a few hundred rows. Experts
    /// with more run one by one through the panels. Outputs are summed in expert order either way.
    /// </summary>
    private unsafe void ForwardExperts(ForwardContext ctx, ReadOnlySpan<float> x, int tokens, ReadOnlySpan<int> chosen, ReadOnlySpan<float> weights,
        Span<float> output, int d, int hidden, int dIn)
    {
        var ws = ctx.Workspace;
        var pool = ctx.Pool;
        int routed = tokens * _used;
        // Routed rows sorted by expert (a counting sort), tokens in order within each expert.
        var starts = ws.Ints(IntBuf.ExpertStarts, _experts + 1);
        var slots = ws.Ints(IntBuf.ExpertSlots, _experts);
        var members = ws.Ints(IntBuf.ExpertMembers, routed);
        var memberWeights = ws.Floats(Buf.MemberWeights, routed);
        starts.Clear();
        for (int i = 0; i < routed; i++) starts[chosen[i] + 1]++;
        for (int e = 0; e < _experts; e++) starts[e + 1] += starts[e];
        starts[.._experts].CopyTo(slots);
        for (int i = 0; i < routed; i++)
        {
            int at = slots[chosen[i]]++;
            members[at] = i / _used;
            memberWeights[at] = weights[i];
        }

        // The experts with few tokens, laid end to end: slots[e] becomes each one's first row there (-1: runs alone).
        int few = 0;
        for (int e = 0; e < _experts; e++)
        {
            int m = starts[e + 1] - starts[e];
            slots[e] = m is > 0 and < MatMul.PanelMinTokens ? few : -1;
            if (slots[e] >= 0) few += m;
        }
        var fewOut = ws.Floats(Buf.GroupOut, few * d);
        if (few > 0)
        {
            var xin = ws.Floats(Buf.GroupIn, few * dIn);
            var g = ws.Floats(Buf.GroupGate, few * hidden);
            var u = ws.Floats(Buf.GroupUp, few * hidden);
            for (int e = 0; e < _experts; e++)
                for (int i = 0; slots[e] >= 0 && i < starts[e + 1] - starts[e]; i++)
                    x.Slice(members[starts[e] + i] * dIn, dIn).CopyTo(xin.Slice((slots[e] + i) * dIn, dIn));
            using (pool.Enter())
                fixed (float* xp = xin, gp = g, up = u, op = fewOut)
                {
                    var group = pool.Job<MatMul.Group>();
                    group.Clear();
                    for (int e = 0; e < _experts; e++)
                    {
                        if (slots[e] < 0) continue;
                        int first = slots[e], m = starts[e + 1] - starts[e];
                        group.Add(_gate.Expert(e, _experts), xp + (long)first * dIn, m, gp + (long)first * hidden);
                        group.Add(_up.Expert(e, _experts), xp + (long)first * dIn, m, up + (long)first * hidden);
                    }
                    group.Run(ws.Bytes(group.ScratchBytes()), pool);
                    VectorOps.SwiGlu(g, u);
                    group.Clear();
                    for (int e = 0; e < _experts; e++)
                    {
                        if (slots[e] < 0) continue;
                        int first = slots[e], m = starts[e + 1] - starts[e];
                        group.Add(_down.Expert(e, _experts), gp + (long)first * hidden, m, op + (long)first * d);
                    }
                    group.Run(ws.Bytes(group.ScratchBytes()), pool);
                }
        }

        for (int e = 0; e < _experts; e++)
        {
            int first = starts[e], m = starts[e + 1] - first;
            if (m == 0) continue;
            Span<float> result;
            if (slots[e] >= 0) result = fewOut.Slice(slots[e] * d, m * d);
            else
            {
                var xin = ws.Floats(Buf.ExpertIn, m * dIn);
                var g = ws.Floats(Buf.FfnGate, m * hidden);
                var u = ws.Floats(Buf.FfnUp, m * hidden);
                result = ws.Floats(Buf.ExpertOut, m * d);
                for (int i = 0; i < m; i++) x.Slice(members[first + i] * dIn, dIn).CopyTo(xin.Slice(i * dIn, dIn));
                var ge = _gate.Expert(e, _experts);
                var ue = _up.Expert(e, _experts);
                var de = _down.Expert(e, _experts);
                if (MatMul.CanShareInput(ge, ue, m)) MatMul.MultiplyShared(xin, m, ws.Bytes(MatMul.ScratchBytes(ge, m)), pool, ge, g, ue, u);
                else
                {
                    MatMul.Multiply(ge, xin, m, g, ws.Bytes(MatMul.ScratchBytes(ge, m)), pool);
                    MatMul.Multiply(ue, xin, m, u, ws.Bytes(MatMul.ScratchBytes(ue, m)), pool);
                }
                VectorOps.SwiGlu(g, u);
                MatMul.Multiply(de, g, m, result, ws.Bytes(MatMul.ScratchBytes(de, m)), pool);
            }
            for (int i = 0; i < m; i++)
                VectorOps.AddScaled(output.Slice(members[first + i] * d, d), result.Slice(i * d, d), memberWeights[first + i]);
        }
    }

    /// <summary>Indices of the k largest values, best first (lowest index on ties).</summary>
    private static void TopK(ReadOnlySpan<float> values, Span<int> ids)
    {
        for (int k = 0; k < ids.Length; k++)
        {
            int best = -1;
            for (int i = 0; i < values.Length; i++)
            {
                if (ids[..k].Contains(i)) continue;
                if (best < 0 || values[i] > values[best]) best = i;
            }
            ids[k] = best;
        }
    }

    /// <summary>DeepSeek-V3 group routing: keep only the groups whose two best experts score highest.</summary>
    private void MaskGroups(Span<float> selection)
    {
        int perGroup = _experts / _groups;
        Span<float> groupScores = stackalloc float[_groups];
        Span<int> top2 = stackalloc int[Math.Min(2, perGroup)];
        for (int gi = 0; gi < _groups; gi++)
        {
            var grp = selection.Slice(gi * perGroup, perGroup);
            TopK(grp, top2);
            float s = 0;
            foreach (int i in top2) s += grp[i];
            groupScores[gi] = s;
        }
        Span<int> keep = stackalloc int[_groupsUsed];
        TopK(groupScores, keep);
        for (int gi = 0; gi < _groups; gi++)
            if (!keep.Contains(gi)) selection.Slice(gi * perGroup, perGroup).Fill(float.NegativeInfinity);
    }
}
