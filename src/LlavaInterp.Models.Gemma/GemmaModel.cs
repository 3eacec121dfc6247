using LlavaInterp.Hooks;
using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// The Gemma decoder stack as HF 4.46 <c>GemmaModel</c>: <c>embed_tokens</c>, <c>layers.{i}</c>, <c>norm</c>
/// (plus a non-persistent <c>rotary_emb</c>). Embeddings are multiplied by <c>sqrt(hidden_size)</c> rounded to float32
/// and then to the model dtype, the layers run, the final norm is applied; no logits (see <see cref="HookedGemma"/>).
/// </summary>
/// <remarks>
/// Hook points: <c>hook_embed</c> [batch, pos, hidden] — the embedding AFTER the <c>sqrt(hidden)</c> scaling (for LLaVA,
/// the scaled merged text+image embeddings), i.e. the same values as <c>blocks.0.hook_resid_pre</c> (TransformerLens
/// folds the scale into <c>W_E</c>, so its <c>hook_embed</c> is scaled too; HF's <c>inputs_embeds</c> is this divided by
/// the scale). The final norm's hooks are <c>ln_final.hook_scale</c> and <c>ln_final.hook_normalized</c>.
/// </remarks>
public sealed class GemmaModel : nn.Module<GemmaInput, GemmaOutput>
{
    [ComponentName(Name = "embed_tokens")]
    private readonly GemmaTokenEmbedding _embedTokens;

    [ComponentName(Name = "hook_embed")]
    private readonly HookPoint _hookEmbed;

    [ComponentName(Name = "rotary_emb")]
    private readonly GemmaRotaryEmbedding _rotaryEmb;

    [ComponentName(Name = "layers")]
    private readonly ModuleList<GemmaDecoderLayer> _layers;

    [ComponentName(Name = "norm")]
    private readonly GemmaRmsNorm _norm;

    private readonly GemmaDecoderLayer[] _layerArray;

