import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - VAE training: L1 (or L2) reconstruction + small-weight KL, Adam, EMA, on the one driver

public enum ReconstructionLoss: String, Codable, CaseIterable {
    case l1, l2
}

/// Settings of VAE training, stored in the run's checkpoint.
public struct VAETrainingOptions: Codable, Equatable {
    public var learningRate: Float = 5e-4
    public var reconstruction: ReconstructionLoss = .l1
    /// KL weight relative to the per-image *sum* of reconstruction errors, as the latent-diffusion
    /// autoencoders' loss Σ|x − x̂| + w·KL (Rombach et al. 2022 use w = 1e-6): small enough that
    /// reconstructions stay sharp, large enough to keep the latent's scale in check.
    public var klWeight: Float = 1e-6
    public var emaDecay: Float = 0.999
    /// Weight of the scale-equivariance term (Skorokhodov et al. 2025, "Improving the Diffusability of
    /// Autoencoders", §4): the decoder must turn the 2×2-average-pooled latent into the 2×2-average-pooled
    /// image, which removes the high-frequency detail latents carry beyond the image's own and makes
    /// them easier for a diffusion model. 0 = off.
    public var scaleEquivariance: Float = 0
    /// Latent denoising (Yang et al. 2025, "Latent Denoising Makes Good Visual Tokenizers"): the
    /// decoder reconstructs from z + σ·s·ε, σ uniform in [0, decoderNoise] per image and s the
    /// batch latents' standard deviation, so it learns to map latents a little off the data
    /// manifold (a diffusion model's samples) back to clean images. 0 = off.
    public var decoderNoise: Float = 0
    /// Train the decoder only: the latent space (and every latent model trained on it) stays valid.
    public var freezeEncoder = false
    public init() {}

    enum CodingKeys: String, CodingKey { case learningRate, reconstruction, klWeight, emaDecay, scaleEquivariance, decoderNoise, freezeEncoder }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        reconstruction = try c.decode(ReconstructionLoss.self, forKey: .reconstruction)
        klWeight = try c.decode(Float.self, forKey: .klWeight)
        emaDecay = try c.decode(Float.self, forKey: .emaDecay)
        // Runs saved before the term existed trained without it.
        scaleEquivariance = try c.decodeIfPresent(Float.self, forKey: .scaleEquivariance) ?? 0
        decoderNoise = try c.decodeIfPresent(Float.self, forKey: .decoderNoise) ?? 0
        freezeEncoder = try c.decodeIfPresent(Bool.self, forKey: .freezeEncoder) ?? false
    }
}

/// The metadata key of the latent scale factor: 1 / standard deviation of the training latents,
/// so the diffusion model sees unit-variance latents (Rombach et al. 2022, section 4.3.2 / appendix G).
public let latentScaleKey = "medsynth.latent_scale"

/// Images the scale factor is measured on (evenly spaced over the dataset's sorted entries).
let latentScaleSampleLimit = 128

public final class VAETrainer {
    public let config: VAEConfig
    public let options: VAETrainingOptions
    public let model: VAE
    public let emaModel: VAE
    public let optimizer: Adam
    public let ema: ParameterEMA
    /// The first images of the dataset (grid: input beside reconstruction) and the images the
    /// latent scale is measured on; set by `attach`.
    var gridImages: [Float] = []
    var scaleImages: [Float] = []

    public init(config: VAEConfig, options: VAETrainingOptions, seed: UInt64) {
        self.config = config
        self.options = options
        var stream = RandomStream(seed: seed).split(.vaeInitialisation)
        model = VAE(config, stream: &stream)
        emaModel = VAE(config, stream: &stream)
        emaModel.copyValues(from: model)
        optimizer = Adam.adamW(options.freezeEncoder ? model.decoder.parameters() : model.parameters(),
                               learningRate: options.learningRate, weightDecay: 0)
        ema = ParameterEMA(model, decay: options.emaDecay)
    }

    /// Losses of one batch x (N×C×H×W in [−1, 1]) through `vae`, with the posterior noise from
    /// `stream`: (total, reconstruction, KL per image, MSE).
    public func losses(x: Tensor, vae: VAE? = nil, stream: inout RandomStream) -> (total: Tensor, reconstruction: Float, kl: Float, mse: Float) {
        let vae = vae ?? model
        let moments = options.freezeEncoder ? withNoGrad { vae.encode(x) } : vae.encode(x)
        var noise = [Float](repeating: 0, count: moments.count / 2)
        noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
        let z = diagonalGaussianSample(moments, noise: noise)
        let reconstruction = vae.decode(options.decoderNoise > 0 ? latentDenoisingInput(z, stream: &stream) : z)
        let lossFunction = options.reconstruction == .l1 ? l1Loss : mseLoss
        let recon = lossFunction(reconstruction, x)
        let kl = diagonalGaussianKL(moments)
        let perImage = Float(x.count / x.shape[0])
        var total = add(recon, scale(kl, options.klWeight / perImage))
        if options.scaleEquivariance > 0, z.shape[2] % 2 == 0 {
            let halfScale = lossFunction(vae.decode(averagePool2x2(z)), averagePool2x2(x))
            total = add(total, scale(halfScale, options.scaleEquivariance))
        }
        var squared = 0.0
        for i in 0..<x.count { let d = Double(reconstruction.data[i] - x.data[i]); squared += d * d }
        return (total, recon.scalar, kl.scalar, Float(squared / Double(x.count)))
    }

