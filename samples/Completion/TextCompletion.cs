using Kaiyuan.Inference;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Samples.Completion;

/// <summary>
/// Plain text completion on the runtime's own API, below Microsoft.Extensions.AI: the model and its tokenizer from one
/// GGUF file, a session that holds the sequence's KV cache, a sampler, and the decode loop.
/// </summary>
public static class TextCompletion
{
    /// <summary>The ids that follow <paramref name="prompt"/>, produced one at a time as the loop decodes them.</summary>
    public static IEnumerable<int> Continue(TransformerModel model, Tokenizer tokenizer, IReadOnlyList<int> prompt, int maxTokens,
        SamplerOptions sampling, bool stopAtEndOfGeneration = true)
    {
        var session = new InferenceSession(model, contextLength: Math.Min(model.TrainedContextLength, 4096));
        var options = new GenerationOptions
        {
            MaxTokens = maxTokens,
            IgnoreEndOfGeneration = !stopAtEndOfGeneration,
            IsEndOfGeneration = tokenizer.IsEndOfGeneration,
        };
        foreach (var token in Generator.Generate(session, prompt, new Sampler(sampling), options)) yield return token.Id;
    }

    /// <summary>Completes <paramref name="prompt"/>, writing the text as it is generated; returns the number of tokens.</summary>
    public static int Complete(TransformerModel model, Tokenizer tokenizer, string prompt, int maxTokens, SamplerOptions sampling, TextWriter output)
    {
        var ids = tokenizer.Encode(prompt, addSpecial: true, parseSpecial: false);
        // A token may end inside a multi-byte character: the streaming decoder holds such bytes back until they are whole.
        var decoder = tokenizer.CreateStreamingDecoder(renderSpecial: false);
        int count = 0;
        foreach (int id in Continue(model, tokenizer, ids, maxTokens, sampling))
        {
            output.Write(decoder.Append(id));
            output.Flush();
            count++;
        }
        output.Write(decoder.Flush());
        return count;
    }
}
