namespace Kaiyuan.Gguf;

/// <summary>Metadata value types, numbered as the GGUF specification numbers them.</summary>
public enum GgufValueType : uint
{
    /// <summary>Unsigned 8-bit integer.</summary>
    UInt8 = 0,
    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 1,
    /// <summary>Unsigned 16-bit integer, little-endian.</summary>
    UInt16 = 2,
    /// <summary>Signed 16-bit integer, little-endian.</summary>
    Int16 = 3,
    /// <summary>Unsigned 32-bit integer, little-endian.</summary>
    UInt32 = 4,
    /// <summary>Signed 32-bit integer, little-endian.</summary>
    Int32 = 5,
    /// <summary>32-bit IEEE float, little-endian.</summary>
    Float32 = 6,
    /// <summary>Boolean stored as one byte, 0 or 1.</summary>
    Bool = 7,
    /// <summary>UTF-8 string prefixed by its byte length as a u64.</summary>
    String = 8,
    /// <summary>Array: an element type (u32), a count (u64), then the elements.</summary>
    Array = 9,
    /// <summary>Unsigned 64-bit integer, little-endian.</summary>
    UInt64 = 10,
    /// <summary>Signed 64-bit integer, little-endian.</summary>
    Int64 = 11,
    /// <summary>64-bit IEEE double, little-endian.</summary>
    Float64 = 12,
}

internal static class GgufValueTypeInfo
{
    /// <summary>Encoded size of a fixed-size value, 0 for strings and arrays, -1 for an unknown type.</summary>
    public static int FixedSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        GgufValueType.String or GgufValueType.Array => 0,
        _ => -1,
    };

    /// <summary>The fewest bytes one encoded value of this type can take (bounds counts read from a file).</summary>
    public static int MinEncodedSize(GgufValueType type) => type switch
    {
        GgufValueType.String => 8,
        GgufValueType.Array => 12,
        _ => FixedSize(type),
    };
}
