using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Kaiyuan.Extensions.AI;

/// <summary>
/// Registers an in-process model with dependency injection. The model is one singleton <see cref="KaiyuanModel"/>,
/// loaded on first use and disposed with the container; the chat client and the embedding generator registered here
/// share it, and the returned builders add middleware (<c>UseFunctionInvocation()</c>, <c>UseOpenTelemetry()</c>, …).
/// </summary>
public static class KaiyuanServiceCollectionExtensions
{
    /// <summary>Registers <see cref="IChatClient"/> over the model <paramref name="configure"/> describes.</summary>
    public static ChatClientBuilder AddKaiyuanChatClient(this IServiceCollection services, Action<KaiyuanModelOptions> configure)
    {
        AddKaiyuanModel(services, configure);
        return services.AddChatClient(sp => new KaiyuanChatClient(sp.GetRequiredService<KaiyuanModel>()));
    }

    /// <summary>Registers <see cref="IChatClient"/> over the model a configuration section describes (<see cref="KaiyuanModelOptions"/>'s properties).</summary>
    public static ChatClientBuilder AddKaiyuanChatClient(this IServiceCollection services, IConfiguration configuration) =>
        services.AddKaiyuanChatClient(configuration.Bind);

    /// <summary>Registers <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over the model <paramref name="configure"/> describes.</summary>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddKaiyuanEmbeddingGenerator(this IServiceCollection services, Action<KaiyuanModelOptions> configure)
    {
        AddKaiyuanModel(services, configure);
        return services.AddEmbeddingGenerator(sp => new KaiyuanEmbeddingGenerator(sp.GetRequiredService<KaiyuanModel>()));
    }

    /// <summary>Registers <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over the model a configuration section describes.</summary>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddKaiyuanEmbeddingGenerator(this IServiceCollection services, IConfiguration configuration) =>
        services.AddKaiyuanEmbeddingGenerator(configuration.Bind);

    /// <summary>
    /// The shared model: the first registration's options load it (a chat client and an embedding generator registered
    /// with the same options share one copy of the weights).
    /// </summary>
    private static void AddKaiyuanModel(IServiceCollection services, Action<KaiyuanModelOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new KaiyuanModelOptions();
        configure(options);
        services.TryAddSingleton(_ => KaiyuanModel.Load(options));
    }
}
