import Core
import Engine
import Imaging

// MARK: - Plane

/// One channel of an image as floats in the image's native units (0...255 for 8-bit,
/// 0...65535 for 16-bit), row-major. Float holds every 16-bit value exactly, so the
/// compositor's arithmetic never loses the precision of 16-bit scans.
public struct Plane: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// `height * width` values, row-major.
    public var values: [Float]

    public init(width: Int, height: Int, values: [Float]) {
        precondition(values.count == width * height, "Plane: \(values.count) values for \(width)x\(height)")
        self.width = width
        self.height = height
        self.values = values
    }

    /// A plane filled with `value`.
    public init(width: Int, height: Int, repeating value: Float = 0) {
        self.init(width: width, height: height, values: [Float](repeating: value, count: width * height))
    }

    @inlinable
    public subscript(x: Int, y: Int) -> Float {
        get { values[y * width + x] }
        set { values[y * width + x] = newValue }
    }
}

// MARK: - Image ↔ planes

extension Image {
    /// The colour channels (alpha excluded) as planes in native units.
    public func colorPlanes() -> [Plane] {
        (0..<colorChannels).map { plane(channel: $0) }
    }

    /// Channel `c` as a plane in native units.
    public func plane(channel c: Int) -> Plane {
        var out = Plane(width: width, height: height)
        let n = width * height, stride = channels
        samples.withUnsafeBufferPointer { src in
            out.values.withUnsafeMutableBufferPointer { dst in
                for p in 0..<n { dst[p] = Float(src[p * stride + c]) }
            }
        }
        return out
    }

    /// The mean of the colour channels as one plane (the "gray" used for thresholds and statistics).
    public func grayPlane() -> Plane {
        let planes = colorPlanes()
        if planes.count == 1 { return planes[0] }
        var out = Plane(width: width, height: height)
        let scale = 1 / Float(planes.count)
        for plane in planes {
            for i in out.values.indices { out.values[i] += plane.values[i] * scale }
        }
        return out
    }

    /// Writes `plane` into channel `c`, rounding to the nearest integer (or truncating toward zero
    /// when `truncate` is set, as OpenCV does) and clamping to 0...maxValue.
    public mutating func setChannel(_ c: Int, from plane: Plane, truncate: Bool = false) {
        precondition(plane.width == width && plane.height == height, "setChannel: plane size differs from image")
        let n = width * height, stride = channels
        let top = Float(maxValue)
        plane.values.withUnsafeBufferPointer { src in
            samples.withUnsafeMutableBufferPointer { dst in
                for p in 0..<n {
                    let v = min(max(src[p], 0), top)
                    dst[p * stride + c] = UInt16(truncate ? v.rounded(.towardZero) : v.rounded())
                }
            }
        }
    }
}
