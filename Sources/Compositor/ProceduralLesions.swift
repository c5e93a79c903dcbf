import Core
import Engine
import Foundation
import Imaging

// MARK: - Procedural lesions

/// Brightness of procedural lesions relative to the tissue around them.
public enum LesionPolarity: String, Sendable, CaseIterable {
    /// Brighter than the surroundings (e.g. enhancing or T2-hyperintense lesions).
    case hyper
    /// Darker than the surroundings.
    case hypo
    /// Each lesion draws hyper or hypo with probability ½.
    case mixed
}

/// Settings for the procedural lesion generator.
public struct ProceduralLesionSettings: Equatable, Sendable {
    /// Largest patch side in pixels; lesion diameters range from about 3 pixels to about 0.7 of it.
    public var size: Int
    public var polarity: LesionPolarity
    /// 8 or 16.
    public var bitDepth: Int

    public init(size: Int = 64, polarity: LesionPolarity = .hyper, bitDepth: Int = 16) {
        self.size = size
        self.polarity = polarity
        self.bitDepth = bitDepth
    }
}

/// Makes one lesion patch from `random`: a lobulated blob whose radius is modulated by four
/// low-frequency harmonics, r(θ) = r₀ (1 + Σ_{k=2}^{5} a_k cos(kθ + φ_k)), with a sigmoid rim of
/// random width, a textured interior (Gaussian-smoothed noise) and faintly textured surroundings at
/// mid-gray. The radius r₀ is log-uniform, so small lesions are as common as large ones. The patch
/// is cropped to the lesion plus a margin (side ≤ `settings.size`); the mask is the blob's inside
/// (signed radial distance ≤ 0), where the rim profile is ≥ ½.
public func makeProceduralLesion(settings: ProceduralLesionSettings, random: inout RandomStream) -> LesionPatch {
    let maxSide = max(9, settings.size)
    let top = Float(settings.bitDepth == 16 ? 65535 : 255)
    // Shape.
    var amplitudes: [Double] = [], phases: [Double] = []
    for k in 2...5 {
        amplitudes.append(Double(random.uniform()) * 0.3 / Double(k))
        phases.append(Double(random.uniform()) * 2 * Double.pi)
    }
    let lobeSum = amplitudes.reduce(0, +)
    let rim = Double(random.uniform(0.4, 1.6))
    let pad = 3.0
    let rLargest = max(1.5, (Double(maxSide) / 2 - pad - 2 * rim) / (1 + lobeSum))
    let rSmallest = min(1.5, rLargest)
    let r0 = rSmallest * pow(rLargest / rSmallest, Double(random.uniform()))
    let halfSide = min((maxSide - 1) / 2, Int((r0 * (1 + lobeSum) + 2 * rim + pad).rounded(.up)))
    let side = 2 * halfSide + 1
    let centre = Double(halfSide) + Double(random.uniform(-0.5, 0.5))
    let centreY = Double(halfSide) + Double(random.uniform(-0.5, 0.5))
    // Intensity: mid-gray surroundings, lesion contrast 25-70 % of that level.
    let hyper: Bool
    switch settings.polarity {
    case .hyper: hyper = true
    case .hypo: hyper = false
    case .mixed: hyper = random.uniform() < 0.5
    }
    let level = top / 2
    let contrast = Float(random.uniform(0.25, 0.7)) * (hyper ? 1 : -1)
    let textureAmount = random.uniform(0.1, 0.35)
    let texture = smoothedNoise(side: side, sigma: Float(max(0.7, r0 / 4)), random: &random)
    let surround = smoothedNoise(side: side, sigma: 1, random: &random)

    var plane = Plane(width: side, height: side)
    var mask = BinaryMask(width: side, height: side)
    for y in 0..<side {
        for x in 0..<side {
            let dx = Double(x) - centre, dy = Double(y) - centreY
            let rho = (dx * dx + dy * dy).squareRoot(), theta = atan2(dy, dx)
            var radius = 1.0
            for k in 0..<4 { radius += amplitudes[k] * cos(Double(k + 2) * theta + phases[k]) }
            let signed = rho - r0 * radius
            let profile = Float(1 / (1 + exp(signed / rim)))
            let i = y * side + x
            let tissue = level * (1 + 0.02 * surround[i])
            let lesion = level * contrast * (1 + textureAmount * texture[i])
            plane.values[i] = min(max(tissue + profile * lesion, 0), top).rounded()
            if signed <= 0 { mask.bits[i] = 1 }
        }
    }
    // The centre pixel is inside for any r₀ > 0.5, but keep the guarantee explicit.
    if mask.count == 0 { mask[halfSide, halfSide] = true }
    return LesionPatch(name: "procedural", planes: [plane], mask: mask, bitDepth: settings.bitDepth)
}

