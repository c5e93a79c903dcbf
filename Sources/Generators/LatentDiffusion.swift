import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Latent diffusion (Rombach et al. 2022): the same U-Net, trained on a frozen VAE's latents
//
// The U-Net runs with channels = the VAE's latent channels and imageSize = the latent side
// (16 for 64 px images and factor 4), on latents multiplied by the VAE's scale factor so they
// have unit variance. The saved model embeds the VAE's weights under "vae." and its config and
// scale in the model config, so one file samples, inpaints and balances on its own.

/// How training latents are taken from the VAE's posterior q(z|x) = N(μ, σ²).
public enum LatentEncoding: String, Codable, CaseIterable {
    /// z = μ: one deterministic latent per image.
    case mean
    /// z = μ + σ·ε, a fresh draw per step (as the latent-diffusion code's `encode().sample()`).
    case sample
}

public struct LatentDiffusionConfig: Codable, Equatable {
    /// The U-Net on latents (channels = latent channels, imageSize = latent side).
    public var unet: UNetConfig
    public var autoencoder: VAEConfig
    /// Multiplies the VAE's latents before diffusion (1 / their standard deviation).
    public var latentScale: Float
    /// Per-channel normalisation (`--latent-normalisation channel`): diffusion runs on
    /// (z_c − shift_c) · scale_c, each channel with mean 0 and std 1 over the training latents.
    /// nil: every channel is multiplied by `latentScale` (models saved before this option).
    public var latentChannelShift: [Float]? = nil
    public var latentChannelScale: [Float]? = nil
    /// FNV-1a 64 of the autoencoder's weights, so a resumed run refuses another VAE.
    public var autoencoderID: String
    public var encoding: LatentEncoding
    /// The U-Net's classes (top level, where tools look for a model's classes).
    public var classNames: [String]

    public func validate() throws {
        try unet.validate()
        try autoencoder.validate()
        guard unet.channels == autoencoder.latentChannels, unet.imageSize == autoencoder.latentSize else {
            throw MedSynthError("latent U-Net is \(unet.channels)×\(unet.imageSize)² but the VAE's latents are \(autoencoder.latentChannels)×\(autoencoder.latentSize)²")
        }
        guard latentScale.isFinite, latentScale > 0 else { throw MedSynthError("latent scale \(latentScale) must be a positive number") }
        guard (latentChannelShift == nil) == (latentChannelScale == nil) else {
            throw MedSynthError("latent channel normalisation needs both a shift and a scale per channel")
        }
        if let shift = latentChannelShift, let scale = latentChannelScale {
            guard shift.count == autoencoder.latentChannels, scale.count == autoencoder.latentChannels else {
                throw MedSynthError("latent channel normalisation has \(shift.count) shifts and \(scale.count) scales for \(autoencoder.latentChannels) latent channels")
            }
            guard shift.allSatisfy(\.isFinite), scale.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw MedSynthError("latent channel normalisation: shifts must be finite and scales positive")
            }
        }
    }

    /// Diffusion-space latents of VAE latents laid out N×C×h×w.
    func normalise(_ latents: [Float]) -> [Float] { transform(latents, inverse: false) }

    /// VAE latents of diffusion-space latents (the inverse of `normalise`).
    func denormalise(_ latents: [Float]) -> [Float] { transform(latents, inverse: true) }

    private func transform(_ latents: [Float], inverse: Bool) -> [Float] {
        guard let shift = latentChannelShift, let scale = latentChannelScale else {
            return inverse ? latents.map { $0 / latentScale } : latents.map { $0 * latentScale }
        }
        return channelAffine(latents, plane: autoencoder.latentSize * autoencoder.latentSize, shift: shift, scale: scale, inverse: inverse)
    }
}

