using Kaiyuan.Quantization;

namespace Kaiyuan.Cli;

/// <summary>The block quantizers <c>kaiyuan quantize</c> writes with.</summary>
internal static class RowQuantizers
{
    /// <summary>The row quantizer for a mix, or null when the build has none for block types (float mixes need none).</summary>
    public static RowQuantizer? ForMix(FileType mix) => null;
}
