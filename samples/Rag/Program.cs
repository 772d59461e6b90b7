using Kaiyuan.Extensions.AI;
using Kaiyuan.Samples.Rag;

if (args.Length is < 3 or > 4)
{
    Console.Error.WriteLine("usage: Rag CHAT_MODEL EMBEDDING_MODEL FOLDER [QUESTION]   (models: .gguf paths or store references; '-' for the chat model's own embeddings)");
    return 2;
}
string folder = args[2];
string question = args.Length == 4 ? args[3] : "What do these documents say?";

// Any model gives embeddings (its pooled hidden states); a dedicated embedding model (Qwen3-Embedding) ranks better.
using var chatModel = KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[0] });
using var embeddingModel = args[1] == "-" ? null : KaiyuanModel.Load(new KaiyuanModelOptions { Model = args[1] });

await RagAnswerer.AnswerAsync(chatModel.AsChatClient(), (embeddingModel ?? chatModel).AsEmbeddingGenerator(), folder, question, Console.Out);
return 0;
