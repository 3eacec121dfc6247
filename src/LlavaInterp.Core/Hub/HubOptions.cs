using System.Globalization;

namespace LlavaInterp.Hub;

/// <summary>
/// Settings of a <see cref="HubClient"/>: where the cache lives, which server to ask, the access token and offline mode.
/// <see cref="FromEnvironment"/> reads them the way Python's <c>huggingface_hub</c> does, so both share one cache.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The public Hugging Face Hub.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>The cache folder holding <c>models--{owner}--{name}</c> folders. Default: <c>~/.cache/huggingface/hub</c>.</summary>
    public string CacheDir { get; init; } = Path.Combine(HomeFolder(null), ".cache", "huggingface", "hub");

    /// <summary>The server base address, without a trailing slash. Default: <see cref="DefaultEndpoint"/>.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>The access token sent as <c>Authorization: Bearer</c>, or <see langword="null"/> for anonymous access.</summary>
    public string? Token { get; init; }

    /// <summary>When <see langword="true"/> the client never touches the network and resolves files from the cache only.</summary>
    public bool Offline { get; init; }

    /// <summary>
    /// The longest wait for an answer's headers, or for the next piece of a body, before the request fails. Default 10 s
    /// (huggingface_hub's <c>HF_HUB_ETAG_TIMEOUT</c> / <c>HF_HUB_DOWNLOAD_TIMEOUT</c>).
    /// </summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// An HTTP client to use instead of the client's own; the caller keeps ownership. It should not follow redirects by
    /// itself (<c>AllowAutoRedirect = false</c>): the Hub sends the commit and ETag headers of large files on a redirect
    /// answer, and the client follows redirects itself.
    /// </summary>
    public HttpClient? HttpClient { get; init; }

    /// <summary>
    /// Reads the settings from environment variables as huggingface_hub does: cache <c>HF_HUB_CACHE</c>, else
    /// <c>HF_HOME/hub</c> (<c>HF_HOME</c> defaults to <c>$XDG_CACHE_HOME/huggingface</c>, else <c>~/.cache/huggingface</c>);
    /// endpoint <c>HF_ENDPOINT</c>; token <c>HF_TOKEN</c>, else the token file (<c>HF_TOKEN_PATH</c>, else
    /// <c>HF_HOME/token</c>); offline when <c>HF_HUB_OFFLINE</c> (or <c>TRANSFORMERS_OFFLINE</c>) is 1/true/yes/on;
    /// timeout from <c>HF_HUB_DOWNLOAD_TIMEOUT</c> / <c>HF_HUB_ETAG_TIMEOUT</c> (seconds, the larger wins).
    /// </summary>
    /// <param name="getEnvironmentVariable">Looks up a variable (null when unset); defaults to the process environment.</param>
    /// <returns>The options.</returns>
    public static HubOptions FromEnvironment(Func<string, string?>? getEnvironmentVariable = null)
    {
        var env = getEnvironmentVariable ?? Environment.GetEnvironmentVariable;
        string home = HomeFolder(env);
        string Expand(string p) => p == "~" ? home
            : p.StartsWith("~/", StringComparison.Ordinal) || p.StartsWith("~\\", StringComparison.Ordinal) ? Path.Combine(home, p[2..])
            : p;

        string hfHome = Expand(NonEmpty(env("HF_HOME"))
            ?? Path.Combine(NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache"), "huggingface"));
        string cache = Expand(NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(hfHome, "hub"));
        string endpoint = (NonEmpty(env("HF_ENDPOINT")) ?? DefaultEndpoint).TrimEnd('/');
        string? token = NonEmpty(env("HF_TOKEN")) ?? NonEmpty(env("HUGGING_FACE_HUB_TOKEN"))
            ?? ReadTokenFile(Expand(NonEmpty(env("HF_TOKEN_PATH")) ?? Path.Combine(hfHome, "token")));
        // huggingface_hub reads TRANSFORMERS_OFFLINE only when HF_HUB_OFFLINE is unset.
        bool offline = IsTrue(NonEmpty(env("HF_HUB_OFFLINE")) ?? env("TRANSFORMERS_OFFLINE"));
        double seconds = Math.Max(Seconds(env("HF_HUB_DOWNLOAD_TIMEOUT")) ?? 10, Seconds(env("HF_HUB_ETAG_TIMEOUT")) ?? 10);

        return new HubOptions
        {
            CacheDir = cache,
            Endpoint = endpoint,
            Token = token,
            Offline = offline,
            Timeout = TimeSpan.FromSeconds(seconds),
        };
    }

    /// <summary>Whether an environment value means "on" for huggingface_hub: 1, true, yes or on, in any case.</summary>
    /// <param name="value">The value, possibly null.</param>
    /// <returns><see langword="true"/> for a truthy value.</returns>
    public static bool IsTrue(string? value) =>
        value?.Trim().ToUpperInvariant() is "1" or "TRUE" or "YES" or "ON";

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    private static double? Seconds(string? s) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0 ? v : null;

    private static string HomeFolder(Func<string, string?>? env) =>
        NonEmpty(env?.Invoke("HOME")) ?? NonEmpty(env?.Invoke("USERPROFILE")) ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    private static string? ReadTokenFile(string path)
    {
        try
        {
            return File.Exists(path) ? NonEmpty(File.ReadAllText(path)) : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
