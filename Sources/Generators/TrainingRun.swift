import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Training runs: one driver for every model
//
// The driver owns everything a run does that is not the model's own maths: the data and its
// seeded batches, the run folder, resume, the loss log, progress, the finite check, checkpoint
// and grid cadence. A model takes part by implementing `ModelTrainer`: one step that returns
// named numbers, its state as checkpoint tensors, restoring that state, its sampling weights and
// a grid of samples. Adding a trainer means writing those five things and calling `runTraining`.

/// A model's settings, saved beside its weights.
public protocol ModelConfig: Codable, Equatable {
    var classNames: [String] { get }
    /// Throws when a setting is out of range (before anything is built from it).
    func validate() throws
    /// This config with the settings whose default has changed since `saved` was written taken
    /// from `saved`, so a run started by an older medsynth resumes as it began. Default: unchanged.
    func keepingChangedDefaults(of saved: Self) -> Self
}

extension ModelConfig {
    public func keepingChangedDefaults(of saved: Self) -> Self { self }
}

/// A number a training step reports: its column in losses.csv and its label in the progress line.
public struct TrainingMetric: Equatable {
    public let column: String
    public let label: String
    public init(_ column: String, label: String? = nil) { self.column = column; self.label = label ?? column }
}

/// What a model's trainer implements so the driver can run it (see the file comment).
public protocol ModelTrainer: AnyObject {
    associatedtype Config: ModelConfig
    associatedtype Options: Codable & Equatable
    static var kind: ModelKind { get }
    /// Checkpoint metadata key of the trainer's options.
    static var optionsKey: String { get }
    /// What `trainingStep` returns, in order.
    static var metrics: [TrainingMetric] { get }
    /// The model to build for `request` on `dataset` (the same for a new and a resumed run).
    static func makeConfig(request: TrainingRequest, dataset: ImageFolderDataset) throws -> Config
    /// The same, for a trainer whose options choose part of the architecture (default: the above).
    static func makeConfig(request: TrainingRequest, options: Options, dataset: ImageFolderDataset) throws -> Config
    /// A new run's options completed from the data (settings left to be decided from it).
    static func resolveOptions(_ options: Options, dataset: ImageFolderDataset) -> Options
    /// A resumed run's options: the saved ones, with whatever the trainer lets a resume change
    /// taken from the command line's. Default: the saved ones.
    static func resumedOptions(saved: Options, requested: Options) -> Options

    init(config: Config, options: Options, seed: UInt64)
    var config: Config { get }
    var options: Options { get }
    /// One line about the model for the start of the run.
    var summary: String { get }
    /// One optimisation step on a batch (N×C×H×W in [−1, 1]); every random draw comes from `stream`.
    func trainingStep(batch: Tensor, labels: [Int]?, stream: inout RandomStream) -> [Float]
    /// The whole training state (weights, EMA, optimiser moments) and its metadata.
    func stateEntries() -> (tensors: [SafetensorsEntry], metadata: [String: String])
    func restoreState(from state: SafetensorsFile, source: String) throws
    /// The sampling weights (EMA) under the reference's names: model.safetensors.
    func samplingEntries() -> [SafetensorsEntry]
    /// A grid of samples from the sampling weights, with the same draws at every call.
    func sampleGrid(seed: UInt64) -> Image
    /// Called once before the first step (new or resumed run) with the run's data; a trainer that
    /// needs more than batches (grid inputs, an autoencoder file) takes it here. Default: nothing.
    func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws
    /// The labels a batch of dataset entries `indices` trains with; `classLabels` are their classes
    /// (nil for an unconditional model). Default: the classes.
    func batchLabels(indices: [Int], classLabels: [Int]?) -> [Int]?
    /// Extra metadata for model.safetensors and checkpoints (e.g. a VAE's latent scale). Default: none.
    func samplingMetadata() -> [String: String]
}

extension ModelTrainer {
    public static func makeConfig(request: TrainingRequest, options: Options, dataset: ImageFolderDataset) throws -> Config {
        try makeConfig(request: request, dataset: dataset)
    }
    public static func resolveOptions(_ options: Options, dataset: ImageFolderDataset) -> Options { options }
    public static func resumedOptions(saved: Options, requested: Options) -> Options { saved }
    public func attach(dataset: ImageFolderDataset, request: TrainingRequest) throws {}
    public func batchLabels(indices: [Int], classLabels: [Int]?) -> [Int]? { classLabels }
    public func samplingMetadata() -> [String: String] { [:] }
}

public struct TrainingRunResult {
    public let run: RunFolder
    public let finalStep: Int
    /// The last step's numbers, by metric column (nil when no step ran).
    public let lastValues: [String: Float]?
}

// MARK: - What a training run is asked to do

