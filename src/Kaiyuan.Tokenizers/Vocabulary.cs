using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Tokenizers;

/// <summary>How token texts are stored, which decides how a token becomes output bytes.</summary>
internal enum VocabularyKind
{
    /// <summary>SentencePiece: <c>▁</c> stands for a space, <c>&lt;0xNN&gt;</c> tokens are raw bytes.</summary>
    SentencePiece,
    /// <summary>Byte-level BPE: every byte is written as one printable character (GPT-2's byte-to-unicode map).</summary>
    BytePairEncoding,
    /// <summary>BERT WordPiece: texts are plain, continuation pieces start with <c>##</c>.</summary>
    WordPiece,
}

/// <summary>
/// The token table of a GGUF vocabulary with llama.cpp's load-time rules applied: default special ids per model,
/// control-looking tokens promoted to CONTROL, the end-of-generation set, and the special-token match order.
/// </summary>
internal sealed class Vocabulary
{
    private readonly string[] _texts;
    private readonly float[] _scores;
    private readonly TokenAttributes[] _attrs;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idsBySpan;
    private readonly HashSet<int> _eog = [];
    private Lazy<(byte[] Data, int[] Start)> _pieces = null!;

    public VocabularyKind Kind { get; }
    public int Count => _texts.Length;
    public int BosId { get; private set; }
    public int EosId { get; private set; }
    public int EotId { get; private set; } = -1;
    public int EomId { get; private set; } = -1;
    public int UnkId { get; private set; }
    public int SepId { get; private set; } = -1;
    public int PadId { get; private set; } = -1;
    public int MaskId { get; private set; } = -1;
    public int FimPreId { get; private set; } = -1;
    public int FimSufId { get; private set; } = -1;
    public int FimMidId { get; private set; } = -1;
    public int FimPadId { get; private set; } = -1;
    public int FimRepId { get; private set; } = -1;
    public int FimSepId { get; private set; } = -1;
    public bool AddBos { get; internal set; }
    public bool AddEos { get; internal set; }
    public bool AddSep { get; internal set; }
    public bool AddSpacePrefix { get; internal set; }
    public bool CleanSpaces { get; internal set; }
    private int _maxTokenLength = -1;

    /// <summary>The longest token text in UTF-8 bytes.</summary>
    public int MaxTokenLength => _maxTokenLength >= 0 ? _maxTokenLength : _maxTokenLength = _texts.Max(Encoding.UTF8.GetByteCount);

    /// <summary>CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first: the order llama.cpp splits them out of text.</summary>
    public IReadOnlyList<int> SpecialTokens { get; private set; } = [];

    public IReadOnlySet<int> EndOfGenerationIds => _eog;

    internal Vocabulary(GgufMetadata metadata, VocabularyKind kind)
    {
        Kind = kind;
        _texts = metadata.GetStringArray("tokenizer.ggml.tokens");
        int n = _texts.Length;
        if (n == 0) throw new GgufMetadataException("tokenizer.ggml.tokens is empty");
        _scores = metadata.Contains("tokenizer.ggml.scores") ? ReadScores(metadata, n) : new float[n];
        _attrs = new TokenAttributes[n];
        int[]? types = !metadata.Contains("tokenizer.ggml.token_type") ? null
            : metadata.GetArray("tokenizer.ggml.token_type").Items as int[] ?? metadata.GetInt32Array("tokenizer.ggml.token_type");
        if (types is not null && types.Length < n)
            throw new GgufMetadataException($"tokenizer.ggml.token_type has {types.Length} entries for {n} tokens");

        _ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            // llama.cpp renames empty tokens so that every text maps back to one id.
            if (_texts[i].Length == 0) _texts[i] = $"[EMPTY_{i}]";
            if (!_ids.TryAdd(_texts[i], i))
                throw new GgufMetadataException($"duplicate token in vocabulary: '{_texts[i]}' has ids {_ids[_texts[i]]} and {i}");
            _attrs[i] = types is null ? TokenAttributes.Normal : (TokenType)types[i] switch
            {
                TokenType.Unknown => TokenAttributes.Unknown,
                TokenType.Unused => TokenAttributes.Unused,
                TokenType.Normal => TokenAttributes.Normal,
                TokenType.Control => TokenAttributes.Control,
                TokenType.UserDefined => TokenAttributes.UserDefined,
                TokenType.Byte => TokenAttributes.Byte,
                _ => TokenAttributes.Undefined,
            };
        }
        _idsBySpan = _ids.GetAlternateLookup<ReadOnlySpan<char>>();

