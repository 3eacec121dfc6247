using System.Runtime.CompilerServices;
using System.Threading.Channels;
using LlavaInterp.Models.Gemma;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

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
    public GenerationResult Generate(LlavaPrompt prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return GenerateCore(LlavaInput.From(prompt), [prompt.Ids], options, null, cancellationToken)[0];
    }

    /// <summary>Generates for a left-padded batch; each row stops on its own.</summary>
    public IReadOnlyList<GenerationResult> GenerateBatch(LlavaBatch batch, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return GenerateCore(LlavaInput.From(batch), batch.Prompts.Select(p => p.Ids).ToList(), options, null, cancellationToken);
    }

    /// <summary>
    /// Generates for one prompt and streams the text as it is produced (incomplete UTF-8 held back until complete).
    /// The model runs on a worker thread; hooks in the caller's scope flow to it.
    /// </summary>
    public async IAsyncEnumerable<string> GenerateStreamAsync(LlavaPrompt prompt, GenerationOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var decoder = Tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        var worker = Task.Run(
            () =>
            {
                try
                {
                    GenerateCore(LlavaInput.From(prompt), [prompt.Ids], options, (row, token) =>
                    {
                        string piece = decoder.Push(token);
                        if (piece.Length > 0)
                        {
                            channel.Writer.TryWrite(piece);
                        }
                    }, cancellationToken);
                    string rest = decoder.Flush();
                    if (rest.Length > 0)
                    {
                        channel.Writer.TryWrite(rest);
                    }

                    channel.Writer.TryComplete();
                }
                catch (Exception ex)
                {
                    channel.Writer.TryComplete(ex);
                }
            },
            CancellationToken.None);

        await foreach (var piece in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return piece;
        }

        await worker.ConfigureAwait(false);
    }

    private List<GenerationResult> GenerateCore(LlavaInput prefill, IReadOnlyList<IReadOnlyList<int>> promptIds, GenerationOptions? options, Action<int, int>? onToken, CancellationToken cancellationToken)
    {
        options ??= GenerationOptions.Greedy;
        options.Validate();
        var stops = new HashSet<int>(options.StopTokenIds ?? DefaultStopTokenIds);
        int batch = promptIds.Count;
        int pad = Processor?.Tokenizer.PadTokenId ?? 0;
        var generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var finished = new bool[batch];
        using var sampler = new TokenSampler(options);
        using var noGrad = inference_mode();
        // Sized for the whole run up front: the cache never grows (no copy of the prompt's keys/values per growth).
        using var cache = _languageModel.CreateCache(prefill.InputIds.shape[1] + options.MaxNewTokens);
        var mask = (prefill.AttentionMask ?? ones_like(prefill.InputIds)).to(ScalarType.Int64, Device).DetachFromDisposeScope();
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            Tensor? lastLogits;
            using (var output = call(prefill with { AttentionMask = mask, Cache = cache, LogitsToKeep = 1 }))
            {
                lastLogits = output.Logits![.., -1].DetachFromDisposeScope();
            }

            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                using var scope = NewDisposeScope();
                var next = sampler.Next(lastLogits);
                lastLogits.Dispose();
                lastLogits = null;
                var ids = next.data<long>().ToArray();
                for (int row = 0; row < batch; row++)
                {
                    if (finished[row])
                    {
                        ids[row] = pad;
                        continue;
                    }

                    int token = (int)ids[row];
                    generated[row].Add(token);
                    onToken?.Invoke(row, token);
                    finished[row] = stops.Contains(token);
                }

                if (finished.All(f => f) || step == options.MaxNewTokens - 1)
                {
                    break;
                }

                cancellationToken.ThrowIfCancellationRequested();
                var stepIds = tensor(ids, [batch, 1], ScalarType.Int64);
                var newMask = cat([mask, ones(batch, 1, dtype: ScalarType.Int64, device: Device)], 1).DetachFromDisposeScope();
                mask.Dispose();
                mask = newMask;
                using var output = call(new LlavaInput { InputIds = stepIds, AttentionMask = mask, Cache = cache });
                lastLogits = output.Logits![.., -1].DetachFromDisposeScope();
            }

            lastLogits?.Dispose();
        }
        finally
        {
            mask.Dispose();
        }

        var results = new List<GenerationResult>(batch);
        for (int row = 0; row < batch; row++)
        {
            bool stopped = generated[row].Count > 0 && stops.Contains(generated[row][^1]);
            string text = Processor is null ? string.Empty : Processor.Tokenizer.Decode(generated[row], skipSpecialTokens: true);
            results.Add(new GenerationResult(promptIds[row], generated[row], text, stopped));
        }

        Logger.LogDebug("Generated {Tokens} tokens for {Rows} prompt(s).", generated.Sum(g => g.Count), batch);
        return results;
    }
}
