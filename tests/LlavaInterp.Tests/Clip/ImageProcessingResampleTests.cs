using System.Security.Cryptography;
using LlavaInterp.Models.Clip;

namespace LlavaInterp.Tests.Clip;

/// <summary>
/// <see cref="PillowResampler"/> against Pillow 11.1.0 on shapes and filters the fixture does not cover
/// (heavy and fractional downscaling, upscaling, one-axis resizes, 1-pixel images, every convolution filter).
/// Inputs are generated from a formula; expected values are SHA-256 digests of
/// <c>np.array(Image.fromarray(src).resize((w, h), filter)).tobytes()</c> computed with Pillow 11.1.0.
/// </summary>
public sealed class ImageProcessingResampleTests
{
    [Theory]
    [InlineData(0, 37, 23, 16, 10, PilResampling.Bicubic, "9965781a874b5c1a671eabffa9cda86d253a2588c37345c1fb8aed2daa9fbc06")]
    [InlineData(0, 50, 40, 7, 5, PilResampling.Bicubic, "8f294d1ff36d1d4f4cd88537ba50c6c75210a86f35787aef621601adc65fb063")]
    [InlineData(0, 5, 7, 31, 43, PilResampling.Bicubic, "52b6c1afb839012b1d3c20419ebcf28d4909ee254322b33b6ff800b1f1d57fa3")]
    [InlineData(1, 40, 30, 40, 17, PilResampling.Bicubic, "dd5d0679bdfb1e5554fada2d42a62904e597cf196a63a9b0f3f65536931e0395")]
    [InlineData(1, 40, 30, 13, 30, PilResampling.Bicubic, "633469f013251caef6aa2c61a4c111022de229ebb7b80f78b424efe0f395a12f")]
    [InlineData(0, 64, 48, 21, 33, PilResampling.Bicubic, "0dc82214a867811c529d60c21244ad94b81ae5e3ab9975413ed4b5908cc67c72")]
    [InlineData(1, 9, 9, 30, 30, PilResampling.Bicubic, "aaac2ffb312294e9e4338f294774b82e4e44d17467a79c064d68ad7cbeb173ee")]
    [InlineData(0, 300, 7, 32, 1, PilResampling.Bicubic, "91c6deed46f0d6798b42fa474a0cd3338a1f61e6432431f7806c2e011b9e3164")]
    [InlineData(0, 1, 1, 5, 3, PilResampling.Bicubic, "2f313f34aa7d9e1eca938eab27f2b9761d56c0c78ed50c623f8daf86ee472c16")]
    [InlineData(0, 33, 27, 39, 32, PilResampling.Bilinear, "375c1528b2b63f77e328e330e944bc8336f044f17fe1ef448387d9da82e0ccde")]
    [InlineData(1, 45, 30, 32, 48, PilResampling.Bilinear, "edd4a61461ef927ceaeea74755daa93f161ef0f743365976df1f6a0a165bc11e")]
    [InlineData(0, 37, 23, 16, 10, PilResampling.Box, "b48108c1a38f36ea4a1b6a494b016ba5e5b73d8f8c650419e67a8e6e9b500817")]
    [InlineData(1, 20, 25, 53, 11, PilResampling.Box, "54103461037b3e0cc6d17291066d07f516489e2266aa54c9e60ee2de0e8ad3fa")]
    [InlineData(0, 37, 23, 16, 10, PilResampling.Hamming, "5a7dc4a917ac2bdafdd3e85d6acc594bae00e96073bf4912b717ac7825de28b2")]
    [InlineData(1, 20, 25, 53, 11, PilResampling.Hamming, "d079391d35e0bd7691ed04fcb68215eac96fb57b10a923ba768c185ad3bd2145")]
    [InlineData(0, 37, 23, 16, 10, PilResampling.Lanczos, "fb6b2f5f854582f7ca920e2d84f489555da75dafd69d2ae246a2cdd74aa7ef62")]
    [InlineData(1, 20, 25, 53, 11, PilResampling.Lanczos, "c968e99f20125ed197c501b5f13c0226927b4cd080d12c47b295e781a53ff456")]
    [InlineData(0, 1000, 3, 17, 2, PilResampling.Bicubic, "9e84f928459f84958bd5973a4729edcb0a210966604812518fb87e4aab950e8a")]
    [InlineData(0, 500, 375, 448, 336, PilResampling.Bicubic, "be475d8187b09f881ce4bb0a5761bf405dd388b9bed6d2bc36aae030a3ded317")]
    [InlineData(1, 333, 500, 336, 504, PilResampling.Bicubic, "b8d5b440b825af83850a91f669db2d76b0e290d35ed691c033846806bbd38d5a")]
    public void MatchesPillowDigest(int pattern, int width, int height, int outWidth, int outHeight, PilResampling filter, string expectedSha256)
    {
        RgbImage source = Pattern(pattern, width, height);
        RgbImage resized = PillowResampler.Resize(source, outWidth, outHeight, filter);
        Assert.Equal(outWidth, resized.Width);
        Assert.Equal(outHeight, resized.Height);
        Assert.Equal(expectedSha256, Convert.ToHexStringLower(SHA256.HashData(resized.Pixels)));
    }

    [Fact]
    public void SameSizeIsACopy()
    {
        RgbImage source = Pattern(0, 7, 5);
        RgbImage same = PillowResampler.Resize(source, 7, 5, PilResampling.Bicubic);
        Assert.Equal(source.Pixels, same.Pixels);
        Assert.NotSame(source.Pixels, same.Pixels);
    }

    [Fact]
    public void UnchangedAxisIsNotFiltered()
    {
        // Only the width changes: every column of a vertically varying image must keep its exact rows.
        var pixels = new byte[4 * 6 * 3];
        for (int y = 0; y < 6; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    pixels[(((y * 4) + x) * 3) + c] = (byte)((y * 50) % 256);
                }
            }
        }

        RgbImage resized = PillowResampler.Resize(new RgbImage(4, 6, pixels), 9, 6, PilResampling.Bicubic);
        for (int y = 0; y < 6; y++)
        {
            for (int x = 0; x < 9; x++)
            {
                Assert.Equal((y * 50) % 256, resized[x, y, 1]);
            }
        }
    }

    [Fact]
    public void InvalidArgumentsThrow()
    {
        RgbImage source = Pattern(0, 4, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => PillowResampler.Resize(source, 0, 4, PilResampling.Bicubic));
        Assert.Throws<ArgumentOutOfRangeException>(() => PillowResampler.Resize(source, 4, -1, PilResampling.Bicubic));
        Assert.Throws<ArgumentException>(() => PillowResampler.Resize(new byte[5], 2, 2, 3, 1, 1, PilResampling.Bicubic));
        Assert.Throws<ArgumentException>(() => new RgbImage(2, 2, new byte[11]));
    }

    /// <summary>The generator used for the Pillow digests (0: textured ramps, 1: hard-edged 0/255 checker).</summary>
    private static RgbImage Pattern(int kind, int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    int v = kind == 0
                        ? ((x * x * 7) + (y * 13) + (x * y * 5) + (c * 101) + ((x ^ y) * 3)) % 256
                        : (((x / 3) + (y / 2) + c) % 2) * 255;
                    pixels[(((y * width) + x) * 3) + c] = (byte)v;
                }
            }
        }

        return new RgbImage(width, height, pixels);
    }
}
