using Microsoft.Extensions.Logging;

namespace LlavaInterp.Tests.Support;

/// <summary>A logger that keeps every formatted message, for tests that check what was logged.</summary>
public sealed class ListLogger : ILogger
{
    /// <summary>The messages, in order.</summary>
    public List<string> Messages { get; } = new();

    /// <inheritdoc/>
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    /// <inheritdoc/>
    public bool IsEnabled(LogLevel logLevel) => true;

    /// <inheritdoc/>
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Messages.Add(formatter(state, exception));
}
