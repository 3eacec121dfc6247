using System.Text;
using System.Text.RegularExpressions;
using LlavaInterp.IO;

namespace LlavaInterp.Hub;

/// <summary>Validation of repo ids, file paths and revisions, and the cache's and server's naming of them.</summary>
internal static partial class HubNames
{
    public const string DefaultRevision = "main";

    // huggingface_hub's validate_repo_id: optional "namespace/", name of word characters, '-' and '.'.
    [GeneratedRegex(@"^([A-Za-z0-9_.\-]+/)?[A-Za-z0-9_.\-]+$", RegexOptions.CultureInvariant)]
    private static partial Regex RepoIdPattern();

    [GeneratedRegex("^[0-9a-f]{40}$", RegexOptions.CultureInvariant)]
    private static partial Regex CommitPattern();

    /// <summary>Whether <paramref name="repoId"/> is a valid Hub repo id ("name" or "owner/name").</summary>
    public static bool IsValidRepoId(string? repoId)
    {
        if (string.IsNullOrEmpty(repoId) || repoId.Length > 96 || !RepoIdPattern().IsMatch(repoId))
        {
            return false;
        }

        if (repoId.Contains("--", StringComparison.Ordinal) || repoId.Contains("..", StringComparison.Ordinal)
            || repoId.EndsWith(".git", StringComparison.Ordinal))
        {
            return false;
        }

        foreach (string part in repoId.Split('/'))
        {
            if (part[0] is '-' or '.' || part[^1] is '-' or '.')
            {
                return false;
            }
        }

        return true;
    }

    public static void ValidateRepoId(string repoId)
    {
        ArgumentNullException.ThrowIfNull(repoId);
        if (!IsValidRepoId(repoId))
        {
            throw new ArgumentException(
                $"'{repoId}' is not a valid Hugging Face repo id: expected 'owner/name' of letters, digits, '_', '-' and '.' "
                + "(no '--' or '..', at most 96 characters).", nameof(repoId));
        }
    }

    /// <summary>Checks a file path inside a repo: forward slashes, relative, no empty, '.' or '..' segments.</summary>
    public static string[] SplitRepoPath(string path, string paramName)
    {
        ArgumentNullException.ThrowIfNull(path, paramName);
        string[] parts = path.Split('/');
        if (path.Length == 0 || path.Contains('\\') || path.Contains('\0')
            || parts.Any(p => p.Length == 0 || p == "." || p == ".."))
        {
            throw new ArgumentException(
                $"'{path}' is not a valid file path inside a repo: use forward slashes, relative, without empty, '.' or '..' parts.",
                paramName);
        }

        return parts;
    }

    /// <summary>A revision may hold slashes ("refs/pr/1"); it names a file under refs/, so it must not escape.</summary>
    public static string ValidateRevision(string? revision)
    {
        revision ??= DefaultRevision;
        SplitRepoPath(revision, nameof(revision));
        return revision;
    }

    public static bool IsCommitHash(string revision) => CommitPattern().IsMatch(revision);

    /// <summary>Whether a server-supplied name (commit hash, ETag) is safe as a single folder or file name.</summary>
    public static bool IsSafeSegment(string? s) =>
        !string.IsNullOrEmpty(s) && s != "." && s != ".." && s.Length <= 255
        && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    /// <summary>The cache folder name: models--{owner}--{name}.</summary>
    public static string RepoFolderName(string repoId) => "models--" + repoId.Replace("/", "--", StringComparison.Ordinal);

    /// <summary>huggingface_hub strips a weak marker and the quotes from an ETag.</summary>
    public static string? NormalizeEtag(string? etag)
    {
        if (etag is null)
        {
            return null;
        }

        etag = etag.Trim();
        if (etag.StartsWith("W/", StringComparison.Ordinal))
        {
            etag = etag[2..];
        }

        return etag.Trim('"');
    }

    /// <summary>{endpoint}/{repo}/resolve/{revision}/{path}: revision fully escaped, path escaped per segment (Python quote).</summary>
    public static Uri ResolveUrl(string endpoint, string repoId, string revision, string path)
    {
        var sb = new StringBuilder(endpoint.TrimEnd('/'));
        sb.Append('/').Append(EscapeSegments(repoId)).Append("/resolve/").Append(Uri.EscapeDataString(revision)).Append('/');
        sb.Append(EscapeSegments(path));
        return new Uri(sb.ToString(), UriKind.Absolute);
    }

    /// <summary>{endpoint}/api/models/{repo}/revision/{revision}: the repo's file list at a revision.</summary>
    public static Uri ApiRevisionUrl(string endpoint, string repoId, string revision) =>
        new(endpoint.TrimEnd('/') + "/api/models/" + EscapeSegments(repoId) + "/revision/" + Uri.EscapeDataString(revision), UriKind.Absolute);

    private static string EscapeSegments(string path) => string.Join('/', path.Split('/').Select(Uri.EscapeDataString));

    /// <summary>An allow pattern (fnmatch: '*' and '?' match any character including '/', [seq], [!seq]).</summary>
    public static Glob ToGlob(string pattern) =>
        // huggingface_hub treats "folder/" as "folder/*".
        new(pattern.EndsWith('/') ? pattern + "*" : pattern, GlobSyntax.Fnmatch);

    public static bool IsPattern(string s) => Glob.HasWildcard(s) || s.EndsWith('/');
}