    /// z + σ·s·ε with σ ~ U(0, decoderNoise) per image and s the std of z's values (no gradient
    /// flows through s).
    func latentDenoisingInput(_ z: Tensor, stream: inout RandomStream) -> Tensor {
        let n = z.shape[0], per = z.count / n
        let s = Float(1 / Double(latentScaleFactor(z.data)))
        var perturbation = [Float](repeating: 0, count: z.count)
        perturbation.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
        for i in 0..<n {
            let sigma = options.decoderNoise * s * Float(stream.uniform())
            for j in i * per..<(i + 1) * per { perturbation[j] *= sigma }
        }
        return add(z, Tensor(shape: z.shape, data: perturbation))
    }

    /// One Adam step; returns (loss, reconstruction, KL, PSNR in dB of the batch's reconstructions).
    public func step(x: Tensor, stream: inout RandomStream) -> [Float] {
        model.zeroGrad()
        let l = losses(x: x, stream: &stream)
        l.total.backward()
        optimizer.update()
        ema.update(from: model, step: optimizer.step)
        return [l.total.scalar, l.reconstruction, l.kl, psnr(mse: l.mse)]
    }

    public func samplingModel() -> VAE {
        ema.copy(into: emaModel)
        // The average of an unchanged weight drifts by rounding: a frozen encoder is copied as it is.
        if options.freezeEncoder { emaModel.encoder.copyValues(from: model.encoder) }
        return emaModel
    }

    /// 1 / std of the posterior means of the scale images under the sampling weights.
    public func latentScale() -> Float {
        let count = scaleImages.count / (config.channels * config.imageSize * config.imageSize)
        guard count > 0 else { return 1 }
        return latentScaleFactor(samplingModel().posteriorMeans(scaleImages, count: count))
    }
}

/// Up to `latentScaleSampleLimit` images spread evenly over `dataset` (concatenated CHW), the
/// images whose latents set a latent scale or per-channel normalisation.
func latentScaleImages(_ dataset: ImageFolderDataset) throws -> (pixels: [Float], count: Int) {
    let count = min(latentScaleSampleLimit, dataset.count)
    return (try (0..<count).flatMap { try dataset.tensorData(at: $0 * dataset.count / count) }, count)
}

/// 1 / standard deviation of `latents` (all elements), as `scale_by_std` of the latent-diffusion code.
public func latentScaleFactor(_ latents: [Float]) -> Float {
    let n = Double(latents.count)
    guard n > 1 else { return 1 }
    let mean = latents.reduce(0.0) { $0 + Double($1) } / n
    let variance = latents.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / (n - 1)
    return variance > 0 ? Float(1 / variance.squareRoot()) : 1
}

/// PSNR in dB of images in [−1, 1] (peak-to-peak 2) with mean squared error `mse`.
public func psnr(mse: Float) -> Float {
    10 * Float(log10(4 / Double(max(mse, 1e-12))))
}

extension VAEConfig: ModelConfig {}

extension VAETrainer: ModelTrainer {
    public static var kind: ModelKind { .vae }
    public static var optionsKey: String { "medsynth.vae" }
    public static var metrics: [TrainingMetric] {
        [TrainingMetric("loss"), TrainingMetric("recon"), TrainingMetric("kl"), TrainingMetric("psnr", label: "PSNR")]
    }

    public static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> VAEConfig {
        let factor = request.downsamplingFactor ?? 4
        guard let multipliers = VAEConfig.multipliers(factor: factor) else {
            throw MedSynthError("--downsampling-factor must be 2, 4 or 8, got \(factor)")
        }
        guard !request.conditional else { throw MedSynthError("a VAE is unconditional; drop --conditional") }
        return VAEConfig(imageSize: request.imageSize, channels: request.channels, baseWidth: request.width ?? 32,
                         channelMultipliers: multipliers, latentChannels: request.latentChannels ?? 4)
    }

    public var summary: String {
        "VAE \(model.parameterCount) parameters, \(config.imageSize) px → \(config.latentShape.map(String.init).joined(separator: "×")) latent"
    }

    public func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws {
        let gridCount = min(8, dataset.count)
        gridImages = try (0..<gridCount).flatMap { try dataset.tensorData(at: $0) }
        scaleImages = try latentScaleImages(dataset).pixels
    }

