namespace LlavaInterp.Hub;

/// <summary>
/// Thrown when a file cannot be resolved from the Hugging Face Hub or its local cache: an HTTP error (401/403 for
/// private or gated repositories, 404 for a missing repository, revision or file), a server answer without the
/// headers the cache layout needs, or a download that ended early. The message names the repository, file and revision.
/// </summary>
public class HubException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What went wrong, naming repository, file and revision.</param>
    /// <param name="repoId">The repository id (<c>owner/name</c>).</param>
    /// <param name="filePath">The file inside the repository, when one is concerned.</param>
    /// <param name="revision">The revision asked for, when known.</param>
    /// <param name="statusCode">The HTTP status code, when the error is an HTTP answer.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public HubException(string message, string repoId, string? filePath, string? revision, int? statusCode = null, Exception? inner = null)
        : base(message, inner)
    {
        RepoId = repoId;
        FilePath = filePath;
        Revision = revision;
        StatusCode = statusCode;
    }

    /// <summary>The repository id (<c>owner/name</c>).</summary>
    public string RepoId { get; }

    /// <summary>The file inside the repository, or <see langword="null"/> when the error concerns the repository as a whole.</summary>
    public string? FilePath { get; }

    /// <summary>The revision (branch, tag or commit) asked for, when known.</summary>
    public string? Revision { get; }

    /// <summary>The HTTP status code of the failing answer, or <see langword="null"/> when the error is not an HTTP status.</summary>
    public int? StatusCode { get; }

    /// <summary>A 404 for the file itself (not the repo or revision): optional files may be skipped on it.</summary>
    internal bool IsMissingEntry { get; init; }
}

/// <summary>
/// Thrown in offline mode (<c>HF_HUB_OFFLINE=1</c> or <see cref="HubOptions.Offline"/>) when a file is not in the local
/// cache, so it would have to be downloaded. The message names the repository, file, revision and cache folder.
/// </summary>
public sealed class HubOfflineException : HubException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is missing and where it was looked for.</param>
    /// <param name="repoId">The repository id.</param>
    /// <param name="filePath">The file that is not cached.</param>
    /// <param name="revision">The revision asked for.</param>
    public HubOfflineException(string message, string repoId, string? filePath, string? revision)
        : base(message, repoId, filePath, revision)
    {
    }
}
