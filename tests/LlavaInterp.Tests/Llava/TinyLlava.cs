using LlavaInterp.Llava;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Llava;

/// <summary>The fixture LLaVA model, loaded once per test class that needs it.</summary>
public sealed class TinyLlavaFixture : IDisposable
{
    public TinyLlavaFixture()
    {
        Model = HookedLlava.FromPretrained(Fixture.ModelDir);
    }

    public HookedLlava Model { get; }

    /// <summary>The image_chat prompt exactly as HF's processor built it (rendered template, raw tokenization).</summary>
    public LlavaPrompt ImageChatPrompt() =>
        Model.Processor!.Prepare(Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!, [Fixture.Image("gradient_rgb")], raw: true);

    public void Dispose() => Model.Dispose();
}