        (BosId, EosId, UnkId) = kind switch
        {
            VocabularyKind.SentencePiece => (1, 2, 0),
            VocabularyKind.WordPiece => (101, -1, 100),
            _ => (11, 11, -1),
        };
        if (kind == VocabularyKind.WordPiece) (SepId, PadId, MaskId) = (102, 0, 103);
    }

    private static float[] ReadScores(GgufMetadata metadata, int n)
    {
        var array = metadata.GetArray("tokenizer.ggml.scores");
        float[] scores = array.Items switch
        {
            float[] f => f,
            int[] i => Array.ConvertAll(i, v => (float)v),
            _ => throw new GgufMetadataException($"tokenizer.ggml.scores is an array of {array.ElementType}, expected float32 or int32"),
        };
        if (scores.Length < n) throw new GgufMetadataException($"tokenizer.ggml.scores has {scores.Length} entries for {n} tokens");
        return scores;
    }

    /// <summary>Reads the special ids and flags and applies llama.cpp's text-based fix-ups. Call once, after the kind-specific defaults.</summary>
    internal void Finish(GgufMetadata metadata, bool bosDisabledByPre)
    {
        if (bosDisabledByPre) BosId = -1;
        BosId = ReadId(metadata, "tokenizer.ggml.bos_token_id", BosId);
        EosId = ReadId(metadata, "tokenizer.ggml.eos_token_id", EosId);
        EotId = ReadId(metadata, "tokenizer.ggml.eot_token_id", EotId);
        EomId = ReadId(metadata, "tokenizer.ggml.eom_token_id", EomId);
        UnkId = ReadId(metadata, "tokenizer.ggml.unknown_token_id", UnkId);
        SepId = ReadId(metadata, "tokenizer.ggml.seperator_token_id", SepId);
        PadId = ReadId(metadata, "tokenizer.ggml.padding_token_id", PadId);
        MaskId = ReadId(metadata, "tokenizer.ggml.mask_token_id", MaskId);
        FimPreId = ReadId(metadata, "tokenizer.ggml.fim_pre_token_id", ReadId(metadata, "tokenizer.ggml.prefix_token_id", FimPreId));
        FimSufId = ReadId(metadata, "tokenizer.ggml.fim_suf_token_id", ReadId(metadata, "tokenizer.ggml.suffix_token_id", FimSufId));
        FimMidId = ReadId(metadata, "tokenizer.ggml.fim_mid_token_id", ReadId(metadata, "tokenizer.ggml.middle_token_id", FimMidId));
        FimPadId = ReadId(metadata, "tokenizer.ggml.fim_pad_token_id", FimPadId);
        FimRepId = ReadId(metadata, "tokenizer.ggml.fim_rep_token_id", FimRepId);
        FimSepId = ReadId(metadata, "tokenizer.ggml.fim_sep_token_id", FimSepId);

        AddBos = metadata.GetBool("tokenizer.ggml.add_bos_token", AddBos);
        AddEos = metadata.GetBool("tokenizer.ggml.add_eos_token", AddEos);
        AddSep = metadata.GetBool("tokenizer.ggml.add_sep_token", AddSep);
        // llama.cpp turns an "add" off when its token does not exist.
        if (BosId < 0) AddBos = false;
        if (EosId < 0) AddEos = false;
        if (SepId < 0) AddSep = false;

        DetectSpecialTokensByText();
        BuildEndOfGeneration();
        BuildSpecialTokenOrder();
        ApplyModelSpecificAttributes(metadata);
        CheckByteTokens();
        // The piece bytes are only needed for decoding: build them in the background while the merges load. A failure
        // there must not escape on a pool thread (it would end the process): the Lazy keeps it for the first caller.
        _pieces = new Lazy<(byte[], int[])>(BuildPieces, LazyThreadSafetyMode.ExecutionAndPublication);
        ThreadPool.QueueUserWorkItem(static p =>
        {
            try
            {
                _ = p.Value;
            }
            catch (Exception)
            {
                // rethrown by the Lazy to whoever decodes first
            }
        }, _pieces, preferLocal: false);
    }

    /// <summary>An id from metadata; ids outside the vocabulary keep the previous value, and defaults outside it become -1.</summary>
    private int ReadId(GgufMetadata metadata, string key, int fallback)
    {
        if (fallback >= Count) fallback = -1;
        if (!metadata.Contains(key)) return fallback;
        long v = metadata.GetInteger(key);
        return v >= 0 && v < Count ? (int)v : fallback;
    }

    private static readonly string[] EotTexts =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
         "<｜end▁of▁sentence｜>", "<end_of_utterance>"];
    private static readonly string[] FimPreTexts = ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
    private static readonly string[] FimSufTexts = ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
    private static readonly string[] FimMidTexts = ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
    private static readonly string[] FimPadTexts = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
    private static readonly string[] FimRepTexts = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
    private static readonly string[] FimSepTexts = ["<|file_sep|>"];
    private static readonly string[] EogTexts =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
         "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
         "<｜end▁of▁sentence｜>", "[e~["];

    // Converters do not always record EOT/FIM ids, so llama.cpp finds them by text and marks them CONTROL.
    private void DetectSpecialTokensByText()
    {
        EotId = FindByText(EotId, EotTexts);
        EomId = FindByText(EomId, ["<|eom_id|>"]);
        FimPreId = FindByText(FimPreId, FimPreTexts);
        FimSufId = FindByText(FimSufId, FimSufTexts);
        FimMidId = FindByText(FimMidId, FimMidTexts);
        FimPadId = FindByText(FimPadId, FimPadTexts);
        FimRepId = FindByText(FimRepId, FimRepTexts);
        FimSepId = FindByText(FimSepId, FimSepTexts);

        for (int i = 0; i < Count; i++)
            if ((_attrs[i] & TokenAttributes.Control) != 0 && (_attrs[i] & TokenAttributes.Unused) == 0 && _texts[i].Contains("unused", StringComparison.Ordinal))
                _attrs[i] |= TokenAttributes.Unused;
    }

    private int FindByText(int current, string[] texts)
    {
        if (current >= 0) return current;
        int found = -1;
        foreach (var t in texts)
            if (_ids.TryGetValue(t, out int id) && (found < 0 || id < found)) found = id;
        if (found >= 0) _attrs[found] |= TokenAttributes.Control;
        return found;
    }

    private void BuildEndOfGeneration()
    {
        foreach (int id in (ReadOnlySpan<int>)[FimPadId, FimRepId, FimSepId]) if (id >= 0) _eog.Add(id);
        foreach (var t in EogTexts)
        {
            if (!_ids.TryGetValue(t, out int id)) continue;
            _eog.Add(id);
            _attrs[id] |= TokenAttributes.Control;
        }
        // gpt-oss renders its channel markers as text.
        foreach (var t in (ReadOnlySpan<string>)["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"])
            if (_ids.TryGetValue(t, out int id)) _attrs[id] = TokenAttributes.UserDefined;
        foreach (int id in (ReadOnlySpan<int>)[EosId, EotId, EomId]) if (id >= 0) _eog.Add(id);

        // o200k_harmony / solar-open: <|end|> ends a message, not the generation.
        bool has(string t) => _ids.TryGetValue(t, out int id) && _eog.Contains(id);
        bool hasCall = has("<|call|>") || has("<|calls|>");
        if (_ids.TryGetValue("<|end|>", out int endId) && _eog.Contains(endId) && hasCall && (has("<|return|>") || has("<|flush|>")))
        {
            _eog.Remove(endId);
            _attrs[endId] = TokenAttributes.UserDefined;
        }
        // gemma4: </s> is ordinary text there.
        if (has("<|tool_response>") && _ids.TryGetValue("</s>", out int sId) && _eog.Remove(sId))
            _attrs[sId] = TokenAttributes.Normal;
    }

    private void BuildSpecialTokenOrder()
    {
        var list = new List<int>();
        for (int i = 0; i < Count; i++)
            if ((_attrs[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0) list.Add(i);
        // Longest first; equal lengths by id so the order is deterministic.
        list.Sort((a, b) =>
        {
            int c = Encoding.UTF8.GetByteCount(_texts[b]).CompareTo(Encoding.UTF8.GetByteCount(_texts[a]));
            return c != 0 ? c : a.CompareTo(b);
        });
        SpecialTokens = list;
    }

    private void ApplyModelSpecificAttributes(GgufMetadata metadata)
    {
        string pre = metadata.GetStringOrNull("tokenizer.ggml.pre") ?? "";
        string arch = metadata.GetStringOrNull("general.architecture") ?? "";
        string name = (metadata.GetStringOrNull("general.name") ?? "").ToLowerInvariant();
        if (pre.Contains("jina-v2-de") || pre.Contains("jina-v2-es") || pre.Contains("jina-v2-code") || arch.Contains("nomic-bert-moe") || arch.Contains("jina-bert-v3"))
        {
            SetAttr("<mask>", TokenAttributes.LStrip, true);
        }
        else if (name.Contains("phi-3") || name.Contains("phi3"))
        {
            foreach (int id in SpecialTokens) _attrs[id] |= TokenAttributes.RStrip;
            SetAttr("</s>", TokenAttributes.RStrip, true);
            foreach (var t in (ReadOnlySpan<string>)["<unk>", "<s>", "<|endoftext|>"]) SetAttr(t, TokenAttributes.RStrip, false);
        }
        else if (name.Contains("modern-bert"))
        {
            SetAttr("[MASK]", TokenAttributes.LStrip, true);
        }
    }

    private void SetAttr(string text, TokenAttributes bit, bool on)
    {
        if (!_ids.TryGetValue(text, out int id)) return;
        _attrs[id] = on ? _attrs[id] | bit : _attrs[id] & ~bit;
    }

    /// <summary>Every token's output bytes (as llama.cpp's piece cache, rendered with specials) in one array.</summary>
    private (byte[] Data, int[] Start) BuildPieces()
    {
        var data = new byte[Count * 8];
        int used = 0;
        var start = new int[Count + 1];
        for (int id = 0; id < Count; id++)
        {
            start[id] = used;
            var attr = _attrs[id];
            string text = _texts[id];
            int worst = text.Length * 3 + 64;
            if (used + worst > data.Length) Array.Resize(ref data, Math.Max(data.Length * 2, used + worst));
            var dest = data.AsSpan(used);
            if ((attr & (TokenAttributes.Unknown | TokenAttributes.Control | TokenAttributes.UserDefined)) != 0)
                used += Encoding.UTF8.GetBytes(text, dest);
            else if ((attr & TokenAttributes.Normal) != 0)
                used += WriteNormalPiece(text, ref data, used);
            else if ((attr & TokenAttributes.Byte) != 0)
                data[used++] = ParseByteToken(text);
        }
        start[Count] = used;
        Array.Resize(ref data, used);
        return (data, start);
    }

    private int WriteNormalPiece(string text, ref byte[] data, int at)
    {
        if (Kind != VocabularyKind.BytePairEncoding)
        {
            // ▁ stands for a space.
            return Encoding.UTF8.GetBytes(text.Contains('▁') ? text.Replace('▁', ' ') : text, data.AsSpan(at));
        }
        int k = at;
        foreach (char c in text)
        {
            int b = ByteLevel.ByteOf(c);
            if (b < 0) return WriteUnmappedPiece(text, ref data, at);
            data[k++] = (byte)b;
        }
        return k - at;
    }

    /// <summary>llama.cpp writes characters outside the byte map visibly instead of dropping them.</summary>
    private static int WriteUnmappedPiece(string text, ref byte[] data, int at)
    {
        var bytes = new List<byte>();
        foreach (var rune in text.EnumerateRunes())
        {
            int b = ByteLevel.ByteOf(rune.Value);
            if (b >= 0) bytes.Add((byte)b);
            else bytes.AddRange(Encoding.UTF8.GetBytes("[UNK_BYTE_0x" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(rune.ToString())) + text + "]"));
        }
        if (at + bytes.Count > data.Length) Array.Resize(ref data, Math.Max(data.Length * 2, at + bytes.Count));
        bytes.CopyTo(data, at);
        return bytes.Count;
    }

    /// <summary>
    /// A byte token's text is <c>&lt;0xHH&gt;</c>; one whose two digits are not hex cannot be decoded, so the file is refused
    /// here, at load, with the token named (llama.cpp fails to load it too).
    /// </summary>
    private void CheckByteTokens()
    {
        for (int id = 0; id < Count; id++)
        {
            if ((_attrs[id] & TokenAttributes.Byte) == 0) continue;
            string text = _texts[id];
            if (text.Length >= 5 && text.StartsWith("<0x", StringComparison.Ordinal) && !(char.IsAsciiHexDigit(text[3]) && char.IsAsciiHexDigit(text[4])))
                throw new GgufMetadataException($"byte token {id} '{text}' is not of the form <0xHH>");
        }
    }

    private static byte ParseByteToken(string text) =>
        text.Length >= 5 && text.StartsWith("<0x", StringComparison.Ordinal)
            ? (byte)(HexValue(text[3]) << 4 | HexValue(text[4]))
            : (byte)0;

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;

    public string Text(int id) => _texts[id];
    public float Score(int id) => _scores[id];
    public TokenAttributes Attributes(int id) => _attrs[id];
    public bool IsControl(int id) => (_attrs[id] & TokenAttributes.Control) != 0;
    public bool IsEndOfGeneration(int id) => _eog.Contains(id);

    /// <summary>The id of a token text, or -1.</summary>
    public int Find(ReadOnlySpan<char> text) => _idsBySpan.TryGetValue(text, out int id) ? id : -1;

    public int Find(string text) => _ids.TryGetValue(text, out int id) ? id : -1;

    /// <summary>The bytes a token adds to output text; CONTROL and UNKNOWN tokens add nothing unless rendered.</summary>
    public ReadOnlySpan<byte> Piece(int id, bool renderSpecial)
    {
        if ((uint)id >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary (0..{Count - 1})");
        if (!renderSpecial && (_attrs[id] & (TokenAttributes.Unknown | TokenAttributes.Control)) != 0) return [];
        var (data, start) = _pieces.Value;
        return data.AsSpan(start[id], start[id + 1] - start[id]);
    }
}
