using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// HF <c>CLIPVisionTransformer</c> (the <c>vision_model</c> of <c>CLIPVisionModel</c>): embeddings →
/// <c>pre_layrnorm</c> → encoder layers → <c>post_layernorm</c> of the CLS token (pooled output only).
/// </summary>
internal sealed class ClipVisionTransformer : torch.nn.Module<ClipVisionInput, ClipVisionOutput>
{
    [ComponentName(Name = "embeddings")]
    private readonly ClipVisionEmbeddings _embeddings;

    // [batch, tokens, d_model]: embeddings (CLS + patches + positions) before pre_layrnorm.
    [ComponentName(Name = "hook_embed")]
    private readonly HookPoint _hookEmbed;

    [ComponentName(Name = "pre_layrnorm")]
    private readonly CastLayerNorm _preLayrnorm;

    // [batch, tokens, d_model]: pre_layrnorm output = HF hidden_states[0] = blocks.0.hook_resid_pre.
    [ComponentName(Name = "hook_ln_pre_normalized")]
    private readonly HookPoint _hookLnPre;

    [ComponentName(Name = "encoder")]
    private readonly ClipEncoder _encoder;

    [ComponentName(Name = "post_layernorm")]
    private readonly CastLayerNorm _postLayernorm;

    // [batch, d_model]: post_layernorm of the last layer's CLS token = HF pooler_output.
    [ComponentName(Name = "hook_ln_post_normalized")]
    private readonly HookPoint _hookLnPost;

    private readonly ClipVisionConfig _config;

    internal ClipVisionTransformer(ClipVisionConfig config, string hookPrefix, torch.Device device, torch.ScalarType dtype, torch.ScalarType computeDType)
        : base(nameof(ClipVisionTransformer))
    {
        _config = config;
        _embeddings = new ClipVisionEmbeddings(config, hookPrefix, device, dtype, computeDType);
        _hookEmbed = new HookPoint(hookPrefix + "hook_embed");
        _preLayrnorm = new CastLayerNorm(config.HiddenSize, config.LayerNormEps, dtype, device);
        _hookLnPre = new HookPoint(hookPrefix + "ln_pre.hook_normalized");
        _encoder = new ClipEncoder(config, hookPrefix, device, dtype);
        _postLayernorm = new CastLayerNorm(config.HiddenSize, config.LayerNormEps, dtype, device);
        _hookLnPost = new HookPoint(hookPrefix + "ln_post.hook_normalized");
        RegisterComponents();
    }

    /// <summary>The patch, CLS and position embeddings.</summary>
    public ClipVisionEmbeddings Embeddings => _embeddings;

    /// <summary>LayerNorm applied to the embeddings (HF spells it <c>pre_layrnorm</c>).</summary>
    public CastLayerNorm PreLayrnorm => _preLayrnorm;

    /// <summary>The encoder layers.</summary>
    public ClipEncoder Encoder => _encoder;

    /// <summary>LayerNorm for the pooled CLS output only.</summary>
    public CastLayerNorm PostLayernorm => _postLayernorm;

    /// <inheritdoc/>
    public override ClipVisionOutput forward(ClipVisionInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckPixels(input.PixelValues);
        int layers = ResolveStopAtLayer(input.StopAtLayer, _config.NumHiddenLayers);

        using var scope = torch.NewDisposeScope();
        var embeddings = _hookEmbed.call(_embeddings.call(input.PixelValues));
        var hidden = _hookLnPre.call(_preLayrnorm.call(embeddings));
        var hiddenStates = input.OutputHiddenStates ? new List<torch.Tensor> { hidden } : null;
        var last = _encoder.Run(hidden, layers, hiddenStates);

        torch.Tensor? pooled = null;
        if (layers == _config.NumHiddenLayers)
        {
            pooled = _hookLnPost.call(_postLayernorm.call(last.select(1, 0)));
        }

        // The same tensor can sit in several places (last == hiddenStates[^1]); hand each out exactly once.
        var returned = new Dictionary<torch.Tensor, torch.Tensor>(ReferenceEqualityComparer.Instance);
        torch.Tensor Out(torch.Tensor t)
        {
            if (!returned.TryGetValue(t, out var r))
            {
                r = HookResults.ReturnFrom(scope, t);
                returned[t] = r;
            }

            return r;
        }

        return new ClipVisionOutput(
            Out(last),
            pooled is null ? null : Out(pooled),
            hiddenStates?.Select(Out).ToList(),
            layers);
    }

    /// <summary>Turns a <c>StopAtLayer</c> (null, 0..L or negative from the end) into a layer count 0..L.</summary>
    internal static int ResolveStopAtLayer(int? stopAtLayer, int numLayers)
    {
        if (stopAtLayer is not int stop)
        {
            return numLayers;
        }

        int count = stop < 0 ? numLayers + stop : stop;
        if (count < 0 || count > numLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(stopAtLayer), stopAtLayer, $"StopAtLayer must lie in [{-numLayers}, {numLayers}] for a vision tower of {numLayers} layers.");
        }

        return count;
    }

    private void CheckPixels(torch.Tensor pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels, nameof(ClipVisionInput.PixelValues));
        var shape = pixels.shape;
        if (shape.Length != 4)
        {
            throw new ArgumentException($"PixelValues must be [batch, channels, height, width]; got shape [{string.Join(", ", shape)}].", nameof(ClipVisionInput.PixelValues));
        }

        if (shape[1] != _config.NumChannels)
        {
            throw new ArgumentException($"PixelValues has {shape[1]} channels; the model expects {_config.NumChannels}.", nameof(ClipVisionInput.PixelValues));
        }

        if (shape[2] != _config.ImageSize || shape[3] != _config.ImageSize)
        {
            throw new ArgumentException($"Input image size ({shape[2]}*{shape[3]}) doesn't match model ({_config.ImageSize}*{_config.ImageSize}).", nameof(ClipVisionInput.PixelValues));
        }

        if (shape[0] == 0)
        {
            throw new ArgumentException("PixelValues holds no image (batch size 0).", nameof(ClipVisionInput.PixelValues));
        }
    }
}
