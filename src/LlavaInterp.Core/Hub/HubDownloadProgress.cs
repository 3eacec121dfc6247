namespace LlavaInterp.Hub;

/// <summary>Progress of one file download from the Hugging Face Hub.</summary>
/// <param name="File">The file's path inside the repository (forward slashes), e.g. <c>model.safetensors</c>.</param>
/// <param name="BytesDone">Bytes of the file now on disk, including bytes kept from an earlier interrupted download.</param>
/// <param name="TotalBytes">The file's size, or <see langword="null"/> when the server did not say.</param>
public sealed record HubDownloadProgress(string File, long BytesDone, long? TotalBytes);