    /// <summary>Creates the decoder with uninitialised weights.</summary>
    /// <param name="config">Validated configuration.</param>
    /// <param name="dtype">Parameter dtype (float32, bfloat16 or float16).</param>
    /// <param name="device">Parameter device (the meta device builds shapes only).</param>
    /// <param name="computeDType">Activation dtype; <see langword="null"/> = <paramref name="dtype"/> (see <see cref="ComputeDTypes"/>).</param>
    /// <exception cref="ArgumentException">An unsupported dtype pair.</exception>
    public GemmaModel(GemmaConfig config, ScalarType dtype, Device device, ScalarType? computeDType = null)
        : base(nameof(GemmaModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        Config = config;
        Flags = new GemmaHookFlags();
        DType = dtype;
        ComputeDType = ComputeDTypes.Resolve(dtype, computeDType, nameof(dtype), nameof(computeDType));
        Device = device;
        _embedTokens = new GemmaTokenEmbedding(config.VocabSize, config.HiddenSize, dtype, device, ComputeDType);
        _hookEmbed = new HookPoint("hook_embed");
        _rotaryEmb = new GemmaRotaryEmbedding(config.HeadDim, config.RopeTheta, device);
        var layers = new GemmaDecoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            layers[i] = new GemmaDecoderLayer(config, i, dtype, device, Flags);
        }

        _layerArray = layers;
        _layers = nn.ModuleList(layers);
        _norm = new GemmaRmsNorm(config.HiddenSize, config.RmsNormEps, "ln_final", null, dtype, device);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public GemmaConfig Config { get; }

    /// <summary>Parameter dtype.</summary>
    public ScalarType DType { get; }

    /// <summary>Activation dtype: embeddings, hook points, the KV cache and the mask are in it.</summary>
    public ScalarType ComputeDType { get; }

    /// <summary>Parameter device.</summary>
    public Device Device { get; }

    /// <summary><c>embed_tokens</c>.</summary>
    public GemmaTokenEmbedding EmbedTokens => _embedTokens;

    /// <summary>The RoPE table generator (shared by all layers).</summary>
    internal GemmaRotaryEmbedding RotaryEmb => _rotaryEmb;

    /// <summary><c>layers</c>.</summary>
    internal IReadOnlyList<GemmaDecoderLayer> Layers => _layerArray;

    /// <summary><c>norm</c> (TransformerLens <c>ln_final</c>).</summary>
    internal GemmaRmsNorm Norm => _norm;

    /// <summary>The optional hook points every layer reads (TransformerLens's <c>use_*</c> switches).</summary>
    internal GemmaHookFlags Flags { get; }

    /// <summary>
    /// HF <c>generate</c>'s default position ids for a 2-D attention mask: <c>cumsum(mask) - 1</c>, set to 1 where the
    /// mask is 0, restricted to the last <paramref name="newPositions"/> columns.
    /// </summary>
    /// <param name="attentionMask">[batch, total] (1 = attend).</param>
    /// <param name="newPositions">How many trailing positions to return.</param>
    /// <returns>[batch, newPositions] int64.</returns>
    /// <exception cref="ArgumentException">The mask is not 2-D, or <paramref name="newPositions"/> exceeds its length.</exception>
    public static Tensor PositionIdsFromAttentionMask(Tensor attentionMask, long newPositions)
    {
        ArgumentNullException.ThrowIfNull(attentionMask);
        if (attentionMask.dim() != 2)
        {
            throw new ArgumentException($"The attention mask must be [batch, positions]; got [{string.Join(", ", attentionMask.shape)}].", nameof(attentionMask));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(newPositions);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(newPositions, attentionMask.shape[1]);
        using var scope = NewDisposeScope();
        var mask = attentionMask.to(ScalarType.Int64);
        var positions = mask.cumsum(-1) - 1;
        positions = positions.masked_fill(mask.eq(0), 1);
        long total = positions.shape[1];
        return positions.narrow(1, total - newPositions, newPositions).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Runs the decoder (no logits). The result's tensors belong to the caller.</summary>
    /// <exception cref="ArgumentException">Inconsistent input (the message says which field).</exception>
    /// <exception cref="ContextLengthException">Cached plus new positions exceed <c>max_position_embeddings</c>; nothing runs.</exception>
    public override GemmaOutput forward(GemmaInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int numLayers = Config.NumHiddenLayers;
        int start = input.StartAtLayer ?? 0;
        int stop = ResolveStop(input.StopAtLayer, numLayers);
        if (start < 0 || start > numLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(input), $"StartAtLayer {start} is outside [0, {numLayers}].");
        }

        if (stop < start)
        {
            throw new ArgumentOutOfRangeException(nameof(input), $"StopAtLayer resolves to {stop}, before StartAtLayer {start}.");
        }

        var cache = input.Cache;
        if (cache is not null && (input.StartAtLayer is not null || input.StopAtLayer is not null))
        {
            throw new ArgumentException("A KV cache needs every layer to run: do not combine Cache with StartAtLayer or StopAtLayer.", nameof(input));
        }

        long past = cache?.Length ?? 0;
        if ((input.InputIds ?? input.InputsEmbeds) is { } given && given.dim() >= 2)
        {
            long fresh = given.shape[1];
            ContextLengthException.ThrowIfExceeded(past + fresh, Config.MaxPositionEmbeddings, () => past == 0 ? $"The input ({fresh} tokens)" : $"The cache ({past} positions) plus the input ({fresh} tokens)");
        }

        using var position = HookRun.EnterPositionOffset(past);
        using var scope = NewDisposeScope();

        var hidden = Embed(input);
        long b = hidden.shape[0];
        long t = hidden.shape[1];
        cache?.CheckCompatible(b, numLayers);

        var mask2d = ResolveMask(input, cache, b, t, past);
        var positions = ResolvePositions(input, mask2d, b, t, past);
        var (cos32, sin32) = _rotaryEmb.call(positions);
        var cos = WeightCast.To(cos32, ComputeDType);
        var sin = WeightCast.To(sin32, ComputeDType);
        var additive = BuildAdditiveMask(mask2d, b, t, past, ComputeDType, Device);
        var context = new GemmaLayerContext(cos, sin, additive, cache, past);

        var checksums = input.CheckFinite ? new List<Tensor>(stop - start + 1) { Checksum(hidden) } : null;
        for (int i = start; i < stop; i++)
        {
            hidden = _layerArray[i].call(hidden, context);
            checksums?.Add(Checksum(hidden));
        }

        Tensor? last = null;
        if (input.StopAtLayer is null)
        {
            last = _norm.call(hidden);
        }

        cache?.Commit(t, mask2d);
        return new GemmaOutput
        {
            // The stream may be the caller's own tensor (no block ran) or one a hook patched in: never take ownership of it.
            ResidualStream = HookResults.ReturnFrom(scope, hidden),
            LastHiddenState = last is null ? null : HookResults.ReturnFrom(scope, last),
            Cache = cache,
            PastLength = past,
            Checksums = checksums is null ? null : stack(checksums).MoveToOuterDisposeScope(),
            FirstLayer = start,
        };
    }

    private static int ResolveStop(int? stopAtLayer, int numLayers)
    {
        if (stopAtLayer is not int stop)
        {
            return numLayers;
        }

        int resolved = stop < 0 ? numLayers + stop : stop;
        if (resolved < 0 || resolved > numLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(stopAtLayer), $"StopAtLayer {stop} is outside [-{numLayers}, {numLayers}].");
        }

        return resolved;
    }

    /// <summary>
    /// One reduction per block: the float32 sum is NaN or infinite exactly when the stream is (finite activations cannot
    /// overflow float32). Only read when the logits turn out non-finite, so the happy path never syncs on it.
    /// </summary>
    private static Tensor Checksum(Tensor x) => x.sum(ScalarType.Float32);

    /// <summary>Additive mask [b|1, 1, t, past+t]: dtype minimum where blocked (future keys or padding), else 0.</summary>
    private static Tensor? BuildAdditiveMask(Tensor? mask2d, long b, long t, long past, ScalarType dtype, Device device)
    {
        long total = past + t;
        Tensor? blocked = null;
        if (t > 1)
        {
            var keyPositions = arange(total, ScalarType.Int64, device);
            var queryPositions = arange(past, total, ScalarType.Int64, device).unsqueeze(1);
            blocked = keyPositions.unsqueeze(0).gt(queryPositions).view(1, 1, t, total);
        }

        if (mask2d is not null)
        {
            var padding = mask2d.eq(0).view(b, 1, 1, total);
            blocked = blocked is null ? padding : blocked.logical_or(padding);
        }

        if (blocked is null)
        {
            return null;
        }

        return zeros(blocked.shape, dtype, device).masked_fill(blocked, finfo(dtype).min);
    }

    private Tensor Embed(GemmaInput input)
    {
        if (input.StartAtLayer is not null)
        {
            if (input.InputIds is not null || input.InputsEmbeds is null)
            {
                throw new ArgumentException("StartAtLayer needs the residual stream in InputsEmbeds (and no InputIds).", nameof(input));
            }

            return ToModel(CheckEmbeds(input.InputsEmbeds, "InputsEmbeds"));
        }

        if ((input.InputIds is null) == (input.InputsEmbeds is null))
        {
            throw new ArgumentException("Give exactly one of InputIds and InputsEmbeds.", nameof(input));
        }

        Tensor embeds;
        if (input.InputIds is { } ids)
        {
            embeds = _embedTokens.call(CheckInputIds(ids));
        }
        else
        {
            embeds = ToModel(CheckEmbeds(input.InputsEmbeds!, "InputsEmbeds"));
        }

        // HF: hidden * torch.tensor(hidden_size ** 0.5, dtype=hidden.dtype); the normaliser is rounded to the dtype.
        var normalizer = tensor((float)Math.Sqrt(Config.HiddenSize), device: embeds.device).to(ComputeDType);
        return _hookEmbed.call(embeds * normalizer);
    }

    private Tensor ToModel(Tensor x)
    {
        if (x.dtype == ComputeDType && x.device_type == Device.type && x.device_index == Device.index)
        {
            return x;
        }

        return x.to(ComputeDType, Device);
    }

    private Tensor CheckEmbeds(Tensor embeds, string name)
    {
        if (embeds.dim() != 3 || embeds.shape[2] != Config.HiddenSize || embeds.shape[0] == 0 || embeds.shape[1] == 0)
        {
            throw new ArgumentException($"{name} must be [batch, pos, {Config.HiddenSize}] with batch, pos > 0; got [{string.Join(", ", embeds.shape)}].", "input");
        }

        if (!embeds.is_floating_point())
        {
            throw new ArgumentException($"{name} must be a floating-point tensor; got {embeds.dtype}.", "input");
        }

        return embeds;
    }

    /// <summary>
    /// Checks token ids as every forward does — [batch, pos] with batch, pos &gt; 0, int64 or int32, each in
    /// [0, <c>vocab_size</c>) — and returns them as int64 on the model's device. For a model that embeds ids through
    /// <see cref="EmbedTokens"/> itself (LLaVA), so that an id without an embedding row is this error, not an index
    /// failure inside the lookup.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong rank, empty, or not an integer tensor.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An id outside the vocabulary (the message names it and the size).</exception>
    public Tensor CheckInputIds(Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.dim() != 2 || ids.shape[0] == 0 || ids.shape[1] == 0)
        {
            throw new ArgumentException($"InputIds must be [batch, pos] with batch, pos > 0; got [{string.Join(", ", ids.shape)}].", "input");
        }

        if (ids.dtype != ScalarType.Int64 && ids.dtype != ScalarType.Int32)
        {
            throw new ArgumentException($"InputIds must be int64 or int32; got {ids.dtype}.", "input");
        }

        var local = ids.to(ScalarType.Int64, Device);
        if (Device.type != DeviceType.META)
        {
            var bad = local.lt(0).logical_or(local.ge(Config.VocabSize));
            if (bad.any().item<bool>())
            {
                long first = local.masked_select(bad)[0].item<long>();
                throw new ArgumentOutOfRangeException("input", $"InputIds contains token id {first}, outside the vocabulary [0, {Config.VocabSize}).");
            }
        }

        return local;
    }

