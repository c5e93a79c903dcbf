
/// A decoded raster image that keeps what the file had: bit depth (8 or 16) and channel count
/// (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). Samples are stored interleaved, row-major (HWC),
/// as integers in 0...maxValue whatever the depth, so 16-bit data is never squeezed through 8 bits.
public struct Image: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var bitDepth: Int
    /// `height * width * channels` samples, row-major, channels interleaved.
    public var samples: [UInt16]

    public init(width: Int, height: Int, channels: Int, bitDepth: Int, samples: [UInt16]) {
        precondition(channels >= 1 && channels <= 4, "Image: channels must be 1...4, got \(channels)")
        precondition(bitDepth == 8 || bitDepth == 16, "Image: bit depth must be 8 or 16, got \(bitDepth)")
        precondition(samples.count == width * height * channels,
                     "Image: \(samples.count) samples for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.bitDepth = bitDepth
        self.samples = samples
    }

    /// A zero-filled image.
    public init(width: Int, height: Int, channels: Int, bitDepth: Int) {
        self.init(width: width, height: height, channels: channels, bitDepth: bitDepth,
                  samples: [UInt16](repeating: 0, count: width * height * channels))
    }

    /// Largest sample value at this depth: 255 or 65535.
    public var maxValue: Int { bitDepth == 16 ? 65535 : 255 }
    public var hasAlpha: Bool { channels == 2 || channels == 4 }
    /// Channels that carry colour or intensity (alpha excluded).
    public var colorChannels: Int { hasAlpha ? channels - 1 : channels }

    @inlinable
    public subscript(x: Int, y: Int, c: Int) -> UInt16 {
        get { samples[(y * width + x) * channels + c] }
        set { samples[(y * width + x) * channels + c] = newValue }
    }
}
