import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Diffusion training runs

public struct DiffusionRunResult {
    public let run: RunFolder
    public let finalStep: Int
    public let lastLoss: Float?
}

/// Trains (or resumes) a diffusion run in `out`, with the same run-folder layout, progress,
/// atomic checkpoints and exact resume as the GAN.
@discardableResult
public func trainDiffusion(_ requestIn: TrainingRequest, options optionsIn: DiffusionTrainingOptions = DiffusionTrainingOptions(),
                           out: URL, resume: Bool, progress style: ProgressStyle = .human,
                           gridSteps: Int = 25) throws -> DiffusionRunResult {
    let resumed = try loadResumedRun(requestIn, out: out, resume: resume, kind: .diffusion, optionsKey: "medsynth.diffusion", as: DiffusionTrainingOptions.self)
    let request = resumed?.request ?? requestIn
    let options = resumed?.options ?? optionsIn
    let startStep = resumed?.step ?? 0
    let resumeState = resumed?.state
    let (run, dataset) = try prepareRun(request, out: out, resume: resume)
    var config = UNetConfig(imageSize: request.imageSize, channels: request.channels, baseWidth: request.width ?? 32,
                            numClasses: request.conditional ? dataset.classNames.count : 0,
                            classNames: request.conditional ? dataset.classNames : [])
    // Attention at the coarsest level (8 px for 64 px images), as UNet-S.
    config.attentionResolutions = [request.imageSize >> (config.channelMultipliers.count - 1)]
    try config.validate()
    let trainer = DiffusionTrainer(config: config, options: options, seed: request.seed)
    if let state = resumeState {
        let source = run.latestCheckpoint.path
        let savedConfig = try decodeJSON(UNetConfig.self, state.metadata[CheckpointKey.config], file: source, what: "model config")
        guard savedConfig == config else {
            throw MedSynthError(file: source, "checkpoint was trained with another configuration or class list")
        }
        try trainer.model.load(state.tensors, source: source, prefix: "U")
        try restoreOptimizer(trainer.optimizer, name: "U", from: state, source: source)
        try restoreEMA(trainer.ema, module: trainer.model, from: state, source: source)
    } else {
        try writeAtomically(Data(try jsonString(request).utf8), to: run.runFile)
    }
    let log = try LossLog(url: run.losses, header: "step,loss", resumeAfter: startStep)
    let reporter = ProgressReporter(label: "train diffusion", total: request.steps, unit: "step", style: style, startDone: startStep)
    if startStep > 0 { reporter.note("resuming from step \(startStep)") }
    reporter.note("\(dataset.count) images in \(dataset.classNames.count) class(es) \(dataset.classNames); U-Net \(trainer.model.parameterCount) parameters")

    func saveCheckpoint(step: Int) throws {
        let (opt, optMeta) = optimizerEntries(trainer.optimizer, name: "U")
        var metadata = optMeta
        metadata[CheckpointKey.kind] = ModelKind.diffusion.rawValue
        metadata[CheckpointKey.config] = try jsonString(config)
        metadata[CheckpointKey.training] = try jsonString(request)
        metadata["medsynth.diffusion"] = try jsonString(options)
        metadata[CheckpointKey.step] = String(step)
        metadata[CheckpointKey.version] = MedSynthVersion.current
        let bytes = try encodeSafetensors(trainer.model.safetensorsEntries(prefix: "U") + emaEntries(trainer.ema, module: trainer.model) + opt,
                                          metadata: metadata)
        if step % request.checkpointEvery == 0 { try writeAtomically(bytes, to: run.checkpoint(step: step)) }
        try writeAtomically(bytes, to: run.latestCheckpoint)
        let modelMeta = [CheckpointKey.kind: ModelKind.diffusion.rawValue, CheckpointKey.config: metadata[CheckpointKey.config]!,
                         "medsynth.diffusion": metadata["medsynth.diffusion"]!, CheckpointKey.step: String(step),
                         CheckpointKey.version: MedSynthVersion.current, CheckpointKey.seed: String(request.seed)]
        try writeSafetensors(trainer.samplingModel().safetensorsEntries(prefix: "U"), metadata: modelMeta, to: run.model)
    }

    func saveGrid(step: Int) throws {
        let count = 8
        var settings = SamplerSettings()
        settings.steps = gridSteps
        let labels = config.numClasses > 0 ? (0..<count).map { $0 % config.numClasses } : nil
        let images = trainer.sampler(model: trainer.samplingModel()).sample(indices: Array(0..<count), labels: labels, seed: request.seed, settings: settings)
        let per = images.count / count
        let grid = makeGrid(images: (0..<count).map { Array(images[$0 * per..<($0 + 1) * per]) }, channels: config.channels, size: config.imageSize, columns: 8)
        try writePNG(grid, to: run.sampleGrid(step: step))
    }

    var lastLoss: Float? = nil
    var items = 0
    var step = startStep
    while step < request.steps {
        let indices = batchIndices(step: step, batchSize: request.batchSize, datasetCount: dataset.count, seed: request.seed)
        let (x0, labels) = try loadBatch(dataset, indices: indices)
        var stream = RandomStream(seed: request.seed).split(.trainingStep).split(UInt64(step))
        let loss = trainer.step(x0: x0, labels: config.numClasses > 0 ? labels : nil, stream: &stream)
        try checkFinite(["loss": loss], step: step + 1, run: run)
        step += 1
        items += request.batchSize
        lastLoss = loss
        log.append("\(step),\(loss)")
        reporter.update(done: step, items: items, values: ["loss": Double(loss)])
        if step % request.checkpointEvery == 0 || step == request.steps { try saveCheckpoint(step: step) }
        if step % request.sampleEvery == 0 || step == request.steps { try saveGrid(step: step) }
    }
    return DiffusionRunResult(run: run, finalStep: step, lastLoss: lastLoss)
}

