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
    let (sampler, config) = try loadDiffusionSampler(from: modelURL)
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
    let result = sampler.sample(indices: [0], labels: label, seed: request.seed, settings: request.sampling, known: known, mask: mask)
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
