import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Reconstruction through a VAE: what the latent keeps, as PSNR and SSIM

/// SSIM of two images in [−1, 1] (CHW, `channels`×`size`²), on the [0, 1] scale: Wang et al. 2004
/// eq. 13 with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, averaged over every
/// window that fits inside the image ("valid" windows) and over channels.
public func structuralSimilarity(_ a: [Float], _ b: [Float], channels: Int, size: Int) -> Double {
    let radius = min(5, (size - 1) / 2), width = 2 * radius + 1
    var kernel = (0..<width).map { i -> Double in let d = Double(i - radius); return Foundation.exp(-d * d / (2 * 1.5 * 1.5)) }
    let total = kernel.reduce(0, +)
    kernel = kernel.map { $0 / total }
    let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
    var sum = 0.0, windows = 0
    for c in 0..<channels {
        let base = c * size * size
        func value(_ v: [Float], _ x: Int, _ y: Int) -> Double { (Double(v[base + y * size + x]) + 1) / 2 }
        for y0 in 0...(size - width) { for x0 in 0...(size - width) {
            var ma = 0.0, mb = 0.0, aa = 0.0, bb = 0.0, ab = 0.0
            for dy in 0..<width { for dx in 0..<width {
                let w = kernel[dy] * kernel[dx]
                let va = value(a, x0 + dx, y0 + dy), vb = value(b, x0 + dx, y0 + dy)
                ma += w * va; mb += w * vb; aa += w * va * va; bb += w * vb * vb; ab += w * va * vb
            } }
            let varA = aa - ma * ma, varB = bb - mb * mb, cov = ab - ma * mb
            sum += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (varA + varB + c2))
            windows += 1
        } }
    }
    return sum / Double(max(windows, 1))
}

/// PSNR in dB of two images in [−1, 1] (peak-to-peak 2, i.e. 1 on the [0, 1] scale).
public func peakSignalToNoise(_ a: [Float], _ b: [Float]) -> Double {
    var squared = 0.0
    for i in a.indices { let d = Double(a[i] - b[i]); squared += d * d }
    return Double(psnr(mse: Float(squared / Double(max(a.count, 1)))))
}

public struct ReconstructionReport {
    public var files: [(input: URL, output: URL, psnr: Double, ssim: Double)] = []
    /// Per latent channel: mean and standard deviation of the posterior means, in scaled-latent units
    /// (the units latent diffusion works in; a healthy VAE has every channel near mean 0, std 1).
    public var latentChannels: [(mean: Double, std: Double)] = []
    public var meanPSNR: Double { files.isEmpty ? 0 : files.map(\.psnr).reduce(0, +) / Double(files.count) }
    public var meanSSIM: Double { files.isEmpty ? 0 : files.map(\.ssim).reduce(0, +) / Double(files.count) }
}

/// The VAE (and its latent scale) of a VAE model file or of a latent diffusion model (its embedded autoencoder).
public func loadAutoencoderForReconstruction(_ path: String) throws -> (vae: VAE, scale: Float) {
    let url = try resolveModelFile(path)
    switch try loadModel(from: url) {
    case .vae(let vae, let scale): return (vae, scale)
    case .latentDiffusion(let model): return (model.vae, model.config.latentScale)
    default: throw MedSynthError(file: url.path, "not a VAE or latent diffusion model: nothing to reconstruct with")
    }
}

/// Encodes every image of `input` (a dataset folder; images are cropped and resized to the VAE's
/// size as for training) to its posterior mean, decodes it, writes the reconstruction under
/// `output` at the same relative path (as PNG) and measures PSNR and SSIM against the input.
/// `latentNoise` > 0 adds Gaussian noise of that standard deviation, in units of the latents' std,
/// to every latent before decoding: how much a small error of a latent diffusion model costs in pixels.
public func reconstructFolder(model: String, input: URL, output: URL, latentNoise: Float = 0, seed: UInt64 = 0,
                              progress style: ProgressStyle = .human) throws -> ReconstructionReport {
    guard latentNoise.isFinite, latentNoise >= 0, latentNoise <= 100 else {
        throw MedSynthError("--latent-noise \(latentNoise) must be between 0 and 100 (a multiple of the latents' std)")
    }
    let (vae, scale) = try loadAutoencoderForReconstruction(model)
    let config = vae.config
    guard input.standardizedFileURL.path != output.standardizedFileURL.path else {
        throw MedSynthError(file: output.path, "output folder is the input folder; reconstructions would replace the originals")
    }
    let dataset = try ImageFolderDataset(root: input, imageSize: config.imageSize, channels: config.channels)
    let root = input.standardizedFileURL.resolvingSymlinksInPath().path
    var report = ReconstructionReport()
    let reporter = ProgressReporter(label: "reconstruct", total: dataset.count, unit: "image", style: style)
    let batch = 16
    let latentChannels = config.latentChannels, latentPlane = config.latentSize * config.latentSize
    var channelSum = [Double](repeating: 0, count: latentChannels), channelSquares = channelSum
    var start = 0
    while start < dataset.count {
        let indices = Array(start..<min(dataset.count, start + batch))
        let images = try indices.map { try dataset.tensorData(at: $0) }
        let flat = images.flatMap { $0 }
        var latents = vae.posteriorMeans(flat, count: indices.count)
        for (j, value) in latents.enumerated() {
            let c = (j / latentPlane) % latentChannels, scaled = Double(value * scale)
            channelSum[c] += scaled; channelSquares[c] += scaled * scaled
        }
        if latentNoise > 0 {
            // Noise of image i comes from its own stream, so the result does not depend on batching.
            let per = latents.count / indices.count
            for (row, index) in indices.enumerated() {
                var stream = RandomStream(seed: seed).split(.reconstructionNoise).split(UInt64(index))
                var noise = [Float](repeating: 0, count: per)
                noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
                for j in 0..<per { latents[row * per + j] += latentNoise / scale * noise[j] }
            }
        }
        let decoded = vae.decodeImages(latents, count: indices.count)
        let per = dataset.itemCount
        for (row, index) in indices.enumerated() {
            let entry = dataset.entries[index]
            let recon = Array(decoded[row * per..<(row + 1) * per])
            let full = entry.url.standardizedFileURL.resolvingSymlinksInPath().path
            var relative = full.hasPrefix(root + "/") ? String(full.dropFirst(root.count + 1)) : entry.url.lastPathComponent
            relative = (relative as NSString).deletingPathExtension
            if relative.hasSuffix(".nii") { relative = (relative as NSString).deletingPathExtension }
            if entry.frame > 0 { relative += String(format: "_%04d", entry.frame) }
            let out = output.appendingPathComponent(relative + ".png")
            do { try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true) }
            catch { throw MedSynthError(file: out.deletingLastPathComponent().path, "cannot create the folder (\(error.localizedDescription))") }
            try writePNG(Image(floatCHW: recon, width: config.imageSize, height: config.imageSize, channels: config.channels, bitDepth: 8), to: out)
            report.files.append((entry.url, out, peakSignalToNoise(images[row], recon),
                                 structuralSimilarity(images[row], recon, channels: config.channels, size: config.imageSize)))
        }
        start += indices.count
        reporter.update(done: start, items: start)
    }
    let perChannel = Double(max(dataset.count * latentPlane, 1))
    report.latentChannels = (0..<latentChannels).map { c in
        let mean = channelSum[c] / perChannel
        return (mean, (max(channelSquares[c] / perChannel - mean * mean, 0)).squareRoot())
    }
    return report
}
