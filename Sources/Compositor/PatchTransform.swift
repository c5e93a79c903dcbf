import Foundation

// MARK: - Geometric jitter

/// A similarity transform of a lesion patch about its mask's centre: optional horizontal flip,
/// then scaling, then rotation (counter-clockwise in image coordinates, degrees).
public struct PatchTransform: Equatable, Sendable {
    public var scale: Double
    public var rotationDegrees: Double
    public var flip: Bool

    public init(scale: Double = 1, rotationDegrees: Double = 0, flip: Bool = false) {
        self.scale = scale
        self.rotationDegrees = rotationDegrees
        self.flip = flip
    }

    public static let identity = PatchTransform()
    public var isIdentity: Bool { scale == 1 && rotationDegrees == 0 && !flip }
}

/// Limits for the per-lesion random jitter; `.none` switches it off.
public struct JitterLimits: Equatable, Sendable {
    /// Scale factor drawn log-uniformly in [1/(1+s), 1+s].
    public var scale: Double
    /// Rotation drawn uniformly in [−r, r] degrees.
    public var rotationDegrees: Double
    /// Horizontal flip with probability ½.
    public var flip: Bool
    /// Intensity: the lesion's contrast multiplied by a factor drawn uniformly in [1−i, 1+i]
    /// (applies with `--match local`).
    public var intensity: Double

    public init(scale: Double = 0.25, rotationDegrees: Double = 180, flip: Bool = true, intensity: Double = 0.2) {
        self.scale = scale
        self.rotationDegrees = rotationDegrees
        self.flip = flip
        self.intensity = intensity
    }

    public static let none = JitterLimits(scale: 0, rotationDegrees: 0, flip: false, intensity: 0)
}

/// Resamples `planes` and `mask` (one size) under `transform`. The result is cropped to the
/// transformed mask's bounding box plus `margin` pixels on each side; values use bilinear
/// interpolation with the edge repeated, the mask is the bilinearly interpolated 0/1 mask ≥ ½.
/// The identity transform is an exact crop, so `--no-jitter` keeps every patch value.
func transformPatch(planes: [Plane], mask: BinaryMask, by transform: PatchTransform, margin: Int = 2)
    -> (planes: [Plane], mask: BinaryMask)
{
    guard let box = mask.boundingBox else { return (planes, mask) }
    let pw = mask.width, ph = mask.height
    if transform.isIdentity {
        let w = box.width + 2 * margin, h = box.height + 2 * margin
        let ox = box.x - margin, oy = box.y - margin
        var outMask = BinaryMask(width: w, height: h)
        var out = planes.map { _ in Plane(width: w, height: h) }
        for y in 0..<h {
            let sy = min(max(oy + y, 0), ph - 1)
            for x in 0..<w {
                let sx = min(max(ox + x, 0), pw - 1)
                for c in planes.indices { out[c].values[y * w + x] = planes[c].values[sy * pw + sx] }
                let mx = ox + x, my = oy + y
                if mx >= 0 && my >= 0 && mx < pw && my < ph && mask[mx, my] { outMask[x, y] = true }
            }
        }
        return (out, outMask)
    }
    // Centre of the mask's bounding box (pixel centres at integer coordinates).
    let cx = Double(box.x) + Double(box.width - 1) / 2, cy = Double(box.y) + Double(box.height - 1) / 2
    let angle = transform.rotationDegrees * Double.pi / 180
    let cosA = cos(angle), sinA = sin(angle), s = transform.scale, f: Double = transform.flip ? -1 : 1
    // Forward map of the box corners gives the output extent.
    var maxX = 0.0, maxY = 0.0
    for (dx, dy) in [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)] {
        let u = f * (dx * Double(box.width)) * s, v = dy * Double(box.height) * s
        maxX = max(maxX, abs(cosA * u - sinA * v))
        maxY = max(maxY, abs(sinA * u + cosA * v))
    }
    let halfW = Int(maxX.rounded(.up)) + margin, halfH = Int(maxY.rounded(.up)) + margin
    let w = 2 * halfW + 1, h = 2 * halfH + 1
    var outMask = BinaryMask(width: w, height: h)
    var out = planes.map { _ in Plane(width: w, height: h) }
    var maskWeight = [Float](repeating: 0, count: w * h)
    for y in 0..<h {
        for x in 0..<w {
            // Inverse map: rotate back, unscale, unflip.
            let u = Double(x - halfW), v = Double(y - halfH)
            let ru = (cosA * u + sinA * v) / s, rv = (-sinA * u + cosA * v) / s
            let sx = cx + f * ru, sy = cy + rv
            let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
            let fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
            let xa = min(max(x0, 0), pw - 1), xb = min(max(x0 + 1, 0), pw - 1)
            let ya = min(max(y0, 0), ph - 1), yb = min(max(y0 + 1, 0), ph - 1)
            let w00 = (1 - fx) * (1 - fy), w10 = fx * (1 - fy), w01 = (1 - fx) * fy, w11 = fx * fy
            for c in planes.indices {
                let vals = planes[c].values
                out[c].values[y * w + x] = w00 * vals[ya * pw + xa] + w10 * vals[ya * pw + xb]
                    + w01 * vals[yb * pw + xa] + w11 * vals[yb * pw + xb]
            }
            // Mask: outside the patch counts as 0.
            func m(_ px: Int, _ py: Int) -> Float {
                px >= 0 && py >= 0 && px < pw && py < ph && mask[px, py] ? 1 : 0
            }
            let mv = w00 * m(x0, y0) + w10 * m(x0 + 1, y0) + w01 * m(x0, y0 + 1) + w11 * m(x0 + 1, y0 + 1)
            maskWeight[y * w + x] = mv
            if mv >= 0.5 { outMask[x, y] = true }
        }
    }
    // A lesion shrunk below one pixel keeps its strongest pixel rather than vanishing.
    if outMask.count == 0, let best = maskWeight.indices.max(by: { maskWeight[$0] < maskWeight[$1] }) {
        outMask.bits[best] = 1
    }
    return (out, outMask)
}
