using System.Net;
using System.Net.Sockets;

namespace Kaiyuan.Tests;

/// <summary>Starts an <see cref="HttpListener"/> on a free 127.0.0.1 port.</summary>
/// <remarks>
/// A port the system handed out and took back can be given to another test's outgoing connection before the listener
/// binds it (client sockets draw from the same ephemeral range), so a bind that finds it taken tries a fresh port
/// instead of failing the test (CI: FakeHub, "Address already in use").
/// </remarks>
internal static class LoopbackListener
{
    public static (HttpListener Listener, string Url) Start()
    {
        for (int attempt = 1; ; attempt++)
        {
            int port;
            using (var probe = new TcpListener(IPAddress.Loopback, 0))
            {
                probe.Start();
                port = ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            string url = $"http://127.0.0.1:{port}";
            var listener = new HttpListener();
            listener.Prefixes.Add(url + "/");
            try
            {
                listener.Start();
                return (listener, url);
            }
            catch (HttpListenerException) when (attempt < 20)
            {
                listener.Close();
            }
        }
    }
}
