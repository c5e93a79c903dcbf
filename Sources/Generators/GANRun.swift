import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - The DCGAN as a trainer of the one training driver

extension GANConfig: ModelConfig {}

extension GANTrainer: ModelTrainer {
    public static var kind: ModelKind { .dcgan }
    public static var optionsKey: String { "medsynth.gan" }
    public static var metrics: [TrainingMetric] {
        [TrainingMetric("loss_d", label: "loss_D"), TrainingMetric("loss_g", label: "loss_G"),
         TrainingMetric("d_real", label: "D(x)"), TrainingMetric("d_fake", label: "D(G(z))"),
         TrainingMetric("augment_p", label: "p"), TrainingMetric("r_t", label: "r_t")]
    }

    public static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> GANConfig {
        try makeConfig(request: request, options: GANTrainingOptions(), dataset: dataset)
    }

    /// G's upsampling and width are training options that shape the model, so they are copied into the config.
    public static func makeConfig(request: TrainingRequest, options: GANTrainingOptions, dataset: ImageFolderDataset) throws -> GANConfig {
        try options.validate()
        guard request.imageSize % options.modeSeekingBlock == 0 else {
            throw MedSynthError("--mode-seeking-block \(options.modeSeekingBlock) must divide the image size \(request.imageSize)")
        }
        guard options.reconstructionWeight == 0 || request.imageSize >= 64 else {
            throw MedSynthError("--reconstruction-weight needs an image size of 64 or more (D's 8×8 and 16×16 features), got \(request.imageSize)")
        }
        var config = GANConfig(imageSize: request.imageSize, channels: request.channels,
                               generatorWidth: options.generatorWidth ?? request.width ?? 64, discriminatorWidth: request.width ?? 64,
                               numClasses: request.conditional ? dataset.classNames.count : 0,
                               classNames: request.conditional ? dataset.classNames : [], upsample: options.upsample,
                               skipExcitation: options.skipExcitation)
        config.extraLayers = options.extraLayers
        if options.selfConditionClusters > 1 {
            let clusters = try selfConditioningClusters(dataset, clustersPerClass: options.selfConditionClusters,
                                                        conditional: request.conditional, seed: request.seed)
            config.clustersPerClass = clusters.clustersPerClass
            config.clusterWeights = clusters.weights
        }
        return config
    }

    /// Augmentation defaults to on below 2,000 images, where D otherwise memorises the data.
    public static func resolveOptions(_ options: GANTrainingOptions, dataset: ImageFolderDataset) -> GANTrainingOptions {
        var resolved = options
        resolved.augment = options.augment ?? (dataset.count < 2000)
        return resolved
    }

    public var summary: String {
        let o = options
        let a = o.augmentation
        let ops = [("brightness", a.brightness), ("contrast", a.contrast), ("translation", a.translation), ("cutout", a.cutout), ("flips", a.horizontalFlip)]
            .filter(\.1).map(\.0).joined(separator: ", ")
        let augmentation = !augments ? "off" : (o.adaptiveAugmentation ? "adaptive (target r_t \(o.adaTarget))" : "always") + " (\(ops))"
        return "\(o.loss.rawValue) loss, lr G \(o.learningRate) / D \(o.discriminatorLearningRate ?? o.learningRate), "
            + "D \(o.spectralNorm ? "spectral norm" : "batch norm")\(o.minibatchStd ? " + minibatch std" : "")\(o.packing > 1 ? ", packs of \(o.packing)" : ""), G \(config.upsample.rawValue) upsampling\(config.skipExcitation ? " + skip-layer excitation" : "")\(config.extraLayers > 0 ? ", \(config.extraLayers) extra 3×3 layer(s) in G and D" : ""), augmentation \(augmentation)"
            + (o.modeSeekingWeight > 0 ? ", mode-seeking term λ \(o.modeSeekingWeight)" + (o.modeSeekingBlock > 1 ? " on \(o.modeSeekingBlock)×\(o.modeSeekingBlock) blocks" : "") : "")
            + (o.reconstructionWeight > 0 ? ", D reconstruction loss λ \(o.reconstructionWeight)" : "")
            + (config.clustersPerClass > 1 ? ", self-conditioned on \(config.clustersPerClass) clusters per class" : "")
            + (o.r1Gamma > 0 ? ", R1 penalty γ \(o.r1Gamma) every \(o.r1Interval) steps" : "")
            + (o.learningRateDecaySteps > 0 ? ", learning rates decayed to 0 over the last \(o.learningRateDecaySteps) steps" : "")
    }

    /// A resumed run keeps its saved options except the learning-rate decay, which it may add.
    public static func resumedOptions(saved: GANTrainingOptions, requested: GANTrainingOptions) -> GANTrainingOptions {
        var options = saved
        if requested.learningRateDecaySteps > 0 { options.learningRateDecaySteps = requested.learningRateDecaySteps }
        return options
    }

    public func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws {
        guard request.batchSize % options.packing == 0 else {
            throw MedSynthError("--batch \(request.batchSize) does not split into packs of \(options.packing) (--packing)")
        }
        totalSteps = request.steps
        if config.clustersPerClass > 1 {
            selfConditioningLabels = try selfConditioningClusters(dataset, clustersPerClass: config.clustersPerClass,
                                                                  conditional: config.numClasses > 0, seed: request.seed).labels
        }
    }