/// (z − shift_c) · scale_c for every value of channel c of latents laid out N×C×h×w, or with
/// `inverse` z / scale_c + shift_c.
func channelAffine(_ latents: [Float], plane: Int, shift: [Float], scale: [Float], inverse: Bool) -> [Float] {
    let channels = shift.count
    var out = latents
    for i in out.indices {
        let c = (i / plane) % channels
        out[i] = inverse ? out[i] / scale[c] + shift[c] : (out[i] - shift[c]) * scale[c]
    }
    return out
}

/// How latents are brought to unit scale before diffusion.
public enum LatentNormalisation: String, Codable, CaseIterable {
    /// One factor for all channels, 1 / std of all latent values (the latent-diffusion code's `scale_by_std`).
    case global
    /// Each channel shifted to mean 0 and scaled to std 1 over the training latents.
    case channel
    /// Each channel shifted to mean 0 over the training latents, all scaled by the global factor:
    /// the U-Net no longer has to produce the channels' means, and the channels keep their
    /// relative spreads (which `channel` equalises).
    case centred
}

/// Per-channel mean and 1 / std of latents laid out N×C×h×w.
func latentChannelStatistics(_ latents: [Float], channels: Int, plane: Int) -> (shift: [Float], scale: [Float]) {
    var sums = [Double](repeating: 0, count: channels), squares = sums, counts = sums
    for i in latents.indices {
        let c = (i / plane) % channels, v = Double(latents[i])
        sums[c] += v; squares[c] += v * v; counts[c] += 1
    }
    var shift = [Float](repeating: 0, count: channels), scale = [Float](repeating: 1, count: channels)
    for c in 0..<channels where counts[c] > 1 {
        let mean = sums[c] / counts[c]
        let variance = max(0, (squares[c] - counts[c] * mean * mean) / (counts[c] - 1))
        shift[c] = Float(mean)
        scale[c] = variance > 0 ? Float(1 / variance.squareRoot()) : 1
    }
    return (shift, scale)
}

extension LatentDiffusionConfig: ModelConfig {
    public func keepingChangedDefaults(of saved: LatentDiffusionConfig) -> LatentDiffusionConfig {
        var config = self
        config.unet = unet.keepingChangedDefaults(of: saved.unet)
        return config
    }
}

extension ModelKind {
    /// Diffusion models sample with a sampler and a number of steps (recorded in manifests).
    public var isDiffusion: Bool { self == .diffusion || self == .latentDiffusion }
}

/// FNV-1a 64 over a VAE's tensors in name order (values as little-endian Float32 bytes).
func autoencoderIdentifier(_ vae: VAE) -> String {
    var bytes: [UInt8] = []
    for entry in vae.namedTensors() {
        bytes += Array(entry.name.utf8)
        for v in entry.tensor.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    }
    return String(format: "%016llx", FNV1a64.hash(bytes))
}

/// The VAE of `path` (a VAE model file or run folder) with its scale.
func loadAutoencoder(_ path: String) throws -> (vae: VAE, scale: Float, url: URL) {
    let url = try resolveModelFile(path)
    let file = try readCheckpoint(at: url, kind: .vae)
    guard file.metadata[latentScaleKey] != nil else {
        throw MedSynthError(file: url.path, "the VAE has no latent scale yet (train it to its first checkpoint)")
    }
    let (vae, scale) = try loadVAE(file, source: url.path)
    return (vae, scale, url)
}

/// A trainer whose model works on a frozen VAE's latents. Its checkpoints and model file are the
/// inner trainer's plus the VAE's weights under "vae.", so a model file samples on its own.
public protocol FrozenAutoencoderTrainer: ModelTrainer {
    associatedtype Inner: ModelTrainer
    var inner: Inner { get }
    var vae: VAE { get }
}

extension FrozenAutoencoderTrainer {
    public func stateEntries() -> (tensors: [SafetensorsEntry], metadata: [String: String]) {
        let (tensors, metadata) = inner.stateEntries()
        return (tensors + vae.safetensorsEntries(prefix: "vae"), metadata)
    }

    public func restoreState(from state: SafetensorsFile, source: String) throws {
        try inner.restoreState(from: state, source: source)
        try vae.load(state.tensors, source: source, prefix: "vae")
    }

