import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Latent GAN (Achlioptas et al. 2018, "Learning Representations and Generative Models for 3D Point Clouds")
//
// The DCGAN, trained on a frozen VAE's latents instead of pixels: G draws latents, the VAE's decoder
// turns them into images. The decoder only makes images the VAE has learnt to rebuild, so G's
// pixel-level speckle cannot reach the output, and G and D work on 16× fewer positions. The saved
// model embeds the VAE's weights under "vae." (as latent diffusion does), so one file samples and
// balances on its own.

public struct LatentGANConfig: Codable, Equatable {
    /// The DCGAN on latents: imageSize = latent side, channels = latent channels, linear output.
    public var gan: GANConfig
    public var autoencoder: VAEConfig
    /// G and D see (z_c − shift_c) · scale_c: every latent channel with mean 0 and std 1 over the
    /// training latents, so no channel dominates D and G's linear output starts at the right scale.
    public var latentChannelShift: [Float]
    public var latentChannelScale: [Float]
    /// FNV-1a 64 of the autoencoder's weights, so a resumed run refuses another VAE.
    public var autoencoderID: String
    public var classNames: [String]

    public func validate() throws {
        try gan.validate()
        try autoencoder.validate()
        guard gan.linearOutput else { throw MedSynthError("latent GAN config: G must have a linear output") }
        guard gan.channels == autoencoder.latentChannels, gan.imageSize == autoencoder.latentSize else {
            throw MedSynthError("latent GAN is \(gan.channels)×\(gan.imageSize)² but the VAE's latents are \(autoencoder.latentChannels)×\(autoencoder.latentSize)²")
        }
        guard latentChannelShift.count == autoencoder.latentChannels, latentChannelScale.count == autoencoder.latentChannels else {
            throw MedSynthError("latent GAN config: \(latentChannelShift.count) shifts and \(latentChannelScale.count) scales for \(autoencoder.latentChannels) latent channels")
        }
        guard latentChannelShift.allSatisfy(\.isFinite), latentChannelScale.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw MedSynthError("latent GAN config: latent shifts must be finite and scales positive")
        }
        guard classNames == gan.classNames else { throw MedSynthError("latent GAN config: class names differ from the GAN's") }
    }

    /// GAN-space latents of VAE latents laid out N×C×h×w.
    func normalise(_ latents: [Float]) -> [Float] {
        channelAffine(latents, plane: autoencoder.latentSize * autoencoder.latentSize, shift: latentChannelShift, scale: latentChannelScale, inverse: false)
    }

    /// VAE latents of GAN-space latents (the inverse of `normalise`).
    func denormalise(_ latents: [Float]) -> [Float] {
        channelAffine(latents, plane: autoencoder.latentSize * autoencoder.latentSize, shift: latentChannelShift, scale: latentChannelScale, inverse: true)
    }
}

extension LatentGANConfig: ModelConfig {}

/// A latent GAN loaded for sampling: the EMA generator and the VAE decoder.
public final class LatentGANModel {
    public let config: LatentGANConfig
    public let generator: DCGANGenerator
    public let vae: VAE

    public init(config: LatentGANConfig, generator: DCGANGenerator, vae: VAE) {
        self.config = config; self.generator = generator; self.vae = vae
    }

    /// Images in [−1, 1] for `indices` (sample i's z from seed.split(i), as the pixel GAN's).
    public func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        let latents = GANSampleSource(generator: generator).images(indices: indices, classes: classes, seed: seed)
        return latents.map { vae.decodeImages(config.denormalise($0), count: 1) }
    }
}

/// Builds the latent GAN of a model file (or training checkpoint: its EMA generator).
func loadLatentGAN(_ file: SafetensorsFile, source: String) throws -> LatentGANModel {
    let config = try decodeJSON(LatentGANConfig.self, file.metadata[CheckpointKey.config], file: source, what: "latent GAN config")
    try config.validate()
    let generator = try samplingGenerator(config.gan, file: file, source: source)
    var stream = RandomStream(seed: 0)
    let vae = VAE(config.autoencoder, stream: &stream)
    try vae.load(file.tensors, source: source, prefix: "vae")
    return LatentGANModel(config: config, generator: generator, vae: vae)
}

struct LatentGANSampleSource: SampleSource {
    let model: LatentGANModel
    var kind: ModelKind { .latentGAN }
    var config: (imageSize: Int, channels: Int, classNames: [String]) {
        (model.config.autoencoder.imageSize, model.config.autoencoder.channels, model.config.classNames)
    }

    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        model.images(indices: indices, classes: classes, seed: seed)
    }
}

// MARK: - Training on cached latents

public final class LatentGANTrainer {
    public let config: LatentGANConfig
    public let gan: GANTrainer
    /// The frozen autoencoder (weights from `attach` or a resumed checkpoint).
    public let vae: VAE
    /// GAN-space latents (posterior means, normalised) by the FNV-1a hash of an image's values:
    /// each training image is encoded once, alone, so its latent never depends on the batch.
    var latentCache: [UInt64: [Float]] = [:]

    public var options: GANTrainingOptions { gan.options }

    public init(config: LatentGANConfig, options: GANTrainingOptions, seed: UInt64) {
        self.config = config
        gan = GANTrainer(config: config.gan, options: options, seed: seed)
        var stream = RandomStream(seed: 0)
        vae = VAE(config.autoencoder, stream: &stream)
    }

