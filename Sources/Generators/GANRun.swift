import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - The GAN training loop: data, steps, progress, grids, checkpoints, resume

public struct GANRunResult {
    public let run: RunFolder
    public let finalStep: Int
    public let lastStats: GANStepStats?
}

/// Trains (or resumes) a DCGAN run in `out`. Every `checkpointEvery` steps and at the end it
/// writes the full state atomically, so an interrupted run continues with `resume` and gives the
/// same numbers as an uninterrupted one.
@discardableResult
public func trainGAN(_ requestIn: TrainingRequest, options optionsIn: GANTrainingOptions = GANTrainingOptions(), out: URL, resume: Bool,
                     progress style: ProgressStyle = .human) throws -> GANRunResult {
    let resumed = try loadResumedRun(requestIn, out: out, resume: resume, kind: .dcgan, optionsKey: "medsynth.gan", as: GANTrainingOptions.self)
    let request = resumed?.request ?? requestIn
    var options = resumed?.options ?? optionsIn
    let startStep = resumed?.step ?? 0
    let resumeState = resumed?.state
    let (run, dataset) = try prepareRun(request, out: out, resume: resume)
    if options.augment != (request.augment ?? (dataset.count < 2000)) && resumeState == nil {
        options.augment = request.augment ?? (dataset.count < 2000)
    }
    options.augmentation.horizontalFlip = request.flips
    let config = GANConfig(imageSize: request.imageSize, channels: request.channels,
                           generatorWidth: request.width ?? 64, discriminatorWidth: request.width ?? 64,
                           numClasses: request.conditional ? dataset.classNames.count : 0,
                           classNames: request.conditional ? dataset.classNames : [])
    try config.validate()
    let trainer = GANTrainer(config: config, options: options, seed: request.seed)
    if let state = resumeState {
        let source = run.latestCheckpoint.path
        let savedConfig = try decodeJSON(GANConfig.self, state.metadata[CheckpointKey.config], file: source, what: "model config")
        guard savedConfig == config else {
            throw MedSynthError(file: source, "checkpoint was trained with another configuration or class list (\(savedConfig.classNames) vs \(config.classNames))")
        }
        try trainer.generator.load(state.tensors, source: source, prefix: "G")
        try trainer.discriminator.load(state.tensors, source: source, prefix: "D")
        try restoreOptimizer(trainer.optimizerG, name: "G", from: state, source: source)
        try restoreOptimizer(trainer.optimizerD, name: "D", from: state, source: source)
        try restoreEMA(trainer.ema, module: trainer.generator, from: state, source: source)
    } else {
        try writeAtomically(Data(try jsonString(request).utf8), to: run.runFile)
    }

    let log = try LossLog(url: run.losses, header: "step,loss_d,loss_g,d_real,d_fake", resumeAfter: startStep)
    let reporter = ProgressReporter(label: "train gan", total: request.steps, unit: "step", style: style, startDone: startStep)
    if startStep > 0 { reporter.note("resuming from step \(startStep)") }
    reporter.note("\(dataset.count) images in \(dataset.classNames.count) class(es) \(dataset.classNames); augmentation \(options.augment ? "on" : "off")")

    func saveCheckpoint(step: Int) throws {
        let (gOpt, gMeta) = optimizerEntries(trainer.optimizerG, name: "G")
        let (dOpt, dMeta) = optimizerEntries(trainer.optimizerD, name: "D")
        var metadata = gMeta.merging(dMeta) { a, _ in a }
        metadata[CheckpointKey.kind] = ModelKind.dcgan.rawValue
        metadata[CheckpointKey.config] = try jsonString(config)
        metadata[CheckpointKey.training] = try jsonString(request)
        metadata["medsynth.gan"] = try jsonString(options)
        metadata[CheckpointKey.step] = String(step)
        metadata[CheckpointKey.version] = MedSynthVersion.current
        let entries = trainer.generator.safetensorsEntries(prefix: "G") + trainer.discriminator.safetensorsEntries(prefix: "D")
            + emaEntries(trainer.ema, module: trainer.generator) + gOpt + dOpt
        let bytes = try encodeSafetensors(entries, metadata: metadata)
        if step % request.checkpointEvery == 0 { try writeAtomically(bytes, to: run.checkpoint(step: step)) }
        try writeAtomically(bytes, to: run.latestCheckpoint)
        // Sampling weights only: the EMA generator, under the reference's names.
        let sampler = trainer.samplingGenerator()
        var modelMeta = [CheckpointKey.kind: ModelKind.dcgan.rawValue, CheckpointKey.config: metadata[CheckpointKey.config]!,
                         CheckpointKey.step: String(step), CheckpointKey.version: MedSynthVersion.current]
        modelMeta[CheckpointKey.seed] = String(request.seed)
        try writeSafetensors(sampler.safetensorsEntries(prefix: "G"), metadata: modelMeta, to: run.model)
    }

    func saveGrid(step: Int) throws {
        let sampler = trainer.samplingGenerator()
        let count = 16
        var stream = RandomStream(seed: request.seed).split(.ganSampleGrid)
        let labels = config.numClasses > 0 ? (0..<count).map { $0 % config.numClasses } : nil
        let images = withNoGrad { sampler(trainer.latents(count, stream: &stream), labels: labels) }
        let per = images.count / count
        let grid = makeGrid(images: (0..<count).map { Array(images.data[$0 * per..<($0 + 1) * per]) },
                            channels: config.channels, size: config.imageSize, columns: 8)
        try writePNG(grid, to: run.sampleGrid(step: step))
    }

    var lastStats: GANStepStats? = nil
    var itemsThisProcess = 0
    var step = startStep
    while step < request.steps {
        let indices = batchIndices(step: step, batchSize: request.batchSize, datasetCount: dataset.count, seed: request.seed)
        let (real, labels) = try loadBatch(dataset, indices: indices)
        var stream = RandomStream(seed: request.seed).split(.trainingStep).split(UInt64(step))
        let stats = trainer.step(real: real, labels: config.numClasses > 0 ? labels : nil, stream: &stream)
        try checkFinite(["loss_d": stats.discriminatorLoss, "loss_g": stats.generatorLoss], step: step + 1, run: run)
        step += 1
        itemsThisProcess += request.batchSize
        lastStats = stats
        log.append("\(step),\(stats.discriminatorLoss),\(stats.generatorLoss),\(stats.dReal),\(stats.dFake)")
        reporter.update(done: step, items: itemsThisProcess,
                        values: ["loss_D": Double(stats.discriminatorLoss), "loss_G": Double(stats.generatorLoss),
                                 "D(x)": Double(stats.dReal), "D(G(z))": Double(stats.dFake)])
        if step % request.checkpointEvery == 0 || step == request.steps { try saveCheckpoint(step: step) }
        if step % request.sampleEvery == 0 || step == request.steps { try saveGrid(step: step) }
    }
    if startStep >= request.steps { reporter.note("already at step \(startStep) of \(request.steps); nothing to do") }
    return GANRunResult(run: run, finalStep: step, lastStats: lastStats)
}

/// Loads the sampling generator from a model file (model.safetensors, or a training checkpoint's EMA weights).
public func loadGANGenerator(from url: URL) throws -> DCGANGenerator {
    let file = try readSafetensors(at: url)
    guard file.metadata[CheckpointKey.kind] == ModelKind.dcgan.rawValue else {
        throw MedSynthError(file: url.path, "not a DCGAN checkpoint (kind: \(file.metadata[CheckpointKey.kind] ?? "none"))")
    }
    let config = try decodeJSON(GANConfig.self, file.metadata[CheckpointKey.config], file: url.path, what: "model config")
    try config.validate()
    var stream = RandomStream(seed: 0)
    let generator = DCGANGenerator(config, stream: &stream)
    let prefix = file.tensors.keys.contains { $0.hasPrefix("ema.") } ? "ema" : "G"
    try generator.load(file.tensors, source: url.path, prefix: prefix)
    generator.setTraining(false)
    return generator
}
