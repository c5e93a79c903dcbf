import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Generation: N images from a model, sharded, resumable, reproducible per sample
//
// Sample i depends only on (seed, i): its latent (GAN) or its noise (diffusion) comes from
// RandomStream(seed).split(i). So any batch size, any shard layout (`--shard k/n` does the
// indices k, k+n, …) and any resumed run give the same images byte for byte.

public struct GenerationRequest {
    public var model: String
    public var count: Int
    public var out: URL
    public var className: String?
    public var seed: UInt64 = 0
    public var batchSize: Int = 32
    public var shard: Shard = .whole
    public var bitDepth: Int = 8
    public var resume = false
    /// How diffusion models sample (ignored for GANs).
    public var sampling = SamplerSettings()
    public init(model: String, count: Int, out: URL) { self.model = model; self.count = count; self.out = out }
}

public struct GenerationReport {
    public let written: Int
    /// Existing samples kept (--resume): each decoded and had the model's size, channels and depth.
    public let skipped: Int
    public let manifest: URL
    /// Existing files under a sample's name that were not a valid sample (empty, corrupt, foreign,
    /// wrong size or depth) and were made again, with the reason.
    public var replaced: [(file: URL, reason: String)] = []
    /// Orphaned temporaries of an interrupted run that were removed.
    public var removedTemporaries: [URL] = []
}

/// Anything that turns sample indices (and classes) into images.
protocol SampleSource {
    var config: (imageSize: Int, channels: Int, classNames: [String]) { get }
    var kind: ModelKind { get }
    /// CHW floats in [-1, 1] for each index, sample i drawn from RandomStream(seed).split(i).
    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]]
}

struct GANSampleSource: SampleSource {
    let generator: DCGANGenerator
    var kind: ModelKind { .dcgan }
    var config: (imageSize: Int, channels: Int, classNames: [String]) {
        (generator.config.imageSize, generator.config.channels, generator.config.classNames)
    }

    func images(indices: [Int], classes: [Int]?, seed: UInt64) -> [[Float]] {
        let latent = generator.config.latentDim
        var z = [Float](repeating: 0, count: indices.count * latent)
        let selfConditioned = generator.config.clustersPerClass > 1
        var labels: [Int]? = selfConditioned ? [] : classes
        for (row, i) in indices.enumerated() {
            var stream = RandomStream(seed: seed).split(UInt64(i))
            for j in 0..<latent { z[row * latent + j] = stream.normal() }
            // A self-conditioned model's cluster comes from the sample's own stream, so sample i
            // is the same in any batch or shard.
            if selfConditioned {
                var draws = stream.split(.selfConditioningDraw)
                labels!.append(generator.config.conditioningLabel(classIndex: classes?[row], stream: &draws)!)
            }
        }
        let out = withNoGrad { generator(Tensor(shape: [indices.count, latent], data: z), labels: labels) }
        let per = out.count / indices.count
        return (0..<indices.count).map { Array(out.data[$0 * per..<($0 + 1) * per]) }
    }
}

/// The sample source of any model file: one load, switched on the checkpoint's kind.
func loadSampleSource(_ url: URL, sampling: SamplerSettings) throws -> any SampleSource {
    switch try loadModel(from: url) {
    case .dcgan(let generator):
        return GANSampleSource(generator: generator)
    case .diffusion(let sampler, let config):
        try sampler.checkSettings(sampling)
        return DiffusionSampleSource(sampler: sampler, unetConfig: config, settings: sampling)
    case .vae(let vae, _):
        return VAESampleSource(vae: vae)
    case .latentDiffusion(let model):
        try model.sampler.checkSettings(sampling)
        return LatentDiffusionSampleSource(model: model, settings: sampling)
    case .latentGAN(let model):
        return LatentGANSampleSource(model: model)
    }
}

/// File name of sample i: the same in every shard, so shards merge into one folder.
public func sampleFileName(_ index: Int) -> String { String(format: "sample_%06d.png", index) }

