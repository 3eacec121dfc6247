using LlavaInterp.Models.Gemma;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>
/// One KV-cached generation, advanced one token per <see cref="Step"/>. Each step opens and closes its own inference
/// mode and dispose scope, so nothing of them stays on the thread between steps, where a streaming caller's code runs.
/// </summary>
internal sealed class GenerationRun : IDisposable
{
    private readonly HookedLlava _model;
    private readonly LlavaInput _prefill;
    private readonly GenerationOptions _options;
    private readonly HashSet<int> _stops;
    private readonly int _pad;
    private readonly List<int>[] _tokens;
    private readonly bool[] _finished;
    private readonly TokenSampler _sampler;
    private GemmaKvCache? _cache;
    private Tensor? _mask;
    private long[] _next = [];
    private int _steps;

    /// <summary>Prepares a run; nothing runs until the first <see cref="Step"/>.</summary>
    /// <exception cref="ContextLengthException">The prompt plus <see cref="GenerationOptions.MaxNewTokens"/> exceed <c>max_position_embeddings</c>.</exception>
    public GenerationRun(HookedLlava model, LlavaInput prefill, int batch, GenerationOptions options, IEnumerable<int> stops, int pad)
    {
        options.Validate();
        long promptLength = prefill.InputIds.shape[1];
        ContextLengthException.ThrowIfExceeded(
            promptLength + options.MaxNewTokens,
            model.Config.TextConfig.MaxPositionEmbeddings,
            () => $"The prompt ({promptLength} tokens) plus MaxNewTokens ({options.MaxNewTokens})");
        _model = model;
        _prefill = prefill;
        _options = options;
        _stops = new HashSet<int>(stops);
        _pad = pad;
        _tokens = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        _finished = new bool[batch];
        _sampler = new TokenSampler(options);
        IsDone = options.MaxNewTokens == 0;
    }

    /// <summary>The new tokens of each row so far, the stop token included.</summary>
    public IReadOnlyList<IReadOnlyList<int>> Tokens => _tokens;

    /// <summary>Whether the token budget is spent or every row has met a stop token.</summary>
    public bool IsDone { get; private set; }

    /// <summary>Whether a stop token ended that row.</summary>
    public bool StoppedOnToken(int row) => _tokens[row].Count > 0 && _stops.Contains(_tokens[row][^1]);

    /// <summary>
    /// Runs one forward, the prompt on the first step and the previous tokens after, and appends the next token to every
    /// row not yet finished. No forward runs after the last token.
    /// </summary>
    public void Step()
    {
        if (IsDone)
        {
            return;
        }

        using var noGrad = inference_mode();
        using var scope = NewDisposeScope();
        var logits = _cache is null ? Prefill() : Decode();
        var ids = _sampler.Next(logits).data<long>().ToArray();
        for (int row = 0; row < ids.Length; row++)
        {
            if (_finished[row])
            {
                ids[row] = _pad;
                continue;
            }

            int token = (int)ids[row];
            _tokens[row].Add(token);
            _finished[row] = _stops.Contains(token);
        }

        _next = ids;
        _steps++;
        IsDone = _steps == _options.MaxNewTokens || _finished.All(f => f);
    }

    private Tensor Prefill()
    {
        // Sized for the whole run up front: the cache never grows (no copy of the prompt's keys/values per growth).
        _cache = _model.LanguageModel.CreateCache(_prefill.InputIds.shape[1] + _options.MaxNewTokens);
        _mask = (_prefill.AttentionMask ?? ones_like(_prefill.InputIds)).to(ScalarType.Int64, _model.Device).DetachFromDisposeScope();
        using var output = _model.call(_prefill with { AttentionMask = _mask, Cache = _cache, LogitsToKeep = 1 });
        return output.Logits![.., -1];
    }

    private Tensor Decode()
    {
        long batch = _next.Length;
        var stepIds = tensor(_next, [batch, 1], ScalarType.Int64);
        var mask = cat([_mask!, ones(batch, 1, dtype: ScalarType.Int64, device: _model.Device)], 1).DetachFromDisposeScope();
        _mask!.Dispose();
        _mask = mask;
        using var output = _model.call(new LlavaInput { InputIds = stepIds, AttentionMask = _mask, Cache = _cache });
        return output.Logits![.., -1];
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _mask?.Dispose();
        _cache?.Dispose();
        _sampler.Dispose();
    }
}
