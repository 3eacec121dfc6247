using System.Globalization;

namespace LlavaInterp.Samples;

/// <summary>Thrown for a command line that cannot be run; the message is printed as one line.</summary>
public sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// A small parser for <c>--name value</c>, repeated options and <c>--flag</c> switches. Every option must be known to
/// the command (unknown options are an error, not ignored). Options named as multi-valued take every following
/// argument up to the next <c>--option</c> (<c>--image a.png b.png</c>), and may also be repeated.
/// </summary>
public sealed class CliArgs
{
    /// <summary>
    /// Runs a library parse or check of user input; its <see cref="ArgumentException"/> or
    /// <see cref="DirectoryNotFoundException"/> becomes a <see cref="CliUsageException"/> (a bad command line).
    /// </summary>
    public static T Usage<T>(Func<T> parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        try
        {
            return parse();
        }
        catch (Exception ex) when (ex is ArgumentException or DirectoryNotFoundException)
        {
            throw new CliUsageException(ex.Message);
        }
    }

    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    private CliArgs()
    {
    }

    /// <summary>Parses arguments; <paramref name="flags"/> are the options that take no value.</summary>
    public static CliArgs Parse(IReadOnlyList<string> args, IReadOnlySet<string> flags) => Parse(args, flags, new HashSet<string>());

    /// <summary>
    /// Parses arguments; <paramref name="flags"/> take no value, <paramref name="multi"/> take one or more values
    /// (every following argument that does not start with <c>--</c>).
    /// </summary>
    public static CliArgs Parse(IReadOnlyList<string> args, IReadOnlySet<string> flags, IReadOnlySet<string> multi)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(flags);
        ArgumentNullException.ThrowIfNull(multi);
        var result = new CliArgs();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                throw new CliUsageException($"unexpected argument '{a}'.");
            }

            string name = a[2..];
            string? inline = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }

            if (flags.Contains(name))
            {
                if (inline is not null)
                {
                    throw new CliUsageException($"--{name} takes no value.");
                }

                result._flags.Add(name);
                continue;
            }

            string value = inline ?? (i + 1 < args.Count ? args[++i] : throw new CliUsageException($"--{name} needs a value."));
            if (!result._values.TryGetValue(name, out var list))
            {
                result._values[name] = list = new List<string>();
            }

            list.Add(value);
            if (multi.Contains(name))
            {
                while (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    list.Add(args[++i]);
                }
            }
        }

        return result;
    }

    /// <summary>Whether a switch was given.</summary>
    public bool Flag(string name)
    {
        _read.Add(name);
        return _flags.Contains(name);
    }

    /// <summary>The value of an option given at most once, or null.</summary>
    public string? Optional(string name)
    {
        _read.Add(name);
        if (!_values.TryGetValue(name, out var list))
        {
            return null;
        }

        if (list.Count > 1)
        {
            throw new CliUsageException($"--{name} was given {list.Count} times; give it once.");
        }

        return list[0];
    }

    /// <summary>The value of a required option.</summary>
    public string Required(string name) => Optional(name) ?? throw new CliUsageException($"--{name} is required.");

    /// <summary>Every value of a repeatable option.</summary>
    public IReadOnlyList<string> All(string name)
    {
        _read.Add(name);
        return _values.TryGetValue(name, out var list) ? list : [];
    }

    /// <summary>An optional integer option.</summary>
    public int? Int(string name)
    {
        var s = Optional(name);
        if (s is null)
        {
            return null;
        }

        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new CliUsageException($"--{name} expects an integer, got '{s}'.");
    }

    /// <summary>An optional floating-point option.</summary>
    public double? Double(string name)
    {
        var s = Optional(name);
        if (s is null)
        {
            return null;
        }

        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            ? v
            : throw new CliUsageException($"--{name} expects a number, got '{s}'.");
    }

    /// <summary>Fails on any option the command did not read (call after reading all options).</summary>
    public void RejectUnknown()
    {
        var unknown = _values.Keys.Concat(_flags).Where(n => !_read.Contains(n)).ToList();
        if (unknown.Count > 0)
        {
            throw new CliUsageException($"unknown option{(unknown.Count > 1 ? "s" : string.Empty)}: {string.Join(", ", unknown.Select(u => "--" + u))}.");
        }
    }
}
