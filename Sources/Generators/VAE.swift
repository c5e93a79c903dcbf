import Foundation
import Core
import Engine
import Layers

// MARK: - Variational autoencoder (Kingma & Welling 2014) in the latent-diffusion layout
//
// Encoder: conv → per level a GroupNorm residual block, then a stride-2 conv (all but the last
// level) → middle residual block → GroupNorm, SiLU, conv to 2·L channels: the mean and log-variance
// of a diagonal Gaussian posterior q(z|x) (Rombach et al. 2022, "AutoencoderKL"). Decoder: conv →
// middle block → per level (coarsest first) a residual block, then nearest ×2 + conv to the next
// level's width → GroupNorm, SiLU, conv to the image channels. The downsampling factor is
// 2^(levels − 1): 4 by default (a 64 px slice becomes a 16×16×4 latent), 8 with four levels.

/// Settings of a VAE, stored beside its weights.
public struct VAEConfig: Codable, Equatable {
    public var imageSize: Int = 64
    public var channels: Int = 1
    public var baseWidth: Int = 32
    /// One width multiplier per level; levels − 1 stride-2 steps.
    public var channelMultipliers: [Int] = [1, 2, 4]
    public var latentChannels: Int = 4
    public var groups: Int = 8
    /// A VAE is unconditional; kept for the training driver.
    public var classNames: [String] = []

    public init(imageSize: Int = 64, channels: Int = 1, baseWidth: Int = 32, channelMultipliers: [Int] = [1, 2, 4],
                latentChannels: Int = 4, groups: Int = 8) {
        self.imageSize = imageSize; self.channels = channels; self.baseWidth = baseWidth
        self.channelMultipliers = channelMultipliers; self.latentChannels = latentChannels; self.groups = groups
    }

    /// The multipliers of a VAE that downsamples by `factor` (2, 4 or 8).
    public static func multipliers(factor: Int) -> [Int]? {
        switch factor { case 2: [1, 2]; case 4: [1, 2, 4]; case 8: [1, 2, 4, 4]; default: nil }
    }

    public var downsamplingFactor: Int { 1 << (channelMultipliers.count - 1) }
    public var latentSize: Int { imageSize / downsamplingFactor }
    /// C×H×W of one latent.
    public var latentShape: [Int] { [latentChannels, latentSize, latentSize] }

    public func validate() throws {
        guard channelMultipliers.count >= 2, channelMultipliers.count <= 4 else {
            throw MedSynthError("VAE needs 2 to 4 levels (downsampling factor 2, 4 or 8), got \(channelMultipliers.count)")
        }
        guard imageSize >= 8, imageSize <= 512, imageSize % downsamplingFactor == 0 else {
            throw MedSynthError("VAE image size \(imageSize) must be 8...512 and divisible by the downsampling factor \(downsamplingFactor)")
        }
        guard channels == 1 || channels == 3 else { throw MedSynthError("VAE channels must be 1 or 3, got \(channels)") }
        guard latentChannels >= 1, latentChannels <= 64 else { throw MedSynthError("VAE latent channels must be 1...64, got \(latentChannels)") }
        guard groups >= 1, channelMultipliers.allSatisfy({ $0 >= 1 && baseWidth * $0 % groups == 0 }) else {
            throw MedSynthError("VAE widths \(channelMultipliers.map { baseWidth * $0 }) must be divisible by \(groups) groups")
        }
    }
}

/// A residual block without a time embedding: x + conv(SiLU(GN(conv(SiLU(GN(x)))))), 1×1 skip when widths differ.
final class VAEResBlock: Module {
    let n1: GroupNorm, c1: Conv2d, n2: GroupNorm, c2: Conv2d
    let skip: Conv2d?

