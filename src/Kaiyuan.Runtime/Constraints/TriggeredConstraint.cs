using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;
using Kaiyuan.Templates.Parsing;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Constraints;

/// <summary>
/// A constraint that lets every token through until the generated text contains a trigger, then hands what follows to
/// an inner constraint: a schema that applies only after the reasoning block closes (<c>&lt;/think&gt;</c>), or a
/// tool-call grammar that applies once the model opens a call (<c>&lt;tool_call&gt;</c>). Triggers are matched on the
/// tokens' rendered text, special tokens included, across token boundaries. One per sequence; not thread-safe.
/// </summary>
internal sealed class TriggeredConstraint : TokenConstraint
{
    private enum Phase { Undecided, Opening, Waiting, Inner, Dead }

    private static readonly ConditionalWeakTable<Vocabulary, ConcurrentDictionary<string, int[]>> Openers = new();

    private readonly TokenConstraint _inner;
    private readonly Vocabulary _vocabulary;
    private readonly byte[][] _triggers;
    private readonly byte[]? _opening;
    private readonly int _longest;
    private readonly List<byte> _window = [];
    private Phase _phase;
    private int _opened;
    /// <summary>The opening is the only way on (the inner grammar was active); otherwise its start may turn out to be plain text.</summary>
    private bool _strictOpening;

    /// <param name="inner">What applies after the trigger: a <see cref="GrammarMatcher"/> or another triggered constraint.</param>
    /// <param name="vocabulary">The model's vocabulary (token text, end-of-generation tokens).</param>
    /// <param name="triggers">Text any of which starts the inner constraint.</param>
    /// <param name="includeTrigger">The trigger text is the start of the inner constraint's output (a call's opening
    /// marker) rather than a separator before it (a reasoning block's end).</param>
    /// <param name="required">The inner output must come: ending before the trigger is refused (the sequence then
    /// ends as if out of tokens, so a response without it never reads as complete). False for optional tool calls.</param>
    /// <param name="opening">When set, the model may also start by writing this (a reasoning block's opening) instead of
    /// the inner constraint's output, and the trigger is then awaited; otherwise the inner constraint applies at once.</param>
    public TriggeredConstraint(TokenConstraint inner, Vocabulary vocabulary, IReadOnlyList<string> triggers, bool includeTrigger, bool required,
        string? opening = null)
    {
        if (inner is not (GrammarMatcher or TriggeredConstraint)) throw new ArgumentException("the inner constraint must be a grammar or a triggered constraint", nameof(inner));
        if (triggers.Count == 0 || triggers.Any(t => t.Length == 0)) throw new ArgumentException("triggers must be non-empty text", nameof(triggers));
        _inner = inner;
        _vocabulary = vocabulary;
        _triggers = [.. triggers.Select(Encoding.UTF8.GetBytes)];
        _longest = _triggers.Max(t => t.Length);
        IncludeTrigger = includeTrigger;
        Required = required;
        if (opening is { Length: > 0 })
        {
            _opening = Encoding.UTF8.GetBytes(opening);
            _phase = Phase.Undecided;
        }
        else _phase = Phase.Waiting;
    }

    /// <summary>Whether a model whose chat template is <paramref name="template"/> may open a reasoning block of its own: the template knows the family's opening marker.</summary>
    public static bool MayReason(ToolCallFormat? format, string template) =>
        format?.ReasoningStart is { } start && template.Contains(start, StringComparison.Ordinal);

