using System.Text;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Samples.Rag;

/// <summary>A piece of a document with its embedding.</summary>
public sealed record Chunk(string File, string Text, ReadOnlyMemory<float> Vector);

/// <summary>A chunk that matched a question, with its cosine similarity to the question.</summary>
public sealed record Hit(Chunk Chunk, float Score);

/// <summary>
/// Retrieval-augmented generation in three steps: embed every chunk of every .txt file in a folder, find the chunks
/// nearest a question (cosine similarity, top k), and let the chat model answer from them, citing the files.
/// </summary>
public static class RagAnswerer
{
    /// <summary>Splits text into chunks of at most <paramref name="maxChars"/> characters, at paragraph and then word boundaries.</summary>
    public static List<string> Split(string text, int maxChars)
    {
        List<string> chunks = [];
        var current = new StringBuilder();
        foreach (string paragraph in text.Split(["\r\n\r\n", "\n\n"], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            foreach (string word in paragraph.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            {
                if (current.Length > 0 && current.Length + 1 + word.Length > maxChars) Flush();
                if (current.Length > 0) current.Append(' ');
                current.Append(word);
            }
            Flush(); // a chunk never spans two paragraphs
        }
        return chunks;

        void Flush()
        {
            if (current.Length > 0) chunks.Add(current.ToString());
            current.Clear();
        }
    }

    /// <summary>Embeds every chunk of every .txt file in <paramref name="folder"/>.</summary>
    public static async Task<List<Chunk>> IndexAsync(IEmbeddingGenerator<string, Embedding<float>> embeddings, string folder,
        int chunkChars = 1000, CancellationToken cancellationToken = default)
    {
        List<Chunk> index = [];
        foreach (string path in Directory.EnumerateFiles(folder, "*.txt").Order(StringComparer.Ordinal))
        {
            List<string> pieces = Split(await File.ReadAllTextAsync(path, cancellationToken), chunkChars);
            if (pieces.Count == 0) continue;
            // One call per file: the generator embeds the pieces together.
            var vectors = await embeddings.GenerateAsync(pieces, cancellationToken: cancellationToken);
            for (int i = 0; i < pieces.Count; i++) index.Add(new Chunk(Path.GetFileName(path), pieces[i], vectors[i].Vector));
        }
        return index;
    }

    /// <summary>The <paramref name="topK"/> chunks most similar to <paramref name="question"/>, best first.</summary>
    public static async Task<List<Hit>> SearchAsync(IEmbeddingGenerator<string, Embedding<float>> embeddings, IReadOnlyList<Chunk> index,
        string question, int topK, CancellationToken cancellationToken = default)
    {
        // GenerateVectorAsync: MEAI's shortcut for embedding one string.
        ReadOnlyMemory<float> query = await embeddings.GenerateVectorAsync(question, cancellationToken: cancellationToken);
        return index.Select(chunk => new Hit(chunk, Cosine(query.Span, chunk.Vector.Span)))
            .OrderByDescending(hit => hit.Score)
            .Take(topK)
            .ToList();
    }

    /// <summary>
    /// Answers <paramref name="question"/> from the .txt files in <paramref name="folder"/>: prints the answer, then the
    /// sources it was given. Returns the sources, best first.
    /// </summary>
    public static async Task<List<Hit>> AnswerAsync(IChatClient chat, IEmbeddingGenerator<string, Embedding<float>> embeddings,
        string folder, string question, TextWriter output, int topK = 3, int chunkChars = 1000,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var index = await IndexAsync(embeddings, folder, chunkChars, cancellationToken);
        var hits = await SearchAsync(embeddings, index, question, topK, cancellationToken);

        // The retrieved chunks go into the prompt, each under its file's name for the model to cite.
        var sources = new StringBuilder();
        foreach (var hit in hits) sources.Append($"[{hit.Chunk.File}]\n{hit.Chunk.Text}\n\n");
        List<ChatMessage> messages =
        [
            new(ChatRole.System,
                "Answer the question using only the sources below, and cite each source you use by its name in brackets, " +
                "like [notes.txt]. If the sources do not say, answer that you do not know.\n\n" + sources),
            new(ChatRole.User, question),
        ];
        await foreach (var update in chat.GetStreamingResponseAsync(messages, options, cancellationToken))
            await output.WriteAsync(update.Text);
        await output.WriteLineAsync();

        await output.WriteLineAsync("Sources:");
        foreach (var hit in hits) await output.WriteLineAsync($"  {hit.Chunk.File} (similarity {hit.Score:F3})");
        return hits;
    }

    /// <summary>The cosine of the angle between two vectors: 1 for the same direction.</summary>
    public static float Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float dot = 0, normA = 0, normB = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += a[i] * b[i];
            normA += a[i] * a[i];
            normB += b[i] * b[i];
        }
        return dot / (MathF.Sqrt(normA) * MathF.Sqrt(normB));
    }
}
