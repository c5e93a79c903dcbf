import Foundation
import Core
import Engine
import Imaging

// MARK: - Inpainting with a diffusion model: regenerate the masked region of a scan

public struct InpaintRequest {
    public var model: String
    public var image: URL
    public var mask: URL
    public var out: URL
    public var className: String?
    public var seed: UInt64 = 0
    public var sampling = SamplerSettings()
    public init(model: String, image: URL, mask: URL, out: URL) { self.model = model; self.image = image; self.mask = mask; self.out = out }
}

/// Regenerates the pixels where `mask` is non-zero so they blend with the rest (RePaint-style);
/// the unmasked pixels of the output equal the input's. Image and mask must have the same size;
/// they are resized to the model's size when it differs.
public func inpaint(_ request: InpaintRequest, progress style: ProgressStyle = .human) throws {
    let modelURL = try resolveModelFile(request.model)
    // Pixel models inpaint directly; latent models in latent space, then the known pixels are pasted back.
    let config: (imageSize: Int, channels: Int, classNames: [String], numClasses: Int)
    let sampleInpainted: (_ known: [Float], _ mask: [Float], _ label: [Int]?) -> [Float]
    switch try loadModel(from: modelURL) {
    case .diffusion(let sampler, let unet):
        try sampler.checkSettings(request.sampling)
        config = (unet.imageSize, unet.channels, unet.classNames, unet.numClasses)
        sampleInpainted = { known, mask, label in
            sampler.sample(indices: [0], labels: label, seed: request.seed, settings: request.sampling, known: known, mask: mask)
        }
    case .latentDiffusion(let model):
        try model.sampler.checkSettings(request.sampling)
        config = (model.imageSize, model.channels, model.config.classNames, model.config.unet.numClasses)
        sampleInpainted = { known, mask, label in latentInpaint(model, known: known, mask: mask, label: label, seed: request.seed, settings: request.sampling) }
    default:
        throw MedSynthError(file: modelURL.path, "not a diffusion model: inpainting needs a diffusion or latent diffusion model")
    }
    let image = try readImage(at: request.image)
    let maskImage = try readImage(at: request.mask)
    guard image.width == maskImage.width, image.height == maskImage.height else {
        throw MedSynthError(file: request.mask.path, "mask is \(maskImage.width)x\(maskImage.height) but the image is \(image.width)x\(image.height)")
    }
    var label: [Int]? = nil
    if let name = request.className {
        guard let index = config.classNames.firstIndex(of: name) else {
            throw MedSynthError(file: modelURL.path, config.classNames.isEmpty ? "model is unconditional; --class cannot be honoured"
                                : "model does not know class '\(name)' (it knows: \(config.classNames.joined(separator: ", ")))")
        }
        label = [index]
    } else if config.numClasses > 0 {
        label = [config.numClasses]   // the null label: unconditional
    }
    let size = config.imageSize
    let working = (image.width == size && image.height == size) ? image : image.resized(width: size, height: size)
    let workingMask = (maskImage.width == size && maskImage.height == size) ? maskImage : maskImage.resized(width: size, height: size)
    let known = working.toFloatCHW(channels: config.channels)
    let maskGray = workingMask.toFloatCHW(channels: 1)
    var mask = [Float](repeating: 0, count: known.count)
    for c in 0..<config.channels { for j in 0..<size * size { mask[c * size * size + j] = maskGray[j] > -1 + 1e-3 ? 1 : 0 } }
    guard mask.contains(1) else { throw MedSynthError(file: request.mask.path, "mask has no non-zero pixel: nothing to inpaint") }
    let reporter = ProgressReporter(label: "inpaint", total: 1, unit: "image", style: style)
    reporter.note("\(request.sampling.kind.rawValue), \(request.sampling.steps) steps, \(mask.lazy.filter { $0 != 0 }.count / config.channels) pixels to paint")
    let result = sampleInpainted(known, mask, label)
    reporter.update(done: 1, items: 1)
    var output = Image(floatCHW: result, width: size, height: size, channels: config.channels, bitDepth: image.bitDepth)
    if working != image {
        // Back to the input's size; outside the mask the original pixels are kept exactly.
        output = output.resized(width: image.width, height: image.height)
        let original = image.converted(channels: config.channels)
        var merged = original
        let fullMask = maskImage.converted(channels: 1)
        for y in 0..<image.height { for x in 0..<image.width where fullMask[x, y, 0] != 0 {
            for c in 0..<config.channels { merged[x, y, c] = output[x, y, c] }
        } }
        output = merged
    }
    try writePNG(output, to: request.out)
}

/// Inpainting in latent space: the known image is encoded, a latent cell is regenerated when any
/// pixel of its factor×factor block is masked, and after decoding every unmasked pixel is the
/// known one again (the decoder cannot reproduce them exactly).
func latentInpaint(_ model: LatentDiffusionModel, known: [Float], mask: [Float], label: [Int]?, seed: UInt64, settings: SamplerSettings) -> [Float] {
    let ae = model.config.autoencoder
    let size = ae.imageSize, factor = ae.downsamplingFactor, side = ae.latentSize
    let knownLatent = model.encode(known, count: 1)
    var latentMask = [Float](repeating: 0, count: ae.latentShape.reduce(1, *))
    for y in 0..<size { for x in 0..<size {
        let masked = (0..<ae.channels).contains { mask[$0 * size * size + y * size + x] > 0 }
        if masked { for c in 0..<ae.latentChannels { latentMask[c * side * side + (y / factor) * side + x / factor] = 1 } }
    } }
    let decoded = model.sample(indices: [0], labels: label, seed: seed, settings: settings, known: knownLatent, mask: latentMask)
    return (0..<known.count).map { mask[$0] > 0 ? decoded[$0] : known[$0] }
}