    /// <summary>
    /// <paramref name="answer"/> applied where a chat answer starts: after the reasoning block the rendered prompt left
    /// open (DeepSeek-R1, QwQ), or after one the model may open itself when <paramref name="mayReason"/> (the template
    /// knows the family's markers, as Qwen3's); from the first token otherwise (no markers, or thinking switched off).
    /// </summary>
    /// <param name="answer">The constraint on the answer itself.</param>
    /// <param name="vocabulary">The model's vocabulary, to match the reasoning markers in tokens.</param>
    /// <param name="format">The chat format, whose reasoning markers are looked for; null or without them: no block.</param>
    /// <param name="prompt">The rendered prompt, which may leave a reasoning block open (or hold a closed, empty one).</param>
    /// <param name="mayReason">The model may open a reasoning block of its own.</param>
    /// <param name="required">Ending before the answer is refused (false when the answer itself is optional: lazy calls).</param>
    public static TokenConstraint ForAnswer(TokenConstraint answer, Vocabulary vocabulary, ToolCallFormat? format, string prompt, bool mayReason, bool required = true)
    {
        if (format is not { ReasoningStart: { } start, ReasoningEnd: { } end }) return answer;
        if (ChatOutputParser.PromptOpensReasoning(prompt, format))
            return new TriggeredConstraint(answer, vocabulary, [end], includeTrigger: false, required);
        // A prompt that already holds a closed, empty block has switched thinking off.
        if (mayReason && !prompt.TrimEnd().EndsWith(end, StringComparison.Ordinal))
            return new TriggeredConstraint(answer, vocabulary, [end], includeTrigger: false, required, opening: start);
        return answer;
    }

    public bool IncludeTrigger { get; }
    public bool Required { get; }
    /// <summary>The trigger has been seen (or the model answered without opening the optional block).</summary>
    public bool Triggered => _phase is Phase.Inner or Phase.Dead;

    internal override bool IsActive => _phase switch
    {
        Phase.Undecided => _inner.IsActive,
        Phase.Opening => _strictOpening,
        Phase.Dead => true,
        Phase.Waiting => false,
        _ => _inner.IsActive,
    };

    internal override bool IsAccepting => _phase switch
    {
        Phase.Undecided or Phase.Inner => _inner.IsAccepting,
        Phase.Waiting => !Required,
        _ => false,
    };

    internal override void FillMask(Span<ulong> mask)
    {
        switch (_phase)
        {
            case Phase.Undecided:
                // A grammar writes only its vocabulary's words: clear first, so no bit of an earlier fill survives.
                mask.Clear();
                if (_inner.IsActive) _inner.FillMask(mask);
                else mask.Fill(ulong.MaxValue);
                Allow(mask, Opener(0));
                break;
            case Phase.Opening when _strictOpening:
                mask.Clear();
                Allow(mask, Opener(_opened));
                break;
            case Phase.Opening or Phase.Waiting:
                mask.Fill(ulong.MaxValue);
                break;
            case Phase.Inner:
                mask.Clear();
                _inner.FillMask(mask);
                break;
            default:
                mask.Clear();
                break;
        }
    }

    internal override bool Accept(int token)
    {
        switch (_phase)
        {
            case Phase.Undecided:
                {
                    var text = Piece(token);
                    // The inner output wins a token both could start (a grammar may itself begin with the opening).
                    if (Continues(text, 0) && !(_inner is GrammarMatcher m && m.Grammar.CreateMatcher().Accept(token)))
                    {
                        _strictOpening = _inner.IsActive;
                        _phase = Phase.Opening;
                        return Open(text);
                    }
                    if (!_inner.Accept(token)) return false;
                    _phase = Phase.Inner;
                    return true;
                }
            case Phase.Opening:
                {
                    var text = Piece(token);
                    if (Continues(text, _opened)) return Open(text);
                    if (_strictOpening) return false;
                    // Not the opening after all ("<" then "tool_call>"): what looked like its start is the inner's text.
                    _phase = Phase.Inner;
                    if (!Feed(_inner, _opening.AsSpan(0, _opened))) _phase = Phase.Dead;
                    return _phase == Phase.Dead || _inner.Accept(token);
                }
            case Phase.Waiting:
                if (_vocabulary.IsEndOfGeneration(token)) return !Required;
                Scan(Piece(token));
                return true;
            case Phase.Inner:
                return _inner.Accept(token);
            default:
                return false;
        }
    }