/// nil when `url` holds a sample this run could have written (a regular PNG file that decodes to
/// `size`x`size` with `channels` channels at `bitDepth` bits); otherwise why it does not.
func invalidSampleReason(_ url: URL, size: Int, channels: Int, bitDepth: Int) -> String? {
    let image: Image
    do { image = try readImage(at: url, maxSide: size) } catch let error as MedSynthError {
        let prefix = url.path + ": "
        return error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
    } catch { return "\(error)" }
    if image.width != size || image.height != size || image.channels != channels || image.bitDepth != bitDepth {
        return "is \(image.width)x\(image.height), \(image.channels) channel(s), \(image.bitDepth)-bit; "
            + "this run makes \(size)x\(size), \(channels) channel(s), \(bitDepth)-bit"
    }
    return nil
}

/// Refuses to replace `url` unless it is a manifest of this generator: every line a sample record
/// of model `modelID`. When resuming, its records must also carry this run's seed and sampler
/// settings, since the samples kept are recorded under them.
func checkManifestIsOurs(_ url: URL, modelID: String, count: Int, resume: Bool, expected: (Int) -> ManifestRecord) throws {
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    let refuse = { (problem: String) in
        MedSynthError(file: url.path, "\(problem); refusing to overwrite it (move it away or choose another --out)")
    }
    let bytes: [UInt8]
    do { bytes = try readFileBytes(at: url) } catch let error as MedSynthError { throw refuse(error.message) }
    let decoder = JSONDecoder()
    for (number, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
        guard let record = try? decoder.decode(ManifestRecord.self, from: Data(line.utf8)), record.source == "synthetic" else {
            throw refuse("exists and is not a manifest of `medsynth generate` (line \(number + 1) is not a sample record)")
        }
        guard record.model_id == modelID else {
            throw refuse("exists and belongs to another model (\(record.model_id), this run: \(modelID))")
        }
        if resume {
            let mine = expected(record.sample_index >= 0 && record.sample_index < count ? record.sample_index : 0)
            let sameIndex = record.sample_index >= 0 && record.sample_index < count
            let theirSteps: String = record.steps.map { String($0) } ?? "-", mySteps: String = mine.steps.map { String($0) } ?? "-"
            let theirGuidance: String = record.guidance.map { "\($0)" } ?? "-", myGuidance: String = mine.guidance.map { "\($0)" } ?? "-"
            let theirClass: String = sameIndex ? (record.class ?? "-") : "-", myClass: String = sameIndex ? (mine.class ?? "-") : "-"
            let fields: [(String, String, String)] = [
                ("seed", String(record.seed), String(mine.seed)),
                ("sampler", record.sampler ?? "-", mine.sampler ?? "-"),
                ("steps", theirSteps, mySteps),
                ("guidance", theirGuidance, myGuidance),
                ("eta", record.eta.map { "\($0)" } ?? "-", mine.eta.map { "\($0)" } ?? "-"),
                ("spacing", record.spacing ?? "-", mine.spacing ?? "-"),
                ("steps offset", record.steps_offset.map { String($0) } ?? "-", mine.steps_offset.map { String($0) } ?? "-"),
                ("final alpha bar", record.final_alpha_bar ?? "-", mine.final_alpha_bar ?? "-"),
                ("class", theirClass, myClass),
            ]
            for (field, theirs, ours) in fields
            where theirs != ours {
                throw refuse("exists with \(field) \(theirs) but this run has \(field) \(ours): --resume would record the kept samples under the wrong \(field)")
            }
        }
    }
}

