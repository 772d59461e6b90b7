using Kaiyuan.AspNetCore;
using Kaiyuan.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds Kaiyuan's models to an ASP.NET Core app; map its endpoints with <c>app.MapKaiyuanEndpoints()</c> and friends.</summary>
public static class KaiyuanServiceCollectionExtensions
{
    /// <summary>
    /// Serves GGUF models from this app: the default model loads in the background once the app has started (the
    /// endpoints answer 503 until it is ready, <c>/health</c> tells), new work stops when the app stops, and the models
    /// are freed once it has stopped.
    /// </summary>
    public static IServiceCollection AddKaiyuan(this IServiceCollection services, Action<KaiyuanOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new KaiyuanOptions();
        configure(options);
        return services.AddKaiyuan(options.ToServerOptions());
    }

    /// <summary>As <see cref="AddKaiyuan(IServiceCollection, Action{KaiyuanOptions})"/>, with <c>kaiyuan serve</c>'s options (their HTTP settings are not used).</summary>
    internal static IServiceCollection AddKaiyuan(this IServiceCollection services, ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services.AddKaiyuan(options, model => ModelRuntime.Load(options with { ModelPath = model.Path, Alias = model.Name }));
    }

    /// <summary>As <see cref="AddKaiyuan(IServiceCollection, ServerOptions)"/>, with models made by <paramref name="load"/> (tests pass scripted engines).</summary>
    internal static IServiceCollection AddKaiyuan(this IServiceCollection services, ServerOptions options, Func<ServedModel, ModelRuntime> load)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(load);
        if (services.Any(d => d.ServiceType == typeof(ServerState)))
            throw new InvalidOperationException("AddKaiyuan was called twice: one call serves every model (list them in Models)");
        services.AddSingleton(_ => new ServerState(options, load));
        services.AddSingleton<KaiyuanLifetime>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, KaiyuanLifetime>(sp => sp.GetRequiredService<KaiyuanLifetime>()));
        return services;
    }
}