    init(_ cin: Int, _ cout: Int, groups: Int, stream: inout RandomStream) {
        n1 = GroupNorm(groups: groups, channels: cin)
        c1 = Conv2d(cin, cout, kernel: 3, padding: 1, stream: &stream)
        n2 = GroupNorm(groups: groups, channels: cout)
        c2 = Conv2d(cout, cout, kernel: 3, padding: 1, stream: &stream)
        skip = cin != cout ? Conv2d(cin, cout, kernel: 1, stream: &stream) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        c2(n2.withSiLU(c1(n1.withSiLU(x))), residual: skip.map { $0(x) } ?? x)
    }

    func namedTensors() -> [NamedTensor] {
        gather([("n1", n1), ("c1", c1), ("n2", n2), ("c2", c2)] + (skip.map { [("skip", $0 as Module)] } ?? []))
    }
}

public final class VAEEncoder: Module {
    let inp: Conv2d
    let blocks: [VAEResBlock]
    let downs: [Conv2d]
    let mid: VAEResBlock
    let outNorm: GroupNorm, outConv: Conv2d

    init(_ config: VAEConfig, stream: inout RandomStream) {
        let widths = config.channelMultipliers.map { config.baseWidth * $0 }
        inp = Conv2d(config.channels, widths[0], kernel: 3, padding: 1, stream: &stream)
        var c = widths[0]
        var blocks: [VAEResBlock] = [], downs: [Conv2d] = []
        for (i, width) in widths.enumerated() {
            blocks.append(VAEResBlock(c, width, groups: config.groups, stream: &stream)); c = width
            if i < widths.count - 1 { downs.append(Conv2d(c, c, kernel: 3, stride: 2, padding: 1, stream: &stream)) }
        }
        self.blocks = blocks; self.downs = downs
        mid = VAEResBlock(c, c, groups: config.groups, stream: &stream)
        outNorm = GroupNorm(groups: config.groups, channels: c)
        outConv = Conv2d(c, 2 * config.latentChannels, kernel: 3, padding: 1, stream: &stream)
    }

    /// N×C×H×W images → N×2L×h×w posterior moments (mean channels, then log-variance channels).
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = inp(x)
        for (i, block) in blocks.enumerated() {
            h = block(h)
            if i < downs.count { h = downs[i](h) }
        }
        return outConv(outNorm.withSiLU(mid(h)))
    }

    public func namedTensors() -> [NamedTensor] {
        var children: [(String, Module)] = [("inp", inp)]
        for (i, block) in blocks.enumerated() {
            children.append(("down.\(i).res", block))
            if i < downs.count { children.append(("down.\(i).down", downs[i])) }
        }
        children += [("mid", mid), ("out.0", outNorm), ("out.2", outConv)]
        return gather(children)
    }
}

public final class VAEDecoder: Module {
    let inp: Conv2d
    let mid: VAEResBlock
    let blocks: [VAEResBlock]
    let ups: [Conv2d]
    let outNorm: GroupNorm, outConv: Conv2d

    init(_ config: VAEConfig, stream: inout RandomStream) {
        let widths = config.channelMultipliers.map { config.baseWidth * $0 }
        var c = widths.last!
        inp = Conv2d(config.latentChannels, c, kernel: 3, padding: 1, stream: &stream)
        mid = VAEResBlock(c, c, groups: config.groups, stream: &stream)
        var blocks: [VAEResBlock] = [], ups: [Conv2d] = []
        for i in widths.indices.reversed() {
            blocks.append(VAEResBlock(c, widths[i], groups: config.groups, stream: &stream)); c = widths[i]
            // The up conv already narrows to the next level's width: its 3×3 conv runs at the finer
            // resolution, where the wider one would cost twice as much.
            if i > 0 { ups.append(Conv2d(c, widths[i - 1], kernel: 3, padding: 1, stream: &stream)); c = widths[i - 1] }
        }
        self.blocks = blocks; self.ups = ups
        outNorm = GroupNorm(groups: config.groups, channels: c)
        outConv = Conv2d(c, config.channels, kernel: 3, padding: 1, stream: &stream)
    }

