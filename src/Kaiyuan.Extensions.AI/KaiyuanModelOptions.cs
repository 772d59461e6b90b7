namespace Kaiyuan.Extensions.AI;

/// <summary>
/// How to load a model in process. Every property binds from configuration (for example a <c>"Kaiyuan"</c> section of
/// appsettings.json); the defaults are <c>kaiyuan serve</c>'s.
/// </summary>
public sealed class KaiyuanModelOptions
{
    /// <summary>A GGUF file path, or a reference to a model in the local store (<c>hf.co/OWNER/REPO:QUANT</c>, an alias).</summary>
    public string Model { get; set; } = "";

    /// <summary>The model store folder for references (default: KAIYUAN_HOME, else ~/.kaiyuan).</summary>
    public string? Store { get; set; }

    /// <summary>The model's id in responses and metadata (default: the file name without .gguf).</summary>
    public string? ModelId { get; set; }

    /// <summary>Worker threads for the forward pass (default: every core).</summary>
    public int Threads { get; set; } = Environment.ProcessorCount;

    /// <summary>Sequences decoded together; more callers than this wait in the queue.</summary>
    public int Parallel { get; set; } = 4;

    /// <summary>Callers that may wait for a sequence at most; more are refused.</summary>
    public int MaxQueue { get; set; } = 256;

    /// <summary>Context window per sequence in tokens; 0: the model's, at most 4096.</summary>
    public int ContextLength { get; set; }

    /// <summary>KV cache type: <c>f32</c> (exact parity with llama.cpp's goldens), <c>f16</c> or <c>q8_0</c>.</summary>
    public string CacheType { get; set; } = "f32";

    /// <summary>MiB the KV pool (running and cached prefixes) may grow to; -1: from free memory; 0: no prefix caching.</summary>
    public long CacheRamMiB { get; set; } = -1;

    /// <summary>A folder where prompt prefixes are kept across restarts; null: none.</summary>
    public string? PromptCacheDirectory { get; set; }

    /// <summary>A Jinja chat template file to use instead of the model's own.</summary>
    public string? ChatTemplateFile { get; set; }

    /// <summary>How long a JSON schema or tool set may take to compile for constrained output.</summary>
    public TimeSpan GrammarTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Prompt-lookup speculative decoding: up to this many tokens per step proposed from the text so far and verified in
    /// one batched pass (fast where answers copy their input: code edits, extraction); outputs are unchanged. 0: off.
    /// </summary>
    public int LookupDraftTokens { get; set; }

    /// <summary>
    /// Speculative decoding with a draft model: a smaller GGUF with the same vocabulary (a path or a store reference)
    /// proposes tokens and the model verifies them in one pass; outputs are unchanged. Null: none.
    /// </summary>
    public string? DraftModel { get; set; }

    /// <summary>
    /// Speculative decoding with the model's own multi-token-prediction (NextN) layer, which DeepSeek-V3 and GLM-4.5
    /// files carry; outputs are unchanged.
    /// </summary>
    public bool MultiTokenPrediction { get; set; }

    /// <summary>Tokens a draft model or the NextN layer proposes per step at most.</summary>
    public int DraftMax { get; set; } = 6;
}