    public func samplingEntries() -> [SafetensorsEntry] {
        inner.samplingEntries() + vae.safetensorsEntries(prefix: "vae")
    }

    /// Copies `request.autoencoder`'s weights into `vae` after checking they are the ones the run began with.
    func attachAutoencoder(request: TrainingRequest, expectedID: String, model: String) throws {
        guard let path = request.autoencoder else { throw MedSynthError("\(model) needs --autoencoder VAE_RUN_OR_FILE") }
        let (loaded, _, url) = try loadAutoencoder(path)
        guard autoencoderIdentifier(loaded) == expectedID else {
            throw MedSynthError(file: url.path, "this VAE's weights differ from the ones the run was started with")
        }
        vae.copyValues(from: loaded)
    }
}

/// A latent diffusion model loaded for sampling: U-Net sampler in latent space + the VAE decoder.
public final class LatentDiffusionModel {
    public let config: LatentDiffusionConfig
    public let sampler: DiffusionSampler
    public let vae: VAE

    public init(config: LatentDiffusionConfig, sampler: DiffusionSampler, vae: VAE) {
        self.config = config; self.sampler = sampler; self.vae = vae
    }

    public var imageSize: Int { config.autoencoder.imageSize }
    public var channels: Int { config.autoencoder.channels }

    /// Scaled latents (posterior means × scale) of images N×C×H×W.
    public func encode(_ images: [Float], count: Int) -> [Float] {
        config.normalise(vae.posteriorMeans(images, count: count))
    }

    /// Images in [−1, 1] decoded from scaled latents.
    public func decode(_ latents: [Float], count: Int) -> [Float] {
        vae.decodeImages(config.denormalise(latents), count: count)
    }

    /// Images for `indices` (sample i's noise from seed.split(i)), decoded from sampled latents.
    /// Latents are not clipped: the x₀ clip of pixel models would cut unit-variance latents.
    public func sample(indices: [Int], labels: [Int]?, seed: UInt64, settings: SamplerSettings,
                       known: [Float]? = nil, mask: [Float]? = nil) -> [Float] {
        var latentSettings = settings
        latentSettings.clipSample = false
        latentSettings.clampOutput = false
        let latents = sampler.sample(indices: indices, labels: labels, seed: seed, settings: latentSettings, known: known, mask: mask)
        return decode(latents, count: indices.count)
    }
}

/// Builds the latent model of a latent-diffusion model file (or training checkpoint).
func loadLatentDiffusion(_ file: SafetensorsFile, source: String) throws -> LatentDiffusionModel {
    let config = try decodeJSON(LatentDiffusionConfig.self, file.metadata[CheckpointKey.config], file: source, what: "latent diffusion config")
    let options = try decodeJSON(DiffusionTrainingOptions.self, file.metadata[DiffusionTrainer.optionsKey], file: source, what: "diffusion options")
    try config.validate()
    var stream = RandomStream(seed: 0)
    let unet = UNet(config.unet, stream: &stream)
    try unet.load(file.tensors, source: source, prefix: samplingPrefix(file, modelPrefix: "U"))
    let vae = VAE(config.autoencoder, stream: &stream)
    try vae.load(file.tensors, source: source, prefix: "vae")
    let sampler = DiffusionSampler(model: unet, schedule: options.noiseSchedule,
                                   target: options.target, numClasses: config.unet.numClasses,
                                   sampleShape: config.autoencoder.latentShape)
    return LatentDiffusionModel(config: config, sampler: sampler, vae: vae)
}

struct LatentDiffusionSampleSource: SampleSource {
    let model: LatentDiffusionModel
    let settings: SamplerSettings
    var kind: ModelKind { .latentDiffusion }
    var config: (imageSize: Int, channels: Int, classNames: [String]) { (model.imageSize, model.channels, model.config.classNames) }

    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        let out = model.sample(indices: indices, labels: classes, seed: seed, settings: settings)
        let per = out.count / indices.count
        return (0..<indices.count).map { Array(out[$0 * per..<($0 + 1) * per]) }
    }
}