public struct TrainingRequest: Codable, Equatable {
    public var data: String
    public var imageSize: Int = 64
    public var channels: Int = 1
    public var steps: Int = 2000
    public var batchSize: Int = 32
    public var seed: UInt64 = 0
    public var conditional = false
    public var checkpointEvery: Int = 500
    public var sampleEvery: Int = 250
    /// Network width: ngf = ndf for the DCGAN (default 64), base width for the U-Net (default 32).
    public var width: Int? = nil
    /// VAE: latent channels (default 4) and downsampling factor (default 4).
    public var latentChannels: Int? = nil
    public var downsamplingFactor: Int? = nil
    /// Latent diffusion: the VAE model file or run folder whose latents the U-Net learns.
    public var autoencoder: String? = nil
    /// Latent diffusion: one scale for all latent channels (nil, the default) or a shift and scale per channel.
    public var latentNormalisation: LatentNormalisation? = nil
    /// U-Net: width multiplier of each level (one level per entry, each after the first halves the
    /// side) and the sides whose levels get self-attention; nil = the defaults (1,2,4,4; the coarsest level).
    public var channelMultipliers: [Int]? = nil
    public var attentionResolutions: [Int]? = nil
    public init(data: String) { self.data = data }
}

/// Which dataset items form the batch of `step`: the dataset is walked epoch by epoch, each epoch
/// in its own seeded order, so step s's batch depends only on (seed, s) and resuming re-creates it.
public func batchIndices(step: Int, batchSize: Int, datasetCount: Int, seed: UInt64) -> [Int] {
    var cachedEpoch = -1
    var order: [Int] = []
    return (0..<batchSize).map { j in
        let position = step * batchSize + j
        let epoch = position / datasetCount
        if epoch != cachedEpoch {
            var stream = RandomStream(seed: seed).split(.datasetOrder).split(UInt64(epoch))
            order = stream.permutation(datasetCount)
            cachedEpoch = epoch
        }
        return order[position % datasetCount]
    }
}

/// Fails before any work when the output folder cannot be a run folder or the data cannot train.
func prepareRun(_ request: TrainingRequest, out: URL, resume: Bool) throws -> (RunFolder, ImageFolderDataset) {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: out.path, isDirectory: &isDirectory) && !isDirectory.boolValue {
        throw MedSynthError(file: out.path, "output path is a file, not a folder")
    }
    let run = RunFolder(out)
    if !resume && FileManager.default.fileExists(atPath: run.latestCheckpoint.path) {
        throw MedSynthError(file: out.path, "run folder already has a checkpoint; pass --resume to continue it or choose another --out")
    }
    try request.validate()
    let dataset = try ImageFolderDataset(root: URL(fileURLWithPath: request.data), imageSize: request.imageSize, channels: request.channels)
    if request.conditional && dataset.classNames.count < 2 {
        throw MedSynthError(file: request.data, "--conditional needs class subfolders (found only '\(dataset.classNames.first ?? "")')")
    }
    try run.create()
    return (run, dataset)
}

/// Appends lines to the run's CSV, creating it with a header; lines past `fromStep` are dropped
/// first so a resumed run does not repeat steps.
final class LossLog {
    let url: URL
    var handle: FileHandle?

    init(url: URL, header: String, resumeAfter step: Int) throws {
        self.url = url
        var kept = header + "\n"
        if step > 0, let text = try? String(contentsOf: url, encoding: .utf8) {
            for line in text.split(separator: "\n").dropFirst() {
                if let first = line.split(separator: ",").first, let s = Int(first), s <= step { kept += line + "\n" }
            }
        }
        try writeAtomically(Data(kept.utf8), to: url)
        handle = try FileHandle(forWritingTo: url)
        handle?.seekToEndOfFile()
    }

    func append(_ line: String) { handle?.write(Data((line + "\n").utf8)) }
    deinit { try? handle?.close() }
}

func loadBatch(_ dataset: ImageFolderDataset, indices: [Int]) throws -> (Tensor, [Int]) {
    var values = [Float](repeating: 0, count: indices.count * dataset.itemCount)
    try values.withUnsafeMutableBufferPointer { try dataset.loadBatch(indices: indices, into: $0) }
    let tensor = Tensor(shape: [indices.count, dataset.channels, dataset.imageSize, dataset.imageSize], data: values)
    return (tensor, indices.map { dataset.entries[$0].classIndex })
}

func checkFinite(_ values: [(String, Float)], step: Int, run: RunFolder) throws {
    for (name, v) in values where !v.isFinite {
        throw MedSynthError(file: run.url.path, "\(name) became \(v.isNaN ? "NaN" : "infinite") at step \(step); training stopped, the last good checkpoint is \(run.latestCheckpoint.lastPathComponent) (try a lower learning rate)")
    }
}

