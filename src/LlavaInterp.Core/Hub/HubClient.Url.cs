namespace LlavaInterp.Hub;

public sealed partial class HubClient
{
    /// <summary>
    /// Downloads a plain URL that is not a Hub repo file (a dataset bucket, a JSON API) through this client's HTTP stack
    /// (timeouts, redirects, user agent, proxy settings): the body goes to a temporary file beside
    /// <paramref name="destination"/> and is moved into place only when complete. The Hub token is never sent to it
    /// unless the URL is on the Hub endpoint itself.
    /// </summary>
    /// <param name="url">An absolute http(s) URL.</param>
    /// <param name="destination">The file to write (its folder is created).</param>
    /// <param name="missingIsNull">When <see langword="true"/>, a 404 answer returns <see langword="null"/> instead of throwing.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="ct">Cancels the download; a cancelled download leaves no file.</param>
    /// <returns><paramref name="destination"/>, or <see langword="null"/> for a tolerated 404.</returns>
    /// <exception cref="HubOfflineException">Offline mode is on.</exception>
    /// <exception cref="HubException">An HTTP error, network failure or timeout; <see cref="HubException.StatusCode"/> holds the status.</exception>
    public async Task<string?> DownloadUrlAsync(
        Uri url, string destination, bool missingIsNull = false, IProgress<HubDownloadProgress>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        if (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"Expected an absolute http(s) URL, got '{url}'.", nameof(url));
        }

        string where = url.GetLeftPart(UriPartial.Authority);
        if (Options.Offline)
        {
            throw new HubOfflineException(
                $"Offline mode is on (HF_HUB_OFFLINE / HubOptions.Offline) and {url} is not cached at {destination}.", where, url.AbsolutePath, null);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(destination))!);
        string temp = destination + "." + Guid.NewGuid().ToString("N") + ".incomplete";
        try
        {
            Uri current = url;
            for (int hop = 0; ; hop++)
            {
                using var request = NewRequest(HttpMethod.Get, current);
                using var response = await SendAsync(request, ct).ConfigureAwait(false);
                int status = (int)response.StatusCode;
                if (status is >= 300 and < 400 && response.Headers.Location is { } next)
                {
                    current = hop < MaxRedirects
                        ? new Uri(current, next)
                        : throw new HubException($"More than {MaxRedirects} redirects while fetching {url}.", where, url.AbsolutePath, null);
                    continue;
                }

                if (status == 404 && missingIsNull)
                {
                    return null;
                }

                if (!response.IsSuccessStatusCode)
                {
                    throw new HubException($"{url} answered HTTP {status} ({response.ReasonPhrase}).", where, url.AbsolutePath, null, status);
                }

                await CopyBodyAsync(response, temp, 0, response.Content.Headers.ContentLength, url.AbsolutePath, progress, ct).ConfigureAwait(false);
                break;
            }

            File.Move(temp, destination, overwrite: true);
            return destination;
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutException or IOException && !ct.IsCancellationRequested)
        {
            throw new HubException($"Download of {url} failed: {e.Message}", where, url.AbsolutePath, null, null, e);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
