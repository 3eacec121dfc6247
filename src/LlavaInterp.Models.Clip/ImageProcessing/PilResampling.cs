namespace LlavaInterp.Models.Clip;

/// <summary>
/// Pillow resampling filters with the integer codes Hugging Face stores in <c>preprocessor_config.json</c>
/// (<c>PILImageResampling</c>).
/// </summary>
public enum PilResampling
{
    /// <summary>Nearest neighbour (0). Not supported by this port.</summary>
    Nearest = 0,

    /// <summary>Lanczos, support 3 (1).</summary>
    Lanczos = 1,

    /// <summary>Bilinear (triangle), support 1 (2).</summary>
    Bilinear = 2,

    /// <summary>Bicubic, a = -0.5, support 2 (3). CLIP's default.</summary>
    Bicubic = 3,

    /// <summary>Box, support 0.5 (4).</summary>
    Box = 4,

    /// <summary>Hamming-windowed sinc, support 1 (5).</summary>
    Hamming = 5,
}