/// The sampling U-Net and its sampler from a model file (model.safetensors or a training checkpoint).
public func loadDiffusionSampler(from url: URL) throws -> (sampler: DiffusionSampler, config: UNetConfig) {
    let file = try readSafetensors(at: url)
    guard file.metadata[CheckpointKey.kind] == ModelKind.diffusion.rawValue else {
        throw MedSynthError(file: url.path, "not a diffusion checkpoint (kind: \(file.metadata[CheckpointKey.kind] ?? "none"))")
    }
    let config = try decodeJSON(UNetConfig.self, file.metadata[CheckpointKey.config], file: url.path, what: "model config")
    let options = try decodeJSON(DiffusionTrainingOptions.self, file.metadata["medsynth.diffusion"], file: url.path, what: "diffusion options")
    try config.validate()
    var stream = RandomStream(seed: 0)
    let unet = UNet(config, stream: &stream)
    let prefix = file.tensors.keys.contains { $0.hasPrefix("ema.") } ? "ema" : "U"
    try unet.load(file.tensors, source: url.path, prefix: prefix)
    let sampler = DiffusionSampler(model: unet, schedule: NoiseSchedule(kind: options.schedule, steps: options.timesteps),
                                   target: options.target, numClasses: config.numClasses,
                                   sampleShape: [config.channels, config.imageSize, config.imageSize])
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

func diffusionSampleSource(_ url: URL, sampling: DiffusionSampling) throws -> any SampleSource {
    let (sampler, config) = try loadDiffusionSampler(from: url)
    guard let kind = SamplerKind(rawValue: sampling.sampler) else {
        throw MedSynthError("--sampler must be ddpm, ddim or dpm, got '\(sampling.sampler)'")
    }
    guard sampling.steps >= 1 else { throw MedSynthError("--steps must be at least 1") }
    var settings = SamplerSettings()
    settings.kind = kind; settings.steps = sampling.steps; settings.guidance = sampling.guidance; settings.eta = sampling.eta
    return DiffusionSampleSource(sampler: sampler, unetConfig: config, settings: settings)
}
