using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// Parameters and layers whose storage comes from <c>torch.empty</c>: checkpoint weights overwrite (or, when mapped,
/// replace) it, so nothing is initialised, nothing is allocated on the meta device, and CPU pages are only touched when
/// weights are converted in. <c>nn.Linear(in, out)</c> would run a Kaiming init over memory the checkpoint then
/// overwrites.
/// </summary>
public static class EmptyModules
{
    /// <summary>
    /// Wraps <paramref name="data"/> (consumed) in a parameter without gradient, detached from any dispose scope so that
    /// building or loading a model inside a caller's <c>NewDisposeScope</c> does not dispose its weights.
    /// </summary>
    public static Parameter Own(Tensor data) => (Parameter)new Parameter(data, requires_grad: false).DetachFromDisposeScope();

    /// <summary>An uninitialised parameter of <paramref name="shape"/>.</summary>
    /// <exception cref="OutOfMemoryException">The allocator refused the tensor (libtorch reports it as a bare
    /// <see cref="System.Runtime.InteropServices.ExternalException"/>, which says neither the shape nor the size).</exception>
    public static Parameter Parameter(ScalarType dtype, Device device, params long[] shape)
    {
        Tensor data;
        try
        {
            data = empty(shape, dtype, device);
        }
        catch (System.Runtime.InteropServices.ExternalException ex)
        {
            throw new OutOfMemoryException($"cannot allocate a {dtype} parameter of shape [{string.Join(", ", shape)}] on {device}: {ex.Message.Split('\n')[0]}", ex);
        }

        return Own(data);
    }
}