/// Trains (or resumes) a run of `T` in `out`. Every `checkpointEvery` steps and at the end it
/// writes the full state atomically, so an interrupted run continues with `resume` and gives the
/// same numbers as an uninterrupted one: step s's batch and draws depend only on (seed, s).
@discardableResult
public func runTraining<T: ModelTrainer>(_ trainerType: T.Type, _ requestIn: TrainingRequest, options optionsIn: T.Options,
                                         out: URL, resume: Bool, progress style: ProgressStyle,
                                         label: String, prepare: (T) throws -> Void = { _ in }) throws -> TrainingRunResult {
    // A resumed run keeps its saved settings, except for a longer --steps (and what `resumedOptions` lets it change).
    let latest = RunFolder(out).latestCheckpoint
    var resumeState: SafetensorsFile? = nil
    var request = requestIn, options = optionsIn, startStep = 0
    if resume, FileManager.default.fileExists(atPath: latest.path) {
        let state = try readCheckpoint(at: latest, kind: T.kind)
        request = try decodeJSON(TrainingRequest.self, state.metadata[CheckpointKey.training], file: latest.path, what: "training settings")
        request.steps = max(requestIn.steps, request.steps)
        options = T.resumedOptions(saved: try decodeJSON(T.Options.self, state.metadata[T.optionsKey], file: latest.path, what: "\(T.kind.rawValue) options"),
                                   requested: optionsIn)
        startStep = Int(state.metadata[CheckpointKey.step] ?? "") ?? 0
        guard startStep >= 0 else { throw MedSynthError(file: latest.path, "invalid training settings: step is \(startStep), must not be negative") }
        resumeState = state
    }
    let (run, dataset) = try prepareRun(request, out: out, resume: resume)
    if resumeState == nil { options = T.resolveOptions(options, dataset: dataset) }
    var config = try T.makeConfig(request: request, options: options, dataset: dataset)
    if let state = resumeState {
        let savedConfig = try decodeJSON(T.Config.self, state.metadata[CheckpointKey.config], file: latest.path, what: "model config")
        config = config.keepingChangedDefaults(of: savedConfig)
        guard savedConfig == config else {
            throw MedSynthError(file: latest.path, "checkpoint was trained with another configuration or class list (\(savedConfig.classNames) vs \(config.classNames))")
        }
    }
    try config.validate()
    let trainer = T(config: config, options: options, seed: request.seed)
    try prepare(trainer)
    try trainer.attach(dataset: dataset, request: request)
    if let state = resumeState {
        try trainer.restoreState(from: state, source: latest.path)
    } else {
        try writeAtomically(Data(try jsonString(request).utf8), to: run.runFile)
    }

    let log = try LossLog(url: run.losses, header: (["step"] + T.metrics.map(\.column)).joined(separator: ","), resumeAfter: startStep)
    let reporter = ProgressReporter(label: label, total: request.steps, unit: "step", style: style, startDone: startStep)
    if startStep > 0 { reporter.note("resuming from step \(startStep)") }
    reporter.note("\(dataset.count) images in \(dataset.classNames.count) class(es) \(dataset.classNames); \(trainer.summary)")

    func saveCheckpoint(step: Int) throws {
        let configJSON = try jsonString(config), optionsJSON = try jsonString(trainer.options)
        var (tensors, metadata) = trainer.stateEntries()
        let extraMetadata = trainer.samplingMetadata()
        metadata.merge(extraMetadata) { _, extra in extra }
        metadata[CheckpointKey.kind] = T.kind.rawValue
        metadata[CheckpointKey.config] = configJSON
        metadata[CheckpointKey.training] = try jsonString(request)
        metadata[T.optionsKey] = optionsJSON
        metadata[CheckpointKey.step] = String(step)
        metadata[CheckpointKey.version] = MedSynthVersion.current
        let bytes = try encodeSafetensors(tensors, metadata: metadata)
        if step % request.checkpointEvery == 0 { try writeAtomically(bytes, to: run.checkpoint(step: step)) }
        try writeAtomically(bytes, to: run.latestCheckpoint)
        let modelMetadata = [CheckpointKey.kind: T.kind.rawValue, CheckpointKey.config: configJSON, T.optionsKey: optionsJSON,
                             CheckpointKey.step: String(step), CheckpointKey.version: MedSynthVersion.current,
                             CheckpointKey.seed: String(request.seed)].merging(extraMetadata) { kept, _ in kept }
        try writeSafetensors(trainer.samplingEntries(), metadata: modelMetadata, to: run.model)
    }

    var lastValues: [Float]? = nil
    var itemsThisProcess = 0
    var step = startStep
    while step < request.steps {
        let indices = batchIndices(step: step, batchSize: request.batchSize, datasetCount: dataset.count, seed: request.seed)
        let (batch, labels) = try loadBatch(dataset, indices: indices)
        var stream = RandomStream(seed: request.seed).split(.trainingStep).split(UInt64(step))
        let values = trainer.trainingStep(batch: batch, labels: trainer.batchLabels(indices: indices, classLabels: config.classNames.isEmpty ? nil : labels),
                                          stream: &stream)
        try checkFinite(zip(T.metrics, values).map { ($0.column, $1) }, step: step + 1, run: run)
        step += 1
        itemsThisProcess += request.batchSize
        lastValues = values
        log.append((["\(step)"] + values.map { "\($0)" }).joined(separator: ","))
        reporter.update(done: step, items: itemsThisProcess, values: zip(T.metrics, values).map { ($0.label, Double($1)) })
        if step % request.checkpointEvery == 0 || step == request.steps { try saveCheckpoint(step: step) }
        if step % request.sampleEvery == 0 || step == request.steps { try writePNG(trainer.sampleGrid(seed: request.seed), to: run.sampleGrid(step: step)) }
    }
    if startStep >= request.steps { reporter.note("already at step \(startStep) of \(request.steps); nothing to do") }
    return TrainingRunResult(run: run, finalStep: step,
                             lastValues: lastValues.map { Dictionary(uniqueKeysWithValues: zip(T.metrics.map(\.column), $0)) })
}