    /// N×L×h×w latents → N×C×H×W images (unbounded; clamp to [−1, 1] for pixels).
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid(inp(z))
        for (i, block) in blocks.enumerated() {
            h = block(h)
            if i < ups.count { h = ups[i](upsampleNearest2x(h)) }
        }
        return outConv(outNorm.withSiLU(h))
    }

    public func namedTensors() -> [NamedTensor] {
        var children: [(String, Module)] = [("inp", inp), ("mid", mid)]
        for (i, block) in blocks.enumerated() {
            children.append(("up.\(i).res", block))
            if i < ups.count { children.append(("up.\(i).up", ups[i])) }
        }
        children += [("out.0", outNorm), ("out.2", outConv)]
        return gather(children)
    }
}

public final class VAE: Module {
    public let config: VAEConfig
    public let encoder: VAEEncoder
    public let decoder: VAEDecoder

    public init(_ config: VAEConfig, stream: inout RandomStream) {
        self.config = config
        encoder = VAEEncoder(config, stream: &stream)
        decoder = VAEDecoder(config, stream: &stream)
    }

    /// Posterior moments N×2L×h×w of images N×C×H×W in [−1, 1].
    public func encode(_ x: Tensor) -> Tensor { encoder(x) }
    public func decode(_ z: Tensor) -> Tensor { decoder(z) }

    public func namedTensors() -> [NamedTensor] { gather([("enc", encoder), ("dec", decoder)]) }

    /// Posterior means of `images` (N×C×H×W values), one image per forward pass so a latent never
    /// depends on which other images share its batch.
    public func posteriorMeans(_ images: [Float], count: Int) -> [Float] {
        let per = images.count / max(count, 1), latentPer = config.latentShape.reduce(1, *)
        var out = [Float](repeating: 0, count: count * latentPer)
        withNoGrad {
            for i in 0..<count {
                let moments = encoder(Tensor(shape: [1, config.channels, config.imageSize, config.imageSize],
                                             data: Array(images[i * per..<(i + 1) * per])))
                for j in 0..<latentPer { out[i * latentPer + j] = moments.data[j] }
            }
        }
        return out
    }

    /// Images (clamped to [−1, 1]) decoded from latents N×L×h×w, one latent per forward pass.
    public func decodeImages(_ latents: [Float], count: Int) -> [Float] {
        let latentPer = config.latentShape.reduce(1, *), per = config.channels * config.imageSize * config.imageSize
        var out = [Float](repeating: 0, count: count * per)
        withNoGrad {
            for i in 0..<count {
                let x = decoder(Tensor(shape: [1] + config.latentShape, data: Array(latents[i * latentPer..<(i + 1) * latentPer])))
                for j in 0..<per { out[i * per + j] = min(1, max(-1, x.data[j])) }
            }
        }
        return out
    }
}

// MARK: - The diagonal Gaussian posterior and the losses

/// Log-variance range of the posterior, as diffusers' DiagonalGaussianDistribution: keeps e^logvar finite.
public let posteriorLogVarianceRange: ClosedRange<Float> = -30...20