    /// With self-conditioning, each image's cluster label instead of its class.
    public func batchLabels(indices: [Int], classLabels: [Int]?) -> [Int]? {
        guard let selfConditioningLabels else { return classLabels }
        return indices.map { selfConditioningLabels[$0] }
    }

    public func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float] {
        let stats = step(real: batch, labels: labels, stream: &stream)
        return [stats.discriminatorLoss, stats.generatorLoss, stats.dReal, stats.dFake, stats.augmentProbability, stats.realSign]
    }

    /// ADA's state: p and the sign statistics gathered since its last adjustment.
    static let adaptiveStateName = "ada.state"
    /// LeCam's state: α_R, α_F and whether they are set (1) or not yet (0).
    static let lecamStateName = "lecam.state"

    public func stateEntries() -> (tensors: [SafetensorsEntry], metadata: [String: String]) {
        let (gOpt, gMeta) = optimizerEntries(optimizerG, name: "G")
        let (dOpt, dMeta) = optimizerEntries(optimizerD, name: "D")
        let tensors = generator.safetensorsEntries(prefix: "G") + discriminator.safetensorsEntries(prefix: "D")
            + emaEntries(ema, module: generator) + gOpt + dOpt
            + [SafetensorsEntry(name: Self.adaptiveStateName, shape: [3], values: [augmentProbability, realSignSum, realSignCount]),
               SafetensorsEntry(name: Self.lecamStateName, shape: [3], values: [lecamRealAverage, lecamFakeAverage, lecamStarted ? 1 : 0])]
        return (tensors, gMeta.merging(dMeta) { a, _ in a })
    }

    public func restoreState(from state: SafetensorsFile, source: String) throws {
        try generator.load(state.tensors, source: source, prefix: "G")
        try discriminator.load(state.tensors, source: source, prefix: "D")
        try restoreOptimizer(optimizerG, name: "G", from: state, source: source)
        try restoreOptimizer(optimizerD, name: "D", from: state, source: source)
        try restoreEMA(ema, module: generator, from: state, source: source)
        // Checkpoints from before ADA have no state: p stays at its start value.
        if let ada = state.tensors[Self.adaptiveStateName] {
            guard ada.values.count == 3 else { throw MedSynthError(file: source, "tensor '\(Self.adaptiveStateName)' has \(ada.values.count) values, expected 3") }
            augmentProbability = ada.values[0]; realSignSum = ada.values[1]; realSignCount = ada.values[2]
        }
        // Checkpoints from before LeCam have none: the averages start again from the next step.
        if let lecam = state.tensors[Self.lecamStateName] {
            guard lecam.values.count == 3 else { throw MedSynthError(file: source, "tensor '\(Self.lecamStateName)' has \(lecam.values.count) values, expected 3") }
            lecamRealAverage = lecam.values[0]; lecamFakeAverage = lecam.values[1]; lecamStarted = lecam.values[2] != 0
        }
    }

    public func samplingEntries() -> [SafetensorsEntry] { samplingGenerator().safetensorsEntries(prefix: "G") }

    public func sampleGrid(seed: UInt64) -> Image {
        let sampler = samplingGenerator()
        let count = 16
        var stream = RandomStream(seed: seed).split(.ganSampleGrid)
        var draws = RandomStream(seed: seed).split(.ganSampleGrid).split(.selfConditioningDraw)
        let labels = config.conditioningClasses > 0
            ? (0..<count).map { config.conditioningLabel(classIndex: config.numClasses > 0 ? $0 % config.numClasses : nil, stream: &draws)! } : nil
        let images = withNoGrad { sampler(latents(count, stream: &stream), labels: labels) }
        let per = images.count / count
        return makeGrid(images: (0..<count).map { Array(images.data[$0 * per..<($0 + 1) * per]) },
                        channels: config.channels, size: config.imageSize, columns: 8)
    }
}

/// Trains (or resumes) a DCGAN run in `out` (see `runTraining`).
@discardableResult
public func trainGAN(_ request: TrainingRequest, options: GANTrainingOptions = GANTrainingOptions(), out: URL, resume: Bool,
                     progress style: ProgressStyle = .human) throws -> TrainingRunResult {
    try runTraining(GANTrainer.self, request, options: options, out: out, resume: resume, progress: style, label: "train gan")
}

/// The sampling generator of a DCGAN model file (its EMA weights when it is a training checkpoint).
func loadGANGenerator(_ file: SafetensorsFile, source: String) throws -> DCGANGenerator {
    let config = try decodeJSON(GANConfig.self, file.metadata[CheckpointKey.config], file: source, what: "model config")
    try config.validate()
    return try samplingGenerator(config, file: file, source: source)
}

/// G with the weights sampling uses (the EMA copy when the file has one), in inference mode.
func samplingGenerator(_ config: GANConfig, file: SafetensorsFile, source: String) throws -> DCGANGenerator {
    var stream = RandomStream(seed: 0)
    let generator = DCGANGenerator(config, stream: &stream)
    try generator.load(file.tensors, source: source, prefix: samplingPrefix(file, modelPrefix: "G"))
    generator.setTraining(false)
    return generator
}
