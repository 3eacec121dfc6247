using TorchSharp;

namespace LlavaInterp.Llava;

/// <summary>
/// Picks the next token from last-position logits, as Hugging Face's greedy search and its temperature → top-k →
/// top-p warpers do.
/// </summary>
public sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private readonly torch.Generator? _generator;

    /// <summary>Creates a sampler for the given options (validated here).</summary>
    public TokenSampler(GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        if (options.DoSample)
        {
            _generator = new torch.Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()), torch.CPU);
        }
    }

    /// <summary>Next token per row: logits [batch, vocab] → ids [batch] (int64, CPU).</summary>
    public torch.Tensor Next(torch.Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
        var scores = logits.to(torch.float32).cpu();
        if (!_options.DoSample)
        {
            // torch.argmax returns the first maximal index, like HF's greedy search.
            return scores.argmax(-1).MoveToOuterDisposeScope();
        }

        scores = scores / _options.Temperature;
        long vocab = scores.shape[^1];
        if (_options.TopK > 0 && _options.TopK < vocab)
        {
            var kth = scores.topk(_options.TopK, dim: -1).values[.., ^1..];
            scores = scores.masked_fill(scores.lt(kth), float.NegativeInfinity);
        }

        if (_options.TopP < 1.0)
        {
            // HF's TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability stays ≤ 1 - p,
            // always keeping the most likely one.
            var (sorted, indices) = scores.sort(dim: -1, descending: false);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var remove = cumulative.le(1 - _options.TopP);
            remove[.., ^1] = false;
            var removeOriginal = remove.scatter(-1, indices, remove);
            scores = scores.masked_fill(removeOriginal, float.NegativeInfinity);
        }

        var probs = scores.softmax(-1);
        return torch.multinomial(probs, 1, generator: _generator).squeeze(-1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public void Dispose() => _generator?.Dispose();
}
