namespace LlavaInterp.Llava;

/// <summary>How to generate: greedy by default, or sampling with temperature / top-k / top-p and a seed.</summary>
public sealed record GenerationOptions
{
    /// <summary>Greedy decoding (argmax, first index on ties) with at most 20 new tokens.</summary>
    public static GenerationOptions Greedy { get; } = new();

    /// <summary>Maximum number of new tokens. Default 20 (as Hugging Face's <c>max_length</c>-free default).</summary>
    public int MaxNewTokens { get; init; } = 20;

    /// <summary>Sample instead of taking the argmax. Default false.</summary>
    public bool DoSample { get; init; }

    /// <summary>Softmax temperature when sampling (must be &gt; 0). Default 1.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep only the k most likely tokens when sampling; 0 disables. Default 0.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of tokens whose probability reaches p when sampling; 1 disables. Default 1.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Seed of the sampling generator; null draws one from the system. Default null.</summary>
    public long? Seed { get; init; }

    /// <summary>
    /// Tokens that end a sequence. Null uses the model's <c>eos_token_id</c> (from <c>generation_config.json</c> or
    /// <c>config.json</c>) plus <c>&lt;end_of_turn&gt;</c> when the tokenizer has it.
    /// </summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for values that cannot work.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(MaxNewTokens, nameof(MaxNewTokens));
        if (DoSample)
        {
            if (!(Temperature > 0) || double.IsInfinity(Temperature))
            {
                throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a positive finite number.");
            }

            ArgumentOutOfRangeException.ThrowIfNegative(TopK, nameof(TopK));
            if (!(TopP > 0 && TopP <= 1))
            {
                throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
            }
        }
    }
}
