using Kaiyuan.Gguf;

namespace Kaiyuan.Chat;

/// <summary>How a model is loaded and run: its file, the scheduler's slots and context, threads, KV cache and prompt cache.</summary>
public record ModelOptions
{
    /// <summary>The GGUF file.</summary>
    public required string ModelPath { get; init; }
    /// <summary>The model's name in the API (default: the file name without .gguf).</summary>
    public string? Alias { get; init; }
    /// <summary>Sequences the scheduler runs at once (its slots); more requests queue.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Context window per slot; 0: the model's, at most 4096.</summary>
    public int ContextSize { get; init; }
    /// <summary>Worker threads the model computes with.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>KV cache row type (f32, f16, q8_0).</summary>
    public GgmlType CacheType { get; init; } = GgmlType.F32;
    /// <summary>
    /// MiB the paged KV pool (running and cached prefixes) may grow to; -1: from free memory, at most 8 GiB;
    /// 0: no prefix caching. Never less than one full context.
    /// </summary>
    public long CacheRamMiB { get; init; } = -1;
    /// <summary>Directory where prompt prefixes are kept across restarts (<c>--prompt-cache</c>); null: none.</summary>
    public string? PromptCacheDir { get; init; }
    /// <summary>MiB the prompt cache directory may hold; the least recently used entries go beyond it.</summary>
    public long PromptCacheMaxMiB { get; init; } = DefaultPromptCacheMaxMiB;

    /// <summary>The default of <see cref="PromptCacheMaxMiB"/>: 4 GiB.</summary>
    public const long DefaultPromptCacheMaxMiB = Kaiyuan.Inference.PromptCacheStore.DefaultMaxBytes >> 20;
    /// <summary>A Jinja chat template file used instead of the model's own; null: the model's.</summary>
    public string? ChatTemplateFile { get; init; }
    /// <summary>Requests waiting for a slot at most (more get 429).</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>How long a schema, grammar or tool set may take to compile for structured output (longer: a 400).</summary>
    public TimeSpan GrammarTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// Prompt-lookup speculative decoding (<c>--lookup</c>): up to this many tokens per step proposed from the text so far
    /// and verified in the same batched pass, which speeds up answers that copy their input (code edits, extraction,
    /// retrieval) and leaves every output unchanged; 0: off.
    /// </summary>
    public int LookupDraftTokens { get; init; }
    /// <summary>
    /// Speculative decoding with a draft model (<c>--model-draft</c>): a smaller GGUF with the same vocabulary (e.g.
    /// Qwen2.5-0.5B for Qwen2.5-7B) proposes each running request's next tokens greedily, with a KV cache of its own per
    /// slot, and the model verifies them in its batched pass. Outputs are unchanged (sampled ones keep the model's
    /// distribution). Not with <see cref="LookupDraftTokens"/>; null: none.
    /// </summary>
    public string? DraftModelPath { get; init; }
    /// <summary>Tokens the draft model proposes per step at most (<c>--draft-max</c>).</summary>
    public int DraftModelTokens { get; init; } = 6;
    /// <summary>
    /// Multi-token prediction (<c>--mtp</c>): the model's own NextN layer (DeepSeek-V3, GLM-4.5) proposes up to this many
    /// tokens per running request and step, verified in the batched pass; outputs are unchanged. 0: off. Not with the
    /// other kinds of speculation.
    /// </summary>
    public int MtpDraftTokens { get; init; }
    /// <summary>
    /// A long prompt that arrives while other requests stream prefills on half the threads in the OS's lowest
    /// scheduling class (Linux SCHED_IDLE; <c>--prefill-priority low</c>), so the streams' tokens never wait behind it;
    /// it then runs only on CPU time nothing else on the machine wants. False: normal priority.
    /// </summary>
    public bool LowPriorityPrefill { get; init; } = true;
}