/// Generates the request's share of images, writing PNGs (atomically) and the shard's manifest.
@discardableResult
public func generateImages(_ request: GenerationRequest, progress style: ProgressStyle = .human) throws -> GenerationReport {
    guard request.count > 0 else { throw MedSynthError("--count must be positive") }
    guard request.batchSize > 0 else { throw MedSynthError("--batch must be positive") }
    guard request.bitDepth == 8 || request.bitDepth == 16 else { throw MedSynthError("--bit-depth must be 8 or 16") }
    let modelURL = try resolveModelFile(request.model)
    let source = try loadSampleSource(modelURL, sampling: request.sampling)
    let modelID = try modelIdentifier(of: modelURL)
    let classNames = source.config.classNames
    var fixedClass: Int? = nil
    if let name = request.className {
        guard !classNames.isEmpty else { throw MedSynthError(file: modelURL.path, "model is unconditional; --class '\(name)' cannot be honoured") }
        guard let index = classNames.firstIndex(of: name) else {
            throw MedSynthError(file: modelURL.path, "model does not know class '\(name)' (it knows: \(classNames.joined(separator: ", ")))")
        }
        fixedClass = index
    }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: request.out.path, isDirectory: &isDirectory) && !isDirectory.boolValue {
        throw MedSynthError(file: request.out.path, "output path is a file, not a folder")
    }
    do { try FileManager.default.createDirectory(at: request.out, withIntermediateDirectories: true) }
    catch { throw MedSynthError(file: request.out.path, "cannot create the output folder (\(error.localizedDescription))") }

    let indices = request.shard.indices(below: request.count)
    let manifestURL = request.out.appendingPathComponent(request.shard.manifestName)
    let size = source.config.imageSize, channels = source.config.channels
    /// Conditional models without --class cycle through the classes: sample i gets class i mod K.
    func classOf(_ i: Int) -> Int? { classNames.isEmpty ? nil : (fixedClass ?? i % classNames.count) }
    func record(_ i: Int) -> ManifestRecord {
        let s = request.sampling
        guard source.kind.isDiffusion else {
            return ManifestRecord(file: sampleFileName(i), class: classOf(i).map { classNames[$0] }, seed: request.seed, sample_index: i,
                                  model_id: modelID, model_kind: source.kind.rawValue)
        }
        // DDPM visits every timestep; spacing, offset and final ᾱ only mean something to DDIM/DPM-Solver.
        let spaced = s.kind != .ddpm
        return ManifestRecord(file: sampleFileName(i), class: classOf(i).map { classNames[$0] }, seed: request.seed, sample_index: i,
                              model_id: modelID, model_kind: source.kind.rawValue, sampler: s.kind.rawValue, steps: s.steps,
                              guidance: s.guidance, eta: s.kind == .ddim ? s.eta : nil,
                              spacing: spaced ? s.effectiveSpacing.rawValue : nil,
                              steps_offset: spaced && s.effectiveSpacing == .leading ? s.stepsOffset : nil,
                              final_alpha_bar: s.kind == .ddim ? s.finalAlphaBar.rawValue : nil)
    }
    // Before touching anything: an existing manifest must be one of ours (and, when resuming, of this run).
    try checkManifestIsOurs(manifestURL, modelID: modelID, count: request.count, resume: request.resume, expected: record)
    // Temporaries a killed run of this shard left (sample PNGs, the manifest) are orphans now.
    let removedTemporaries = removeStaleTemporaries(in: request.out,
                                                    for: Set(indices.map(sampleFileName) + [request.shard.manifestName]))
    var records: [ManifestRecord] = []
    var pending: [Int] = []
    var replaced: [(file: URL, reason: String)] = []
    for i in indices {
        records.append(record(i))
        let url = request.out.appendingPathComponent(sampleFileName(i))
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder)
        if exists && !request.resume {
            throw MedSynthError(file: url.path, "already exists; pass --resume to keep existing samples and make only the missing ones")
        }
        if exists && isFolder.boolValue { throw MedSynthError(file: url.path, "is a folder where a sample belongs; move it away") }
        if !exists {
            pending.append(i)
        } else if let reason = invalidSampleReason(url, size: size, channels: channels, bitDepth: request.bitDepth) {
            // Kept only if it is a sample this run could have written; anything else is made again.
            replaced.append((url, reason))
            pending.append(i)
        }
    }
    let reporter = ProgressReporter(label: "generate", total: indices.count, unit: "image", style: style, startDone: indices.count - pending.count)
    var done = indices.count - pending.count
    var start = 0
    while start < pending.count {
        let batch = Array(pending[start..<min(pending.count, start + request.batchSize)])
        let classes: [Int]? = classNames.isEmpty ? nil : batch.map { classOf($0)! }
        let images = source.images(indices: batch, classes: classes, seed: request.seed)
        for (i, values) in zip(batch, images) {
            let image = Image(floatCHW: values, width: size, height: size, channels: channels, bitDepth: request.bitDepth)
            try writePNG(image, to: request.out.appendingPathComponent(sampleFileName(i)))
        }
        start += batch.count
        done += batch.count
        reporter.update(done: done, items: start)
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let lines = try records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
    try writeAtomically(Data(lines.utf8), to: manifestURL)
    if pending.isEmpty { reporter.update(done: indices.count, items: 0, force: true) }
    var report = GenerationReport(written: pending.count, skipped: indices.count - pending.count, manifest: manifestURL)
    report.replaced = replaced
    report.removedTemporaries = removedTemporaries
    return report
}
