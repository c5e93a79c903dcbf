import Core
import Engine

// MARK: - Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for
// Data-Efficient GAN Training")
//
// Applied to real and fake images alike before the discriminator, so D cannot memorise a small
// training set while gradients still reach G. Order as in DiffAugment: colour (brightness,
// contrast), translation, cutout. Horizontal flips only when asked: anatomy has a side.

public struct AugmentationOptions: Codable, Equatable {
    public var brightness = true
    public var contrast = true
    public var translation = true
    public var cutout = true
    public var horizontalFlip = false
    /// Largest shift as a fraction of the image side.
    public var translationRatio: Float = 0.125
    /// Side of the cut-out square as a fraction of the image side.
    public var cutoutRatio: Float = 0.5

    public init() {}

    /// The ops `--augment-ops` can name; `colour` is brightness and contrast together.
    public static let opNames = ["brightness", "contrast", "colour", "translation", "cutout"]

    /// Only the named ops on (flips unchanged), e.g. ["translation", "cutout"]: colour changes
    /// alter the intensities that make up an MR image's contrast, which D then cannot judge.
    public mutating func enableOnly(_ names: [String]) throws {
        guard !names.isEmpty else { throw MedSynthError("--augment-ops needs at least one of \(Self.opNames.joined(separator: ", ")) (or use --no-augment)") }
        for name in names where !Self.opNames.contains(name) {
            throw MedSynthError("--augment-ops: unknown op '\(name)'; choose from \(Self.opNames.joined(separator: ", "))")
        }
        brightness = names.contains("brightness") || names.contains("colour")
        contrast = names.contains("contrast") || names.contains("colour")
        translation = names.contains("translation")
        cutout = names.contains("cutout")
    }
}

/// Augments N×C×H×W images with per-sample parameters from `stream`; differentiable w.r.t. x.
/// With `probability` p each enabled op is applied to each sample independently with probability p
/// (ADA's scheme, Karras et al. 2020 §2.3); nil applies every op to every sample (DiffAugment's).
public func diffAugment(_ x: Tensor, options: AugmentationOptions, probability: Float? = nil, stream: inout RandomStream) -> Tensor {
    let n = x.shape[0], h = x.shape[2], w = x.shape[3]
    var draws = [SampleAugmentation](repeating: SampleAugmentation(), count: n)
    /// Whether an enabled op is applied to this sample: always without p, else one draw against p.
    func applies(_ enabled: Bool) -> Bool {
        guard enabled else { return false }
        guard let probability else { return true }
        return stream.uniform() < probability
    }
    for i in 0..<n {
        var d = SampleAugmentation()
        if applies(options.brightness) { d.brightness = stream.uniform() - 0.5 }
        if applies(options.contrast) { d.contrast = stream.uniform() + 0.5 }
        if applies(options.translation) {
            let maxX = Int(Float(w) * options.translationRatio + 0.5), maxY = Int(Float(h) * options.translationRatio + 0.5)
            d.shiftX = stream.int(below: 2 * maxX + 1) - maxX
            d.shiftY = stream.int(below: 2 * maxY + 1) - maxY
        }
        if applies(options.cutout) {
            d.cutSide = Int(Float(min(h, w)) * options.cutoutRatio + 0.5)
            d.cutX = stream.int(below: w + 1 - d.cutSide % 2) - d.cutSide / 2
            d.cutY = stream.int(below: h + 1 - d.cutSide % 2) - d.cutSide / 2
        }
        if applies(options.horizontalFlip) { d.flip = stream.uniform() < 0.5 }
        draws[i] = d
    }
    return augmentImages(x, draws)
}
