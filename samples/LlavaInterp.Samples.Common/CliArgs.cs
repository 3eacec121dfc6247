using System.CommandLine;
using System.CommandLine.Invocation;
using System.Globalization;

namespace LlavaInterp.Samples;

/// <summary>Thrown for a command line that cannot be run; the message is printed as one line.</summary>
public sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// The options of a command, parsed by System.CommandLine: <c>--name value</c> (or <c>--name=value</c>), repeated
/// options and <c>--flag</c> switches. Every option must be declared (an unknown one is reported, with System.CommandLine's
/// "did you mean" when one is close). Multi-valued options take every following value up to the next option
/// (<c>--image a.png b.png</c>) and may also be repeated. The values stay strings so that each command checks and names
/// them in its own words (<c>--top-k expects an integer</c>).
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

    private static readonly ParserConfiguration Parser = new()
    {
        // A prompt may start with '@' or be "-abc": no response files, no bundling of short options.
        ResponseFileTokenReplacer = null,
        EnablePosixBundling = false,
    };

    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    private CliArgs()
    {
    }

    /// <summary>
    /// Parses arguments: <paramref name="flags"/> take no value, <paramref name="multi"/> take one or more values,
    /// <paramref name="values"/> take one value each time they are given.
    /// </summary>
    /// <exception cref="CliUsageException">An unknown option, a stray argument, or an option without its value.</exception>
    public static CliArgs Parse(IReadOnlyList<string> args, IReadOnlySet<string> flags, IReadOnlySet<string> multi, IReadOnlySet<string> values)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(flags);
        ArgumentNullException.ThrowIfNull(multi);
        ArgumentNullException.ThrowIfNull(values);

        // A plain Command, not a RootCommand: no directives, and help is the command's own text.
        var command = new Command("command");
        var flagOptions = flags.ToDictionary(n => n, n => new Option<bool>("--" + n) { Arity = ArgumentArity.Zero });
        var valueOptions = multi.Concat(values).Distinct().ToDictionary(
            n => n,
            n => new Option<string[]>("--" + n) { Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = multi.Contains(n) });
        foreach (var o in flagOptions.Values)
        {
            command.Options.Add(o);
        }

        foreach (var o in valueOptions.Values)
        {
            command.Options.Add(o);
        }

        var parsed = command.Parse(args, Parser);
        if (parsed.Errors.Count > 0)
        {
            throw new CliUsageException(Describe(parsed));
        }

        var result = new CliArgs();
        foreach (var (name, option) in flagOptions)
        {
            if (parsed.GetResult(option) is { Implicit: false })
            {
                result._flags.Add(name);
            }
        }

        foreach (var (name, option) in valueOptions)
        {
            if (parsed.GetResult(option) is { Implicit: false } r)
            {
                result._values[name] = r.Tokens.Select(t => t.Value).ToList();
            }
        }

        return result;
    }

    // System.CommandLine's own report (errors and typo corrections, no help) on one line.
    private static string Describe(ParseResult parsed)
    {
        if (parsed.Action is ParseErrorAction action)
        {
            action.ShowHelp = false;
            action.ShowTypoCorrections = true;
        }

        using var report = new StringWriter();
        try
        {
            parsed.Invoke(new InvocationConfiguration { Output = report, Error = report, EnableDefaultExceptionHandler = false });
        }
        catch (InvalidOperationException)
        {
            // Fall back to the error messages alone.
        }

        string text = System.Text.RegularExpressions.Regex.Replace(report.ToString(), "\x1b\\[[0-9;]*m", string.Empty);
        if (string.IsNullOrWhiteSpace(text))
        {
            text = string.Join(" ", parsed.Errors.Select(e => e.Message));
        }

        return string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    /// <summary>Whether a switch was given.</summary>
    public bool Flag(string name)
    {
        return _flags.Contains(name);
    }

    /// <summary>The value of an option given at most once, or null.</summary>
    public string? Optional(string name)
    {
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
}