/// z = μ + σ·ε from moments N×2L×h×w (μ then log σ²) and standard-normal `noise` (N×L×h×w values;
/// nil gives μ): the reparameterisation trick (Kingma & Welling 2014, eq. 10). The log-variance is
/// clamped to `posteriorLogVarianceRange` (no gradient outside it).
public func diagonalGaussianSample(_ moments: Tensor, noise: [Float]?) -> Tensor {
    precondition(moments.rank == 4 && moments.shape[1] % 2 == 0, "diagonalGaussianSample: moments \(moments.shape) need 2·L channels")
    let n = moments.shape[0], latent = moments.shape[1] / 2, plane = moments.shape[2] * moments.shape[3]
    let outCount = n * latent * plane
    if let noise { precondition(noise.count == outCount, "diagonalGaussianSample: \(noise.count) noise values for \(outCount) latents") }
    var out = [Float](repeating: 0, count: outCount)
    // Row r = (sample, channel): its mean starts at (2L·sample + channel)·plane, its log-variance L planes later.
    @inline(__always) func meanOffset(_ r: Int) -> Int { ((r / latent) * 2 * latent + r % latent) * plane }
    for r in 0..<n * latent {
        let m = meanOffset(r), v = m + latent * plane
        for p in 0..<plane {
            let logVariance = min(max(moments.data[v + p], posteriorLogVarianceRange.lowerBound), posteriorLogVarianceRange.upperBound)
            out[r * plane + p] = moments.data[m + p] + (noise.map { Foundation.exp(0.5 * logVariance) * $0[r * plane + p] } ?? 0)
        }
    }
    return Tensor.makeResult(shape: [n, latent, moments.shape[2], moments.shape[3]], data: out, parents: [moments]) { y in
        let g = y.grad!
        moments.withGradBuffer { d in
            for r in 0..<n * latent {
                let m = meanOffset(r), v = m + latent * plane
                for p in 0..<plane {
                    d[m + p] += g[r * plane + p]
                    let raw = moments.data[v + p]
                    if let noise, posteriorLogVarianceRange.contains(raw) {
                        // dz/dlogσ² = ½·σ·ε
                        d[v + p] += g[r * plane + p] * 0.5 * Foundation.exp(0.5 * raw) * noise[r * plane + p]
                    }
                }
            }
        }
    }
}

/// KL(q(z|x) ‖ N(0, I)) per image, averaged over the batch: ½·Σ(μ² + σ² − 1 − log σ²)
/// (Kingma & Welling 2014, appendix B), summed over the latent's elements.
public func diagonalGaussianKL(_ moments: Tensor) -> Tensor {
    precondition(moments.rank == 4 && moments.shape[1] % 2 == 0, "diagonalGaussianKL: moments \(moments.shape) need 2·L channels")
    let n = moments.shape[0], latent = moments.shape[1] / 2, plane = moments.shape[2] * moments.shape[3]
    let half = latent * plane
    var total = 0.0
    for s in 0..<n {
        let base = s * 2 * half
        for j in 0..<half {
            let mu = Double(moments.data[base + j])
            let lv = Double(min(max(moments.data[base + half + j], posteriorLogVarianceRange.lowerBound), posteriorLogVarianceRange.upperBound))
            total += 0.5 * (mu * mu + Foundation.exp(lv) - 1 - lv)
        }
    }
    return Tensor.makeResult(shape: [1], data: [Float(total / Double(n))], parents: [moments]) { y in
        let g = y.grad![0] / Float(n)
        moments.withGradBuffer { d in
            for s in 0..<n {
                let base = s * 2 * half
                for j in 0..<half {
                    d[base + j] += g * moments.data[base + j]
                    let raw = moments.data[base + half + j]
                    if posteriorLogVarianceRange.contains(raw) { d[base + half + j] += g * 0.5 * (Foundation.exp(raw) - 1) }
                }
            }
        }
    }
}

/// Mean absolute error between `prediction` and a constant `target` (PyTorch's L1Loss); the
/// gradient at a zero difference is 0, as torch.sign's.
public func l1Loss(_ prediction: Tensor, _ target: Tensor) -> Tensor {
    precondition(prediction.shape == target.shape, "l1Loss: prediction \(prediction.shape) vs target \(target.shape)")
    let count = prediction.count
    var total = 0.0
    for i in 0..<count { total += Double(abs(prediction.data[i] - target.data[i])) }
    return Tensor.makeResult(shape: [1], data: [Float(total / Double(count))], parents: [prediction]) { y in
        let g = y.grad![0] / Float(count)
        prediction.withGradBuffer { d in
            for i in 0..<count {
                let diff = prediction.data[i] - target.data[i]
                d[i] += diff > 0 ? g : (diff < 0 ? -g : 0)
            }
        }
    }
}