    private Tensor? ResolveMask(GemmaInput input, GemmaKvCache? cache, long b, long t, long past)
    {
        if (input.AttentionMask is { } mask)
        {
            if (mask.dim() != 2 || mask.shape[0] != b || mask.shape[1] != past + t)
            {
                throw new ArgumentException($"AttentionMask must be [batch, past + pos] = [{b}, {past + t}]; got [{string.Join(", ", mask.shape)}].", "input");
            }

            return mask.to(ScalarType.Int64, Device);
        }

        if (cache?.AttentionMask is { } cached)
        {
            return cat([cached.to(ScalarType.Int64, Device), ones(b, t, ScalarType.Int64, Device)], 1);
        }

        return null;
    }

    private Tensor ResolvePositions(GemmaInput input, Tensor? mask2d, long b, long t, long past)
    {
        if (input.PositionIds is { } positions)
        {
            if (positions.dim() != 2 || (positions.shape[0] != b && positions.shape[0] != 1) || positions.shape[1] != t)
            {
                throw new ArgumentException($"PositionIds must be [{b}, {t}] or [1, {t}]; got [{string.Join(", ", positions.shape)}].", "input");
            }

            return positions.to(ScalarType.Int64, Device);
        }

        if (mask2d is not null)
        {
            return PositionIdsFromAttentionMask(mask2d, t);
        }

        return arange(past, past + t, ScalarType.Int64, Device).unsqueeze(0);
    }
}
