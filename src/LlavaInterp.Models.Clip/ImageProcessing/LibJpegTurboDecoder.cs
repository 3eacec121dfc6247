using System.Runtime.InteropServices;
using System.Text;
using LlavaInterp.Native;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// JPEG through libjpeg-turbo 2.1.5 with its SIMD code, driven by the calls Pillow's JPEG decoder makes (the package's
/// <c>libllavainterp_jpeg.so</c>, built by eng/native/jpegshim). On valid files this equals Skia's decoder; on damaged
/// ones it is what makes the result Pillow's: Skia's libjpeg-turbo has no SIMD, and its C IDCT disagrees with the SIMD
/// one when corrupt coefficients overflow 16 bits, and Skia never reads the markers after the image data, where Pillow
/// (through <c>jpeg_finish_decompress</c>) fails on an unknown marker or a second scan.
/// </summary>
/// <remarks>The shim exists for x86-64 Linux only; elsewhere <see cref="IsAvailable"/> is false and JPEGs go to Skia.</remarks>
internal static class LibJpegTurboDecoder
{
    /// <summary>File name of the shim in the package's native assets.</summary>
    public const string FileName = "libllavainterp_jpeg.so";

    private const int Ok = 0;
    private const int LibJpegError = 1;
    private const int Truncated = 2;
    private const int MessageCapacity = 200;

    private static readonly Lazy<Api?> Loaded = new(Load);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int HeaderFn(IntPtr data, nuint length, out int width, out int height, out int components, IntPtr message, int capacity);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int DecodeFn(IntPtr data, nuint length, int bands, IntPtr pixels, nuint pixelsLength, IntPtr message, int capacity);

    /// <summary>Whether the shim is present and loaded in this process.</summary>
    public static bool IsAvailable => Loaded.Value is not null;

    /// <summary>Decodes <paramref name="bytes"/> as Pillow's <c>Image.open(p).convert("RGB")</c> would (grayscale kept as L).</summary>
    /// <exception cref="ClipImageException">The data are truncated or corrupt (libjpeg's message is kept), the image is
    /// too large, or it has a band count Pillow cannot handle.</exception>
    /// <exception cref="InvalidOperationException">The shim is not available.</exception>
    public static DecodedImage Decode(byte[] bytes, string? name)
    {
        Api api = Loaded.Value ?? throw new InvalidOperationException($"{FileName} is not available on this platform");
        var message = new byte[MessageCapacity];
        GCHandle input = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        GCHandle text = GCHandle.Alloc(message, GCHandleType.Pinned);
        try
        {
            int status = api.Header(input.AddrOfPinnedObject(), (nuint)bytes.Length, out int width, out int height, out int components, text.AddrOfPinnedObject(), MessageCapacity);
            Check(status, message, name);

            // The header alone gives the size: refuse bombs before any pixel memory is allocated.
            PilImageDecoder.CheckSize(width, height, name);
            if (components is not (1 or 3 or 4))
            {
                // Pillow's frame-header parser knows L, RGB and CMYK only.
                throw new ClipImageException(name, $"cannot decode JPEG image: cannot handle {components}-layer images");
            }

            var pixels = new byte[(long)width * height * components];
            GCHandle output = GCHandle.Alloc(pixels, GCHandleType.Pinned);
            try
            {
                status = api.Decode(input.AddrOfPinnedObject(), (nuint)bytes.Length, components, output.AddrOfPinnedObject(), (nuint)pixels.LongLength, text.AddrOfPinnedObject(), MessageCapacity);
            }
            finally
            {
                output.Free();
            }

            Check(status, message, name);
            return components switch
            {
                1 => new DecodedImage(width, height, PilImageMode.L, pixels, "JPEG"),
                3 => new DecodedImage(width, height, PilImageMode.Rgb, pixels, "JPEG"),
                _ => new DecodedImage(width, height, PilImageMode.Rgb, CmykToRgb(pixels), "JPEG"),
            };
        }
        finally
        {
            text.Free();
            input.Free();
        }
    }

    /// <summary>
    /// Pillow's path for 4-band JPEGs: the "CMYK;I" raw mode (Adobe's inverted storage, which Pillow always assumes)
    /// then <c>convert("RGB")</c>'s <c>cmyk2rgb</c>, each channel <c>(255 − k) − (c · (255 − k)) / 255</c> in its
    /// rounded integer form.
    /// </summary>
    internal static byte[] CmykToRgb(byte[] stored)
    {
        var rgb = new byte[stored.LongLength / 4 * 3];
        for (long i = 0, j = 0; i < stored.LongLength; i += 4, j += 3)
        {
            int nk = stored[i + 3]; // 255 − (255 − stored k)
            for (int c = 0; c < 3; c++)
            {
                int tmp = ((255 - stored[i + c]) * nk) + 128;
                int v = nk - (((tmp >> 8) + tmp) >> 8);
                rgb[j + c] = (byte)Math.Clamp(v, 0, 255);
            }
        }

        return rgb;
    }

    private static void Check(int status, byte[] message, string? name)
    {
        switch (status)
        {
            case Ok:
                return;
            case Truncated:
                throw new ClipImageException(name, "cannot decode JPEG image: the file is truncated");
            case LibJpegError:
                int end = Array.IndexOf(message, (byte)0);
                string text = Encoding.UTF8.GetString(message, 0, end < 0 ? message.Length : end);
                throw new ClipImageException(name, $"cannot decode JPEG image: the image data are corrupt ({text})");
            default:
                throw new ClipImageException(name, $"cannot decode JPEG image: {FileName} reported status {status}");
        }
    }

    private static Api? Load()
    {
        if (!NativeRuntime.IsLinuxX64)
        {
            return null;
        }

        foreach (string path in NativeRuntime.LibraryCandidates(FileName, typeof(LibJpegTurboDecoder).Assembly))
        {
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out IntPtr handle)
                && NativeLibrary.TryGetExport(handle, "li_jpeg_header", out IntPtr header)
                && NativeLibrary.TryGetExport(handle, "li_jpeg_decode", out IntPtr decode))
            {
                return new Api(Marshal.GetDelegateForFunctionPointer<HeaderFn>(header), Marshal.GetDelegateForFunctionPointer<DecodeFn>(decode));
            }
        }

        return null;
    }

    private sealed record Api(HeaderFn Header, DecodeFn Decode);
}
