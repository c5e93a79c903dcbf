import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Diffusion training runs

extension UNetConfig: ModelConfig {
    /// Runs saved before the time embedding's width stopped shrinking with the base width
    /// (timeFeatures absent: the base width) keep their width when resumed.
    public func keepingChangedDefaults(of saved: UNetConfig) -> UNetConfig {
        var config = self
        config.timeFeatures = saved.timeFeatures
        return config
    }
}

extension DiffusionTrainer: ModelTrainer {
    public static var kind: ModelKind { .diffusion }
    public static var optionsKey: String { "medsynth.diffusion" }
    public static var metrics: [TrainingMetric] { [TrainingMetric("loss")] }

    public static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> UNetConfig {
        var config = UNetConfig(imageSize: request.imageSize, channels: request.channels, baseWidth: request.width ?? 32,
                                numClasses: request.conditional ? dataset.classNames.count : 0,
                                classNames: request.conditional ? dataset.classNames : [])
        if let multipliers = request.channelMultipliers { config.channelMultipliers = multipliers }
        // Attention at the coarsest level (8 px for 64 px images), as UNet-S.
        config.attentionResolutions = request.attentionResolutions ?? [request.imageSize >> (config.channelMultipliers.count - 1)]
        return config
    }

    public var summary: String { "U-Net \(model.parameterCount) parameters" }

    public func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float] {
        [step(x0: batch, labels: labels, stream: &stream)]
    }

    public func stateEntries() -> (tensors: [SafetensorsEntry], metadata: [String: String]) {
        singleNetworkState(model, optimizer: optimizer, ema: ema, prefix: "U")
    }

    public func restoreState(from state: SafetensorsFile, source: String) throws {
        try restoreSingleNetwork(model, optimizer: optimizer, ema: ema, prefix: "U", from: state, source: source)
    }

    public func samplingEntries() -> [SafetensorsEntry] { samplingModel().safetensorsEntries(prefix: "U") }

    public func sampleGrid(seed: UInt64) -> Image {
        let count = 8
        var settings = SamplerSettings()
        settings.steps = gridSamplingSteps
        let labels = config.numClasses > 0 ? (0..<count).map { $0 % config.numClasses } : nil
        let images = sampler(model: samplingModel()).sample(indices: Array(0..<count), labels: labels, seed: seed, settings: settings)
        let per = images.count / count
        return makeGrid(images: (0..<count).map { Array(images[$0 * per..<($0 + 1) * per]) }, channels: config.channels, size: config.imageSize, columns: 8)
    }
}

/// Diffusion trainers (pixel and latent) draw their sample grids with this many DDIM steps.
protocol GridSampling: AnyObject {
    var gridSamplingSteps: Int { get set }
}

extension DiffusionTrainer: GridSampling {}

/// `runTraining` for a diffusion trainer whose grids use `gridSteps` sampling steps.
func runDiffusionTraining<T: ModelTrainer & GridSampling>(_ type: T.Type, _ request: TrainingRequest, options: T.Options, out: URL,
                                                         resume: Bool, progress style: ProgressStyle, gridSteps: Int,
                                                         label: String) throws -> TrainingRunResult {
    try runTraining(type, request, options: options, out: out, resume: resume, progress: style, label: label,
                    prepare: { $0.gridSamplingSteps = gridSteps })
}

/// Trains (or resumes) a diffusion run in `out` (see `runTraining`); sample grids use `gridSteps`
/// DDIM steps. With `request.autoencoder` (or when resuming a latent run) the U-Net learns that
/// VAE's latents (`LatentDiffusionTrainer`).
@discardableResult
public func trainDiffusion(_ request: TrainingRequest, options: DiffusionTrainingOptions = DiffusionTrainingOptions(),
                           out: URL, resume: Bool, progress style: ProgressStyle = .human,
                           gridSteps: Int = 25) throws -> TrainingRunResult {
    // A resumed latent run needs no autoencoder argument: its checkpoint says what it is.
    if request.autoencoder != nil || (resume && runFolderKind(out) == .latentDiffusion) {
        return try runDiffusionTraining(LatentDiffusionTrainer.self, request, options: options, out: out, resume: resume,
                                        progress: style, gridSteps: gridSteps, label: "train latent diffusion")
    }
    return try runDiffusionTraining(DiffusionTrainer.self, request, options: options, out: out, resume: resume, progress: style,
                                    gridSteps: gridSteps, label: "train diffusion")
}

/// The sampling U-Net of a diffusion model file and its sampler.
func loadDiffusionSampler(_ file: SafetensorsFile, source: String) throws -> (sampler: DiffusionSampler, config: UNetConfig) {
    let config = try decodeJSON(UNetConfig.self, file.metadata[CheckpointKey.config], file: source, what: "model config")
    let options = try decodeJSON(DiffusionTrainingOptions.self, file.metadata[DiffusionTrainer.optionsKey], file: source, what: "diffusion options")
    try config.validate()
    var stream = RandomStream(seed: 0)
    let unet = UNet(config, stream: &stream)
    try unet.load(file.tensors, source: source, prefix: samplingPrefix(file, modelPrefix: "U"))
    let sampler = DiffusionSampler(model: unet, schedule: options.noiseSchedule,
                                   target: options.target, numClasses: config.numClasses,
                                   sampleShape: [config.channels, config.imageSize, config.imageSize])
    return (sampler, config)
}

/// The sampler of a diffusion model file (model.safetensors or a training checkpoint).
public func loadDiffusionSampler(from url: URL) throws -> (sampler: DiffusionSampler, config: UNetConfig) {
    guard case let .diffusion(sampler, config) = try loadModel(from: url) else {
        throw MedSynthError(file: url.path, "not a diffusion checkpoint")
    }
    return (sampler, config)
}

struct DiffusionSampleSource: SampleSource {
    let sampler: DiffusionSampler
    let unetConfig: UNetConfig
    let settings: SamplerSettings
    var kind: ModelKind { .diffusion }
    var config: (imageSize: Int, channels: Int, classNames: [String]) { (unetConfig.imageSize, unetConfig.channels, unetConfig.classNames) }

    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        let out = sampler.sample(indices: indices, labels: classes, seed: seed, settings: settings)
        let per = out.count / indices.count
        return (0..<indices.count).map { Array(out[$0 * per..<($0 + 1) * per]) }
    }
}