    /// GAN-space latents of a pixel batch (posterior means: the latent GAN learns one latent per image;
    /// D's augmentation supplies the variation).
    func latents(of batch: Tensor) -> Tensor {
        let n = batch.shape[0], per = batch.count / n
        let latentShape = config.autoencoder.latentShape, latentPer = latentShape.reduce(1, *)
        var out = [Float](repeating: 0, count: n * latentPer)
        for i in 0..<n {
            let image = Array(batch.data[i * per..<(i + 1) * per])
            let key = image.withUnsafeBytes { FNV1a64.hash($0) }
            let cached = latentCache[key] ?? config.normalise(vae.posteriorMeans(image, count: 1))
            latentCache[key] = cached
            for j in 0..<latentPer { out[i * latentPer + j] = cached[j] }
        }
        return Tensor(shape: [n] + latentShape, data: out)
    }

    public func samplingModel() -> LatentGANModel {
        LatentGANModel(config: config, generator: gan.samplingGenerator(), vae: vae)
    }
}

extension LatentGANTrainer: ModelTrainer {
    public static var kind: ModelKind { .latentGAN }
    public static var optionsKey: String { GANTrainer.optionsKey }
    public static var metrics: [TrainingMetric] { GANTrainer.metrics }

    public static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> LatentGANConfig {
        try makeConfig(request: request, options: GANTrainingOptions(), dataset: dataset)
    }

    public static func makeConfig(request: TrainingRequest, options: GANTrainingOptions, dataset: ImageFolderDataset) throws -> LatentGANConfig {
        guard let path = request.autoencoder else { throw MedSynthError("a latent GAN needs --autoencoder VAE_RUN_OR_FILE") }
        let (vae, _, url) = try loadAutoencoder(path)
        let ae = vae.config
        guard ae.imageSize == request.imageSize, ae.channels == request.channels else {
            throw MedSynthError(file: url.path, "the VAE was trained on \(ae.imageSize) px, \(ae.channels) channel(s) images; this run asks for \(request.imageSize) px, \(request.channels) channel(s) (set --image-size and --channels to match)")
        }
        // The DCGAN's own checks (mode-seeking block, reconstruction size, self-conditioning) on the latent grid.
        var latentRequest = request
        latentRequest.imageSize = ae.latentSize
        latentRequest.channels = ae.latentChannels
        var gan = try GANTrainer.makeConfig(request: latentRequest, options: options, dataset: dataset)
        gan.linearOutput = true
        let (images, count) = try latentScaleImages(dataset)
        let means = vae.posteriorMeans(images, count: count)
        let (shift, scale) = latentChannelStatistics(means, channels: ae.latentChannels, plane: ae.latentSize * ae.latentSize)
        let config = LatentGANConfig(gan: gan, autoencoder: ae, latentChannelShift: shift, latentChannelScale: scale,
                                     autoencoderID: autoencoderIdentifier(vae), classNames: gan.classNames)
        try config.validate()
        return config
    }

    public static func resolveOptions(_ options: GANTrainingOptions, dataset: ImageFolderDataset) -> GANTrainingOptions {
        GANTrainer.resolveOptions(options, dataset: dataset)
    }

    public static func resumedOptions(saved: GANTrainingOptions, requested: GANTrainingOptions) -> GANTrainingOptions {
        GANTrainer.resumedOptions(saved: saved, requested: requested)
    }

    public var summary: String {
        let ae = config.autoencoder
        return "latent GAN on \(ae.latentShape.map(String.init).joined(separator: "×")) VAE latents (each channel to mean 0, std 1); " + gan.summary
    }

    public func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws {
        try attachAutoencoder(request: request, expectedID: config.autoencoderID, model: "a latent GAN")
        try gan.attach(dataset: dataset, request: request)
    }

    public func batchLabels(indices: [Int], classLabels: [Int]?) -> [Int]? {
        gan.batchLabels(indices: indices, classLabels: classLabels)
    }

    public func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float] {
        gan.trainingStep(batch: latents(of: batch), labels: labels, stream: &stream)
    }

    /// 16 samples (classes alternating), decoded: the pixel GAN's grid draws.
    public func sampleGrid(seed: UInt64) -> Image {
        let model = samplingModel()
        let count = 16
        let classes = config.gan.numClasses > 0 ? (0..<count).map { $0 % config.gan.numClasses } : nil
        let images = model.images(indices: Array(0..<count), classes: classes, seed: seed)
        return makeGrid(images: images, channels: config.autoencoder.channels, size: config.autoencoder.imageSize, columns: 8)
    }
}

extension LatentGANTrainer: FrozenAutoencoderTrainer {
    public var inner: GANTrainer { gan }
}

/// Trains (or resumes) a latent GAN run in `out` (see `runTraining`).
@discardableResult
public func trainLatentGAN(_ request: TrainingRequest, options: GANTrainingOptions = GANTrainingOptions(), out: URL, resume: Bool,
                           progress style: ProgressStyle = .human) throws -> TrainingRunResult {
    try runTraining(LatentGANTrainer.self, request, options: options, out: out, resume: resume, progress: style, label: "train latent gan")
}
