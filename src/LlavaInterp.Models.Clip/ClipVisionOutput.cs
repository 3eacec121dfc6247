using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>Output of the CLIP vision tower (HF <c>BaseModelOutputWithPooling</c>). Owns its tensors.</summary>
public sealed class ClipVisionOutput : IDisposable
{
    private bool _disposed;

    internal ClipVisionOutput(torch.Tensor lastHiddenState, torch.Tensor? pooledOutput, IReadOnlyList<torch.Tensor>? hiddenStates, int layersRun)
    {
        LastHiddenState = lastHiddenState;
        PooledOutput = pooledOutput;
        HiddenStates = hiddenStates;
        LayersRun = layersRun;
    }

    /// <summary>
    /// [batch, tokens, d_model]: the output of the last layer that ran (no <c>post_layernorm</c>); the
    /// <c>pre_layrnorm</c> output when no layer ran.
    /// </summary>
    public torch.Tensor LastHiddenState { get; }

    /// <summary>[batch, d_model]: <c>post_layernorm</c> of the CLS token of the last layer; <see langword="null"/> when
    /// the run stopped early.</summary>
    public torch.Tensor? PooledOutput { get; }

    /// <summary>
    /// HF <c>hidden_states</c> when asked for: index 0 = <c>pre_layrnorm(embeddings)</c>, index i = output of layer i-1
    /// (<see cref="LayersRun"/> + 1 entries); otherwise <see langword="null"/>.
    /// </summary>
    public IReadOnlyList<torch.Tensor>? HiddenStates { get; }

    /// <summary>How many encoder layers ran.</summary>
    public int LayersRun { get; }

    /// <summary>Disposes every tensor of the output.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var all = new List<torch.Tensor> { LastHiddenState };
        if (PooledOutput is not null)
        {
            all.Add(PooledOutput);
        }

        all.AddRange(HiddenStates ?? []);
        foreach (var t in all.Distinct(ReferenceEqualityComparer.Instance).Cast<torch.Tensor>())
        {
            t.Dispose();
        }
    }
}