// MARK: - State of a trainer with one network, its Adam and its EMA

/// Checkpoint tensors of one network under `prefix`, its EMA shadow and its optimiser moments.
func singleNetworkState(_ model: Module, optimizer: Adam, ema: ParameterEMA, prefix: String) -> (tensors: [SafetensorsEntry], metadata: [String: String]) {
    let (moments, metadata) = optimizerEntries(optimizer, name: prefix)
    return (model.safetensorsEntries(prefix: prefix) + emaEntries(ema, module: model) + moments, metadata)
}

/// Restores what `singleNetworkState` saved.
func restoreSingleNetwork(_ model: Module, optimizer: Adam, ema: ParameterEMA, prefix: String,
                          from state: SafetensorsFile, source: String) throws {
    try model.load(state.tensors, source: source, prefix: prefix)
    try restoreOptimizer(optimizer, name: prefix, from: state, source: source)
    try restoreEMA(ema, module: model, from: state, source: source)
}

// MARK: - Loading a model file

/// A model file's contents, checked to be a checkpoint of `kind` (when given).
func readCheckpoint(at url: URL, kind: ModelKind?) throws -> SafetensorsFile {
    let file = try readSafetensors(at: url)
    let found = file.metadata[CheckpointKey.kind]
    if let kind, found != kind.rawValue {
        throw MedSynthError(file: url.path, "checkpoint holds a \(found ?? "unknown") model, not a \(kind.rawValue) model")
    }
    return file
}

/// The sampling weights' prefix in a model file: "ema" in a training checkpoint, the model's own otherwise.
func samplingPrefix(_ file: SafetensorsFile, modelPrefix: String) -> String {
    file.tensors.keys.contains { $0.hasPrefix("ema.") } ? "ema" : modelPrefix
}

/// A generator loaded for sampling, whatever its kind.
public enum LoadedModel {
    case dcgan(DCGANGenerator)
    case diffusion(DiffusionSampler, UNetConfig)
    case vae(VAE, scale: Float)
    case latentDiffusion(LatentDiffusionModel)
    case latentGAN(LatentGANModel)

    public var kind: ModelKind {
        switch self {
        case .dcgan: .dcgan; case .diffusion: .diffusion; case .vae: .vae; case .latentDiffusion: .latentDiffusion; case .latentGAN: .latentGAN
        }
    }
}

/// Loads the sampling weights of any medsynth model file (model.safetensors or a training checkpoint).
public func loadModel(from url: URL) throws -> LoadedModel {
    let file = try readSafetensors(at: url)
    switch ModelKind(rawValue: file.metadata[CheckpointKey.kind] ?? "") {
    case .dcgan: return .dcgan(try loadGANGenerator(file, source: url.path))
    case .diffusion:
        let (sampler, config) = try loadDiffusionSampler(file, source: url.path)
        return .diffusion(sampler, config)
    case .vae:
        let (vae, scale) = try loadVAE(file, source: url.path)
        return .vae(vae, scale: scale)
    case .latentDiffusion: return .latentDiffusion(try loadLatentDiffusion(file, source: url.path))
    case .latentGAN: return .latentGAN(try loadLatentGAN(file, source: url.path))
    case nil:
        throw MedSynthError(file: url.path, "not a medsynth model (kind: \(file.metadata[CheckpointKey.kind] ?? "none"))")
    }
}