    public func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float] {
        step(x: batch, stream: &stream)
    }

    public func stateEntries() -> (tensors: [SafetensorsEntry], metadata: [String: String]) {
        singleNetworkState(model, optimizer: optimizer, ema: ema, prefix: "vae")
    }

    public func restoreState(from state: SafetensorsFile, source: String) throws {
        try restoreSingleNetwork(model, optimizer: optimizer, ema: ema, prefix: "vae", from: state, source: source)
    }

    public func samplingEntries() -> [SafetensorsEntry] { samplingModel().safetensorsEntries(prefix: "vae") }

    public func samplingMetadata() -> [String: String] { [latentScaleKey: "\(latentScale())"] }

    /// Two rows: the dataset's first images, and their reconstructions (posterior means) below.
    public func sampleGrid(seed: UInt64) -> Image {
        let per = config.channels * config.imageSize * config.imageSize
        let count = gridImages.count / per
        guard count > 0 else { return makeGrid(images: [[Float](repeating: -1, count: per)], channels: config.channels, size: config.imageSize, columns: 1) }
        let vae = samplingModel()
        let reconstructions = vae.decodeImages(vae.posteriorMeans(gridImages, count: count), count: count)
        let tiles = (0..<count).map { Array(gridImages[$0 * per..<($0 + 1) * per]) }
            + (0..<count).map { Array(reconstructions[$0 * per..<($0 + 1) * per]) }
        return makeGrid(images: tiles, channels: config.channels, size: config.imageSize, columns: count)
    }
}

/// Trains (or resumes) a VAE run in `out` (see `runTraining`). A new run starts from the sampling
/// weights of the VAE model file `initialWeights` when given (fine-tuning, e.g. with another loss);
/// its configuration must be the run's.
@discardableResult
public func trainVAE(_ request: TrainingRequest, options: VAETrainingOptions = VAETrainingOptions(), out: URL, resume: Bool,
                     initialWeights: URL? = nil, progress style: ProgressStyle = .human) throws -> TrainingRunResult {
    // A resumed run continues from its own checkpoint.
    let resuming = resume && FileManager.default.fileExists(atPath: RunFolder(out).latestCheckpoint.path)
    let start = resuming ? nil : try initialWeights.map { url -> VAE in
        let file = try readSafetensors(at: try resolveModelFile(url.path))
        guard file.metadata[CheckpointKey.kind] == ModelKind.vae.rawValue else { throw MedSynthError(file: url.path, "--init-from needs a VAE model file") }
        return try loadVAE(file, source: url.path).vae
    }
    return try runTraining(VAETrainer.self, request, options: options, out: out, resume: resume, progress: style, label: "train vae") { trainer in
        guard let start else { return }
        guard start.config == trainer.config else {
            throw MedSynthError(file: initialWeights!.path, "--init-from: the VAE's configuration (\(start.config.baseWidth) wide, \(start.config.latentShape) latent) is not this run's (\(trainer.config.baseWidth), \(trainer.config.latentShape)); set --width, --downsampling-factor and --latent-channels to match")
        }
        trainer.model.copyValues(from: start)
        trainer.emaModel.copyValues(from: start)
        trainer.ema.shadow = trainer.model.namedTensors().map(\.tensor.data)
    }
}

/// The sampling VAE of a VAE model file (EMA weights in a training checkpoint) and its latent scale.
func loadVAE(_ file: SafetensorsFile, source: String) throws -> (vae: VAE, scale: Float) {
    let config = try decodeJSON(VAEConfig.self, file.metadata[CheckpointKey.config], file: source, what: "VAE config")
    try config.validate()
    var stream = RandomStream(seed: 0)
    let vae = VAE(config, stream: &stream)
    try vae.load(file.tensors, source: source, prefix: samplingPrefix(file, modelPrefix: "vae"))
    // A training checkpoint written before the first model file has no scale yet: measure none, use 1.
    let scale = file.metadata[latentScaleKey].flatMap { Float($0) } ?? 1
    guard scale.isFinite, scale > 0 else { throw MedSynthError(file: source, "latent scale '\(file.metadata[latentScaleKey] ?? "")' is not a positive number") }
    return (vae, scale)
}

/// A VAE as a generator: decodes draws from its prior N(0, I) — the baseline latent diffusion improves on.
struct VAESampleSource: SampleSource {
    let vae: VAE
    var kind: ModelKind { .vae }
    var config: (imageSize: Int, channels: Int, classNames: [String]) { (vae.config.imageSize, vae.config.channels, []) }

    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        let latentPer = vae.config.latentShape.reduce(1, *)
        var z = [Float](repeating: 0, count: indices.count * latentPer)
        for (row, i) in indices.enumerated() {
            var stream = RandomStream(seed: seed).split(UInt64(i))
            for j in 0..<latentPer { z[row * latentPer + j] = stream.normal() }
        }
        let out = vae.decodeImages(z, count: indices.count)
        let per = out.count / indices.count
        return (0..<indices.count).map { Array(out[$0 * per..<($0 + 1) * per]) }
    }
}
