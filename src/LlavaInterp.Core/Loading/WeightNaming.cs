namespace LlavaInterp.Loading;

/// <summary>
/// How a module's state-dict keys map to checkpoint tensor names, and which checkpoint names belong to the module (so
/// count as unexpected when it does not use them).
/// </summary>
public sealed class WeightNaming
{
    private readonly Func<string, string> _checkpointName;
    private readonly Func<string, bool> _owns;

    /// <summary>Creates a naming.</summary>
    /// <param name="prefix">Where the module sits in the checkpoint, as reported in <see cref="WeightLoadReport.Prefix"/> and errors.</param>
    /// <param name="checkpointName">Maps a state-dict key to its checkpoint tensor name.</param>
    /// <param name="owns">Whether a checkpoint name is in the module's part of the checkpoint.</param>
    public WeightNaming(string prefix, Func<string, string> checkpointName, Func<string, bool> owns)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(checkpointName);
        ArgumentNullException.ThrowIfNull(owns);
        Prefix = prefix;
        _checkpointName = checkpointName;
        _owns = owns;
    }

    /// <summary>Where the module sits in the checkpoint (for reports and errors).</summary>
    public string Prefix { get; }

    /// <summary>
    /// State-dict key <c>k</c> is checkpoint tensor <c>prefix + k</c>; every name under <paramref name="prefix"/> is the
    /// module's unless <paramref name="ownsName"/> (given the name without the prefix) says otherwise.
    /// </summary>
    public static WeightNaming FromPrefix(string prefix, Func<string, bool>? ownsName = null)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return new WeightNaming(
            prefix,
            key => prefix + key,
            name => name.StartsWith(prefix, StringComparison.Ordinal) && (ownsName?.Invoke(name[prefix.Length..]) ?? true));
    }

    /// <summary>The checkpoint tensor name of a state-dict key.</summary>
    public string CheckpointName(string key) => _checkpointName(key);

    /// <summary>Whether a checkpoint name is in the module's part of the checkpoint.</summary>
    public bool Owns(string checkpointName) => _owns(checkpointName);
}