// MARK: - Training on cached latents

public final class LatentDiffusionTrainer {
    public let config: LatentDiffusionConfig
    public let diffusion: DiffusionTrainer
    /// The frozen autoencoder (weights from `attach` or a resumed checkpoint).
    public let vae: VAE
    /// Posterior moments (μ then log σ², 2L×h×w) by the FNV-1a hash of an image's values: each
    /// training image is encoded once, alone, so its latent never depends on the batch.
    var momentCache: [UInt64: [Float]] = [:]
    public var gridSamplingSteps = 25
    /// Mean posterior σ in scaled-latent units (the latents' std is 1), measured in `attach`.
    public var posteriorSpread: Double?

    public var options: DiffusionTrainingOptions { diffusion.options }

    public init(config: LatentDiffusionConfig, options: DiffusionTrainingOptions, seed: UInt64) {
        self.config = config
        diffusion = DiffusionTrainer(config: config.unet, options: options, seed: seed)
        var stream = RandomStream(seed: 0)
        vae = VAE(config.autoencoder, stream: &stream)
    }

    /// Scaled training latents of a pixel batch: μ, or μ + σ·ε with ε from `stream`.
    func latents(of batch: Tensor, stream: inout RandomStream) -> Tensor {
        let n = batch.shape[0], per = batch.count / n
        let latentShape = config.autoencoder.latentShape, latentPer = latentShape.reduce(1, *)
        var moments = [Float](repeating: 0, count: n * 2 * latentPer)
        for i in 0..<n {
            let image = Array(batch.data[i * per..<(i + 1) * per])
            let key = image.withUnsafeBytes { FNV1a64.hash($0) }
            let cached = momentCache[key] ?? withNoGrad { vae.encode(Tensor(shape: [1] + Array(batch.shape.dropFirst()), data: image)).data }
            momentCache[key] = cached
            for j in 0..<2 * latentPer { moments[i * 2 * latentPer + j] = cached[j] }
        }
        var noise: [Float]? = nil
        if config.encoding == .sample {
            var draws = [Float](repeating: 0, count: n * latentPer)
            draws.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
            noise = draws
        }
        let z = withNoGrad { diagonalGaussianSample(Tensor(shape: [n, 2 * latentShape[0], latentShape[1], latentShape[2]], data: moments), noise: noise) }
        return Tensor(shape: z.shape, data: config.normalise(z.data))
    }

    public func samplingModel() -> LatentDiffusionModel {
        LatentDiffusionModel(config: config, sampler: diffusion.sampler(model: diffusion.samplingModel()), vae: vae)
    }
}

extension LatentDiffusionTrainer: ModelTrainer {
    public static var kind: ModelKind { .latentDiffusion }
    public static var optionsKey: String { DiffusionTrainer.optionsKey }
    public static var metrics: [TrainingMetric] { [TrainingMetric("loss")] }

    public static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> LatentDiffusionConfig {
        guard let path = request.autoencoder else { throw MedSynthError("latent diffusion needs --autoencoder VAE_RUN_OR_FILE") }
        let (vae, scale, url) = try loadAutoencoder(path)
        let ae = vae.config
        guard ae.imageSize == request.imageSize, ae.channels == request.channels else {
            throw MedSynthError(file: url.path, "the VAE was trained on \(ae.imageSize) px, \(ae.channels) channel(s) images; this run asks for \(request.imageSize) px, \(request.channels) channel(s) (set --image-size and --channels to match)")
        }
        var unet = UNetConfig(imageSize: ae.latentSize, channels: ae.latentChannels, baseWidth: request.width ?? 32,
                              numClasses: request.conditional ? dataset.classNames.count : 0,
                              classNames: request.conditional ? dataset.classNames : [])
        if let multipliers = request.channelMultipliers { unet.channelMultipliers = multipliers }
        // Attention at half the latent side (8 px for a 16 px latent: 64 tokens, as UNet-S at 64 px).
        unet.attentionResolutions = request.attentionResolutions ?? [max(1, ae.latentSize / 2)]
        var config = LatentDiffusionConfig(unet: unet, autoencoder: ae, latentScale: scale, autoencoderID: autoencoderIdentifier(vae),
                                           encoding: .mean, classNames: unet.classNames)
        if let normalisation = request.latentNormalisation, normalisation != .global {
            let (images, count) = try latentScaleImages(dataset)
            let means = vae.posteriorMeans(images, count: count)
            let (shift, channelScale) = latentChannelStatistics(means, channels: ae.latentChannels, plane: ae.latentSize * ae.latentSize)
            config.latentChannelShift = shift
            config.latentChannelScale = normalisation == .centred ? [Float](repeating: scale, count: ae.latentChannels) : channelScale
        }
        return config
    }

