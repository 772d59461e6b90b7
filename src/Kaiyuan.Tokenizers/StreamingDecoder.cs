using System.Text;

namespace Kaiyuan.Tokenizers;

/// <summary>
/// Turns generated tokens into text as they arrive. A token can end in the middle of a UTF-8 character (byte-fallback
/// and byte-level tokens do), so the incomplete tail is held back until a later token completes it; bytes that can
/// no longer form a character come out as U+FFFD. Pieces are emitted as llama.cpp's <c>token_to_piece</c> gives them,
/// leading spaces included (a continuation needs them).
/// </summary>
public sealed class StreamingDecoder
{
    private readonly Vocabulary _vocab;
    private readonly bool _renderSpecial;
    private readonly IReadOnlySet<int>? _preserved;
    private byte[] _pending = new byte[64];
    private int _count;

    /// <param name="vocab">The vocabulary whose pieces the tokens are decoded into.</param>
    /// <param name="renderSpecial">Whether CONTROL and UNKNOWN tokens are rendered as their text (otherwise they give nothing).</param>
    /// <param name="preserved">Control tokens rendered even when others are not (a chat format's markers).</param>
    internal StreamingDecoder(Vocabulary vocab, bool renderSpecial, IReadOnlySet<int>? preserved = null)
    {
        _vocab = vocab;
        _renderSpecial = renderSpecial;
        _preserved = preserved;
    }

    /// <summary>Adds a token; returns the text that is now complete (possibly empty).</summary>
    public string Append(int id)
    {
        var piece = _vocab.Piece(id, _renderSpecial || _preserved?.Contains(id) == true);
        if (_count + piece.Length > _pending.Length) Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _count + piece.Length));
        piece.CopyTo(_pending.AsSpan(_count));
        _count += piece.Length;

        int complete = _count - IncompleteTailLength(_pending.AsSpan(0, _count));
        if (complete == 0) return "";
        string text = Encoding.UTF8.GetString(_pending, 0, complete);
        _pending.AsSpan(complete, _count - complete).CopyTo(_pending);
        _count -= complete;
        return text;
    }

    /// <summary>Returns whatever is held back (an unfinished character becomes U+FFFD) and resets the decoder.</summary>
    public string Flush()
    {
        string text = Encoding.UTF8.GetString(_pending, 0, _count);
        _count = 0;
        return text;
    }

    /// <summary>How many trailing bytes are the valid start of a character that later bytes could still complete.</summary>
    internal static int IncompleteTailLength(ReadOnlySpan<byte> bytes)
    {
        for (int back = 1; back <= 3 && back <= bytes.Length; back++)
        {
            byte b = bytes[^back];
            if ((b & 0xC0) == 0x80) continue; // continuation byte: keep looking for the lead
            int need = b switch
            {
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 0,
            };
            if (need <= back) return 0;
            // The second byte has a narrower range for some leads (no overlongs, surrogates or values past U+10FFFF).
            if (back >= 2)
            {
                byte second = bytes[^(back - 1)];
                bool ok = b switch
                {
                    0xE0 => second >= 0xA0,
                    0xED => second <= 0x9F,
                    0xF0 => second >= 0x90,
                    0xF4 => second <= 0x8F,
                    _ => true,
                };
                if (!ok) return 0;
            }
            return back;
        }
        return 0;
    }
}