/// White Gaussian noise blurred by a Gaussian of `sigma` pixels, rescaled to unit standard deviation.
func smoothedNoise(side: Int, sigma: Float, random: inout RandomStream) -> [Float] {
    let noise = (0..<(side * side)).map { _ in random.normal() }
    let radius = max(1, Int((3 * sigma).rounded(.up)))
    var kernel = (-radius...radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
    let norm = kernel.reduce(0, +)
    kernel = kernel.map { $0 / norm }
    // Separable blur, rows then columns, the edge repeated.
    var rows = [Float](repeating: 0, count: side * side)
    var blurred = [Float](repeating: 0, count: side * side)
    for y in 0..<side {
        for x in 0..<side {
            var sum: Float = 0
            for k in -radius...radius { sum += kernel[k + radius] * noise[y * side + min(max(x + k, 0), side - 1)] }
            rows[y * side + x] = sum
        }
    }
    for y in 0..<side {
        for x in 0..<side {
            var sum: Float = 0
            for k in -radius...radius { sum += kernel[k + radius] * rows[min(max(y + k, 0), side - 1) * side + x] }
            blurred[y * side + x] = sum
        }
    }
    let mean = blurred.reduce(0, +) / Float(blurred.count)
    var variance: Float = 0
    for v in blurred { variance += (v - mean) * (v - mean) }
    let std = (variance / Float(blurred.count)).squareRoot()
    return blurred.map { std > 0 ? ($0 - mean) / std : 0 }
}

/// Procedural lesions as a source: lesion `i` comes from stream `i` of `seed`, made on demand.
public struct ProceduralLesionSource: LesionSource {
    public let seed: UInt64
    public let count: Int
    public let settings: ProceduralLesionSettings

    public init(seed: UInt64, count: Int, settings: ProceduralLesionSettings = ProceduralLesionSettings()) {
        precondition(count > 0, "ProceduralLesionSource needs count > 0")
        self.seed = seed
        self.count = count
        self.settings = settings
    }

    public func lesion(_ index: Int) throws -> LesionPatch {
        var random = RandomStream(seed: seed).split(UInt64(index))
        var patch = makeProceduralLesion(settings: settings, random: &random)
        patch.name = sourceLabel(index)
        return patch
    }

    public func sourceLabel(_ index: Int) -> String {
        "procedural:seed=\(seed),index=\(index),polarity=\(settings.polarity.rawValue)"
    }
}

/// Writes `count` procedural lesions to `folder` as `lesion_NNNN.png` (gray, `settings.bitDepth`)
/// with `lesion_NNNN_mask.png` (8-bit, 255 = lesion) beside each; the folder is created if needed.
/// Lesion `i` depends only on (`seed`, `i`). Returns the patch files written.
@discardableResult
public func writeProceduralLesions(to folder: URL, count: Int, seed: UInt64,
                                   settings: ProceduralLesionSettings = ProceduralLesionSettings()) throws -> [URL] {
    guard count > 0 else { throw MedSynthError("lesions: --count must be at least 1, got \(count)") }
    guard settings.size >= 9 else { throw MedSynthError("lesions: --size must be at least 9 pixels, got \(settings.size)") }
    guard settings.bitDepth == 8 || settings.bitDepth == 16 else {
        throw MedSynthError("lesions: bit depth must be 8 or 16, got \(settings.bitDepth)")
    }
    do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
        throw MedSynthError(file: folder.path, "cannot create folder (\(error.localizedDescription))")
    }
    let source = ProceduralLesionSource(seed: seed, count: count, settings: settings)
    let digits = max(4, String(count - 1).count)
    var written: [URL] = []
    for i in 0..<count {
        let patch = try source.lesion(i)
        let name = "lesion_" + String(repeating: "0", count: max(0, digits - String(i).count)) + String(i)
        var image = Image(width: patch.mask.width, height: patch.mask.height, channels: 1, bitDepth: settings.bitDepth)
        image.setChannel(0, from: patch.planes[0])
        let maskImage = Image(width: patch.mask.width, height: patch.mask.height, channels: 1, bitDepth: 8,
                              samples: patch.mask.bits.map { $0 != 0 ? 255 : 0 })
        let url = folder.appendingPathComponent(name + ".png")
        // Mask first: a patch file never exists without its mask.
        try writePNG(maskImage, to: folder.appendingPathComponent(name + "_mask.png"))
        try writePNG(image, to: url)
        written.append(url)
    }
    return written
}
