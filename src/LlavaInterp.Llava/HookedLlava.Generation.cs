using System.Runtime.CompilerServices;
using LlavaInterp.Models.Gemma;
using Microsoft.Extensions.Logging;

namespace LlavaInterp.Llava;

/// <summary>What one generation produced.</summary>
/// <param name="PromptTokens">The prompt's token ids (without padding).</param>
/// <param name="Tokens">The new token ids, the stop token included when one ended the sequence.</param>
/// <param name="Text">The new tokens decoded, special tokens skipped.</param>
/// <param name="StoppedOnToken">Whether a stop token ended the sequence (otherwise the token budget did).</param>
public sealed record GenerationResult(IReadOnlyList<int> PromptTokens, IReadOnlyList<int> Tokens, string Text, bool StoppedOnToken);

/// <content>Generation with a KV cache; hooks active in the caller's scope fire on the prompt and on every new token.</content>
public sealed partial class HookedLlava
{
    /// <summary>Generates for one prompt (greedy by default), with a KV cache.</summary>
    /// <param name="prompt">The prepared prompt.</param>
    /// <param name="options">Decoding options; null is greedy with 20 new tokens.</param>
    /// <param name="cancellationToken">Checked before every step.</param>
    /// <exception cref="ContextLengthException">The prompt plus <see cref="GenerationOptions.MaxNewTokens"/> exceed <c>max_position_embeddings</c>; nothing runs.</exception>
    public GenerationResult Generate(LlavaPrompt prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return GenerateCore(LlavaInput.From(prompt), [prompt.Ids], options, cancellationToken)[0];
    }

    /// <summary>Generates for a left-padded batch; each row stops on its own.</summary>
    /// <exception cref="ContextLengthException">The prompt plus <see cref="GenerationOptions.MaxNewTokens"/> exceed <c>max_position_embeddings</c>; nothing runs.</exception>
    public IReadOnlyList<GenerationResult> GenerateBatch(LlavaBatch batch, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return GenerateCore(LlavaInput.From(batch), batch.Prompts.Select(p => p.Ids).ToList(), options, cancellationToken);
    }

    /// <summary>
    /// Generates for one prompt and streams the text as it is produced (incomplete UTF-8 held back until complete).
    /// Each step runs only when the caller asks for the next piece, on the thread pool and in the caller's execution
    /// context: the hooks of the caller's scope fire on every step, leaving the loop (or disposing the enumerator) stops
    /// generation before the next step, and a step's exception reaches the caller.
    /// </summary>
    /// <exception cref="ContextLengthException">The prompt plus <see cref="GenerationOptions.MaxNewTokens"/> exceed <c>max_position_embeddings</c>.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; checked before every step.</exception>
    public async IAsyncEnumerable<string> GenerateStreamAsync(LlavaPrompt prompt, GenerationOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var decoder = Tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        using var run = StartRun(LlavaInput.From(prompt), 1, options);
        var tokens = run.Tokens[0];
        while (!run.IsDone)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int before = tokens.Count;

            // Off the caller's thread (a forward can take seconds), one step at a time so that nothing runs ahead of
            // the reader; Task.Run flows the caller's execution context, and with it the hook scopes.
            await Task.Run(run.Step, cancellationToken).ConfigureAwait(false);
            if (tokens.Count > before)
            {
                string piece = decoder.Push(tokens[^1]);
                if (piece.Length > 0)
                {
                    yield return piece;
                }
            }
        }

        string rest = decoder.Flush();
        if (rest.Length > 0)
        {
            yield return rest;
        }
    }

    private GenerationRun StartRun(LlavaInput prefill, int batch, GenerationOptions? options)
    {
        ThrowIfDisposed();
        return new(this, prefill, batch, options ?? GenerationOptions.Greedy, options?.StopTokenIds ?? DefaultStopTokenIds, Processor?.Tokenizer.PadTokenId ?? 0);
    }

    private List<GenerationResult> GenerateCore(LlavaInput prefill, IReadOnlyList<IReadOnlyList<int>> promptIds, GenerationOptions? options, CancellationToken cancellationToken)
    {
        int batch = promptIds.Count;
        using var run = StartRun(prefill, batch, options);
        while (!run.IsDone)
        {
            cancellationToken.ThrowIfCancellationRequested();
            run.Step();
        }

        var results = new List<GenerationResult>(batch);
        for (int row = 0; row < batch; row++)
        {
            var tokens = run.Tokens[row].ToList();
            string text = Processor is null ? string.Empty : Processor.Tokenizer.Decode(tokens, skipSpecialTokens: true);
            results.Add(new GenerationResult(promptIds[row], tokens, text, run.StoppedOnToken(row)));
        }

        Logger.LogDebug("Generated {Tokens} tokens for {Rows} prompt(s).", results.Sum(r => r.Tokens.Count), batch);
        return results;
    }
}