    private static void Allow(Span<ulong> mask, int[] ids)
    {
        foreach (int id in ids)
            if ((id >> 6) < mask.Length) mask[id >> 6] |= 1UL << id;
    }

    /// <summary>Takes text generated while waiting (a nested constraint gets the text after its parent's trigger).</summary>
    private void Scan(ReadOnlySpan<byte> text)
    {
        if (_phase == Phase.Inner)
        {
            if (!Feed(_inner, text)) _phase = Phase.Dead;
            return;
        }
        if (_phase != Phase.Waiting) return;
        foreach (byte b in text) _window.Add(b);
        var window = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window);
        int at = -1, length = 0;
        foreach (var trigger in _triggers)
        {
            int i = window.IndexOf(trigger);
            if (i >= 0 && (at < 0 || i < at)) (at, length) = (i, trigger.Length);
        }
        if (at < 0)
        {
            // Keep only what could still be the start of a trigger.
            if (_window.Count >= _longest) _window.RemoveRange(0, _window.Count - (_longest - 1));
            return;
        }
        var tail = window[(IncludeTrigger ? at : at + length)..].ToArray();
        _window.Clear();
        _phase = Phase.Inner;
        if (!IncludeTrigger) tail = SkipRefusedWhitespace(tail);
        if (tail.Length > 0 && !Feed(_inner, tail)) _phase = Phase.Dead;
    }

    /// <summary>Whitespace right after a separator (the blank line after <c>&lt;/think&gt;</c>) is dropped when the inner
    /// grammar would refuse it; the chat parser trims it from the answer anyway.</summary>
    private byte[] SkipRefusedWhitespace(byte[] tail)
    {
        if (_inner is not GrammarMatcher m) return tail;
        int skip = 0;
        while (skip < tail.Length && tail[skip] is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r') skip++;
        if (skip == 0) return tail;
        var probe = m.Grammar.CreateMatcher();
        return probe.AcceptBytes(tail) ? tail : tail[skip..];
    }

    private static bool Feed(TokenConstraint inner, ReadOnlySpan<byte> text)
    {
        if (inner is GrammarMatcher m) return m.AcceptBytes(text);
        var t = (TriggeredConstraint)inner;
        t.Scan(text);
        return t._phase != Phase.Dead;
    }

    /// <summary>Advances through the opening with a token's text; the opening complete, anything after it is reasoning.</summary>
    private bool Open(ReadOnlySpan<byte> text)
    {
        int rest = _opening!.Length - _opened;
        if (text.Length < rest)
        {
            _opened += text.Length;
            return true;
        }
        _phase = Phase.Waiting;
        Scan(text[rest..]);
        return true;
    }

    /// <summary>The token's text continues the opening from <paramref name="from"/>: a prefix of what is left, or all of it and more.</summary>
    private bool Continues(ReadOnlySpan<byte> text, int from)
    {
        if (text.IsEmpty) return false;
        var rest = _opening.AsSpan(from);
        return rest.StartsWith(text) || text.StartsWith(rest);
    }

    /// <summary>Tokens that continue the opening from <paramref name="from"/> (cached per vocabulary: a scan of every token).</summary>
    private int[] Opener(int from)
    {
        var table = Openers.GetValue(_vocabulary, _ => new ConcurrentDictionary<string, int[]>(StringComparer.Ordinal));
        string key = Convert.ToHexString(_opening.AsSpan(from));
        return table.GetOrAdd(key, _ =>
        {
            var ids = new List<int>();
            for (int id = 0; id < _vocabulary.Count; id++)
                if (!_vocabulary.IsEndOfGeneration(id) && Continues(_vocabulary.Piece(id, renderSpecial: true), from)) ids.Add(id);
            return [.. ids];
        });
    }

    private ReadOnlySpan<byte> Piece(int token) => (uint)token < (uint)_vocabulary.Count ? _vocabulary.Piece(token, renderSpecial: true) : [];
}
