import Foundation
import Core

// MARK: - Classical augmentation: random affine copies of real images
//
// The baseline that GAN augmentation in medical imaging is measured against (Frid-Adar et al. 2018,
// "GAN-based synthetic medical image augmentation for increased CNN performance in liver lesion
// classification", Section 3.1: rotation, scaling, translation). Unlike a plain copy it moves the
// class's images a little outside the real ones; unlike a generator it never draws a shape the real
// images do not have. Scales are drawn per axis, so a copy can be narrower or wider than its parent.
// No flips: they are not label-preserving for digits and swap hemispheres in brain slices.

/// One random affine transform about the image centre: scale each axis, rotate, then shift.
public struct AffineAugmentation: Codable, Equatable {
    public var rotation_degrees: Double
    public var scale_x: Double
    public var scale_y: Double
    /// Shift in pixels (x right, y down).
    public var shift_x: Double
    public var shift_y: Double

    public init(rotation_degrees: Double, scale_x: Double, scale_y: Double, shift_x: Double, shift_y: Double) {
        self.rotation_degrees = rotation_degrees; self.scale_x = scale_x; self.scale_y = scale_y
        self.shift_x = shift_x; self.shift_y = shift_y
    }

    public static let identity = AffineAugmentation(rotation_degrees: 0, scale_x: 1, scale_y: 1, shift_x: 0, shift_y: 0)

    /// The ranges `balance --method augment` draws from (uniformly): ±15°, each axis ×0.85–1.15,
    /// a shift of up to 8 % of the side. Small enough that a digit or a slice stays what it was.
    public static let maxRotationDegrees = 15.0
    public static let maxScaleChange = 0.15
    public static let maxShiftFraction = 0.08

    /// A draw for an image of `width`×`height` from `stream`.
    public static func random(_ stream: inout RandomStream, width: Int, height: Int) -> AffineAugmentation {
        func symmetric(_ half: Double) -> Double { (2 * stream.uniformDouble() - 1) * half }
        return AffineAugmentation(rotation_degrees: symmetric(maxRotationDegrees),
                                  scale_x: 1 + symmetric(maxScaleChange), scale_y: 1 + symmetric(maxScaleChange),
                                  shift_x: symmetric(maxShiftFraction * Double(width)), shift_y: symmetric(maxShiftFraction * Double(height)))
    }
}

/// `image` under `transform`: output pixel p' shows the input at S⁻¹R⁻¹(p' − c − t) + c (c the
/// centre), bilinearly interpolated, with coordinates outside the image clamped to its edge (the
/// border is extended rather than filled with a value the image may not have). Same size and depth.
public func affineTransformed(_ image: Image, _ transform: AffineAugmentation) -> Image {
    let (w, h, c) = (image.width, image.height, image.channels)
    let cx = Double(w - 1) / 2, cy = Double(h - 1) / 2
    let angle = transform.rotation_degrees * .pi / 180
    let (cosA, sinA) = (cos(angle), sin(angle))
    var out = [UInt16](repeating: 0, count: image.samples.count)
    let maxValue = Double(image.maxValue)
    image.samples.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<h {
                for x in 0..<w {
                    // Undo the shift, the rotation (R⁻¹ = Rᵀ), then the scales.
                    let dx = Double(x) - cx - transform.shift_x, dy = Double(y) - cy - transform.shift_y
                    let sx = min(max((cosA * dx + sinA * dy) / transform.scale_x + cx, 0), Double(w - 1))
                    let sy = min(max((-sinA * dx + cosA * dy) / transform.scale_y + cy, 0), Double(h - 1))
                    let x0 = Int(sx), y0 = Int(sy)
                    let x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1)
                    let fx = sx - Double(x0), fy = sy - Double(y0)
                    for ch in 0..<c {
                        let top = Double(src[(y0 * w + x0) * c + ch]) * (1 - fx) + Double(src[(y0 * w + x1) * c + ch]) * fx
                        let bottom = Double(src[(y1 * w + x0) * c + ch]) * (1 - fx) + Double(src[(y1 * w + x1) * c + ch]) * fx
                        dst[(y * w + x) * c + ch] = UInt16(min(max((top * (1 - fy) + bottom * fy).rounded(), 0), maxValue))
                    }
                }
            }
        }
    }
    return Image(width: w, height: h, channels: c, bitDepth: image.bitDepth, samples: out)
}