    public var summary: String {
        let ae = config.autoencoder
        return "latent U-Net \(diffusion.model.parameterCount) parameters on \(ae.latentShape.map(String.init).joined(separator: "×")) latents (\(config.latentChannelScale.map { "per-channel scales " + $0.map { String(format: "%.3f", $0) }.joined(separator: "/") } ?? "scale \(config.latentScale)"), \(config.encoding.rawValue) latents\(posteriorSpread.map { String(format: "; posterior σ %.3f of the latents' std", $0) } ?? ""))"
    }

    public func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws {
        try attachAutoencoder(request: request, expectedID: config.autoencoderID, model: "latent diffusion")
        // The measurement behind `encoding`: how wide the posterior is next to the latents' own spread.
        let count = min(32, dataset.count)
        let latentPer = config.autoencoder.latentShape.reduce(1, *)
        var spread = 0.0
        for k in 0..<count {
            let image = try dataset.tensorData(at: k * dataset.count / count)
            let shape = [1, config.autoencoder.channels, config.autoencoder.imageSize, config.autoencoder.imageSize]
            let moments = withNoGrad { vae.encode(Tensor(shape: shape, data: image)) }.data
            let plane = config.autoencoder.latentSize * config.autoencoder.latentSize
            for j in latentPer..<2 * latentPer {
                let lv = min(max(moments[j], posteriorLogVarianceRange.lowerBound), posteriorLogVarianceRange.upperBound)
                let scale = config.latentChannelScale?[(j - latentPer) / plane] ?? config.latentScale
                spread += Double(Foundation.exp(0.5 * lv) * scale)
            }
        }
        posteriorSpread = spread / Double(count * latentPer)
    }

    public func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float] {
        let z = latents(of: batch, stream: &stream)
        return [diffusion.step(x0: z, labels: labels, stream: &stream)]
    }

    public func sampleGrid(seed: UInt64) -> Image {
        let count = 8
        var settings = SamplerSettings()
        settings.steps = gridSamplingSteps
        let labels = config.unet.numClasses > 0 ? (0..<count).map { $0 % config.unet.numClasses } : nil
        let images = samplingModel().sample(indices: Array(0..<count), labels: labels, seed: seed, settings: settings)
        let per = images.count / count
        return makeGrid(images: (0..<count).map { Array(images[$0 * per..<($0 + 1) * per]) },
                        channels: config.autoencoder.channels, size: config.autoencoder.imageSize, columns: 8)
    }
}


/// The kind of model a run folder's latest checkpoint holds (nil when it has none or it is unreadable).
public func runFolderKind(_ out: URL) -> ModelKind? {
    guard let file = try? readSafetensors(at: RunFolder(out).latestCheckpoint) else { return nil }
    return ModelKind(rawValue: file.metadata[CheckpointKey.kind] ?? "")
}

extension LatentDiffusionTrainer: GridSampling {}

extension LatentDiffusionTrainer: FrozenAutoencoderTrainer {
    public var inner: DiffusionTrainer { diffusion }
}
