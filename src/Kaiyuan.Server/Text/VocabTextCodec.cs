using System.Text;
using Kaiyuan.Gguf;

namespace Kaiyuan.Server.Text;

/// <summary>
/// A self-contained codec built from the GGUF vocabulary (<c>tokenizer.ggml.*</c>): decoding is exact; encoding matches
/// the longest vocabulary piece at each position (SentencePiece <c>▁</c> spaces or GPT-2 byte-level pieces, with byte
/// fallback), which gives valid prompts but not always the ids the model's own BPE merges would choose.
/// </summary>
public sealed class VocabTextCodec : ITextCodec
{
    private static readonly string[] EndMarkers = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>", "</s>"];
    private readonly string[] _tokens;
    private readonly int[] _types;
    private readonly bool _byteLevel;
    private readonly bool _addBos, _addSpacePrefix;
    private readonly Dictionary<string, int> _normal = new(StringComparer.Ordinal);
    private readonly List<(string Text, int Id)> _special = [];
    private readonly int[] _byteTokens = new int[256];
    private readonly HashSet<int> _endOfGeneration = [];
    private readonly byte[][] _pieces;
    private readonly int _maxPieceLength;
    private readonly int _unknown;

    public VocabTextCodec(GgufMetadata metadata)
    {
        _tokens = metadata.GetStringArray("tokenizer.ggml.tokens");
        _types = metadata.GetArrayOrNull("tokenizer.ggml.token_type") is { } t ? ToInts(t.Items) : new int[_tokens.Length];
        string model = metadata.GetStringOrNull("tokenizer.ggml.model") ?? "llama";
        _byteLevel = model != "llama";
        _addBos = metadata.GetBool("tokenizer.ggml.add_bos_token", !_byteLevel);
        _addSpacePrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix", !_byteLevel);
        BosId = (int)metadata.GetInteger("tokenizer.ggml.bos_token_id", -1);
        EosId = (int)metadata.GetInteger("tokenizer.ggml.eos_token_id", -1);
        _unknown = (int)metadata.GetInteger("tokenizer.ggml.unknown_token_id", -1);
        Array.Fill(_byteTokens, -1);
        _pieces = new byte[_tokens.Length][];
        for (int id = 0; id < _tokens.Length; id++)
        {
            string text = _tokens[id];
            int type = id < _types.Length ? _types[id] : 1;
            if (type == 6 && text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal))
            {
                int b = Convert.ToInt32(text[3..5], 16);
                _byteTokens[b] = id;
                _pieces[id] = [(byte)b];
            }
            else if (type is 3 or 4)
            {
                if (text.Length > 0) _special.Add((text, id));
                _pieces[id] = Encoding.UTF8.GetBytes(text);
            }
            else
            {
                _normal.TryAdd(text, id);
                _maxPieceLength = Math.Max(_maxPieceLength, text.Length);
                _pieces[id] = _byteLevel ? ByteLevel.ToBytes(text) : Encoding.UTF8.GetBytes(text.Replace('▁', ' '));
            }
            if (EndMarkers.Contains(text) && type != 1) _endOfGeneration.Add(id);
        }
        _special.Sort((a, b) => b.Text.Length.CompareTo(a.Text.Length));
        foreach (var key in new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" })
            if (metadata.GetInteger(key, -1) is var id and >= 0) _endOfGeneration.Add((int)id);
    }

    public int BosId { get; }
    public int EosId { get; }

    public int[] Encode(string text, bool addSpecial, bool parseSpecial)
    {
        var ids = new List<int>();
        if (addSpecial && _addBos && BosId >= 0) ids.Add(BosId);
        int start = 0;
        bool first = true;
        for (int i = 0; i < text.Length && parseSpecial;)
        {
            var match = _special.FirstOrDefault(s => string.CompareOrdinal(text, i, s.Text, 0, s.Text.Length) == 0);
            if (match.Text is null) { i++; continue; }
            if (i > start) EncodePlain(text[start..i], first, ids);
            ids.Add(match.Id);
            first = false;
            i += match.Text.Length;
            start = i;
        }
        if (start < text.Length) EncodePlain(text[start..], first, ids);
        return [.. ids];
    }

    private void EncodePlain(string text, bool first, List<int> ids)
    {
        string s = _byteLevel
            ? ByteLevel.FromBytes(Encoding.UTF8.GetBytes(text))
            : ((first && _addSpacePrefix ? " " : "") + text).Replace(' ', '▁');
        for (int i = 0; i < s.Length;)
        {
            int found = -1, length = 0;
            for (int len = Math.Min(_maxPieceLength, s.Length - i); len > 0; len--)
                if (_normal.TryGetValue(s.Substring(i, len), out found)) { length = len; break; }
            if (length > 0)
            {
                ids.Add(found);
                i += length;
                continue;
            }
            // Byte fallback for a character no piece covers.
            int charLength = char.IsSurrogatePair(s, i) ? 2 : 1;
            foreach (byte b in Encoding.UTF8.GetBytes(s.Substring(i, charLength).Replace('▁', ' ')))
                if (_byteTokens[b] >= 0) ids.Add(_byteTokens[b]);
                else if (_unknown >= 0) ids.Add(_unknown);
            i += charLength;
        }
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids) bytes.AddRange(Piece(id));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private byte[] Piece(int id) => (uint)id < (uint)_pieces.Length && !IsControl(id) ? _pieces[id] : [];

    private bool IsControl(int id) => id < _types.Length && _types[id] == 3;

    public bool IsEndOfGeneration(int id) => _endOfGeneration.Contains(id);

    public string TokenText(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : "";

    public byte[] TokenBytes(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : [];

    public IStreamingTextDecoder CreateStreamingDecoder() => new StreamingDecoder(this);

    private static int[] ToInts(Array items)
    {
        var result = new int[items.Length];
        for (int i = 0; i < items.Length; i++) result[i] = Convert.ToInt32(items.GetValue(i), System.Globalization.CultureInfo.InvariantCulture);
        return result;
    }

    private sealed class StreamingDecoder(VocabTextCodec codec) : IStreamingTextDecoder
    {
        private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder();
        private char[] _chars = new char[64];

        public string Append(int id) => Convert(codec.Piece(id), flush: false);

        public string Flush() => Convert([], flush: true);

        private string Convert(byte[] bytes, bool flush)
        {
            int need = _utf8.GetCharCount(bytes, flush);
            if (_chars.Length < need) _chars = new char[need * 2];
            int n = _utf8.GetChars(bytes, 0, bytes.Length, _chars, 0, flush);
            return new string(_chars, 0, n);
        }
    }

    /// <summary>GPT-2's reversible map between bytes and printable characters.</summary>
    private static class ByteLevel
    {
        private static readonly char[] ByteToChar = Build();
        private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

        private static char[] Build()
        {
            var map = new char[256];
            int extra = 0;
            for (int b = 0; b < 256; b++)
            {
                bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
                map[b] = printable ? (char)b : (char)(256 + extra++);
            }
            return map;
        }

        public static string FromBytes(byte[] bytes) => new(bytes.Select(b => ByteToChar[b]).ToArray());

        public static byte[] ToBytes(string text)
        {
            var result = new List<byte>(text.Length);
            foreach (char c in text)
                if (CharToByte.TryGetValue(c, out byte b)) result.Add(b);
                else result.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
            return [.. result];
        }
    }
}
