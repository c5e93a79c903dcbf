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
    public let skipped: Int
    public let manifest: URL
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
        for (row, i) in indices.enumerated() {
            var stream = RandomStream(seed: seed).split(UInt64(i))
            for j in 0..<latent { z[row * latent + j] = stream.normal() }
        }
        let out = withNoGrad { generator(Tensor(shape: [indices.count, latent], data: z), labels: classes) }
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
        guard sampling.steps >= 1 else { throw MedSynthError("--sampling-steps must be at least 1") }
        return DiffusionSampleSource(sampler: sampler, unetConfig: config, settings: sampling)
    }
}

/// File name of sample i: the same in every shard, so shards merge into one folder.
public func sampleFileName(_ index: Int) -> String { String(format: "sample_%06d.png", index) }

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
    /// Conditional models without --class cycle through the classes: sample i gets class i mod K.
    func classOf(_ i: Int) -> Int? { classNames.isEmpty ? nil : (fixedClass ?? i % classNames.count) }
    var records: [ManifestRecord] = []
    var pending: [Int] = []
    for i in indices {
        let isDiffusion = source.kind == .diffusion
        records.append(ManifestRecord(file: sampleFileName(i), class: classOf(i).map { classNames[$0] }, seed: request.seed, sample_index: i,
                                      model_id: modelID, model_kind: source.kind.rawValue,
                                      sampler: isDiffusion ? request.sampling.kind.rawValue : nil, steps: isDiffusion ? request.sampling.steps : nil,
                                      guidance: isDiffusion ? request.sampling.guidance : nil))
        let exists = FileManager.default.fileExists(atPath: request.out.appendingPathComponent(sampleFileName(i)).path)
        if exists && !request.resume {
            throw MedSynthError(file: request.out.appendingPathComponent(sampleFileName(i)).path, "already exists; pass --resume to keep existing samples and make only the missing ones")
        }
        if !exists { pending.append(i) }
    }
    let manifestURL = request.out.appendingPathComponent(request.shard.manifestName)
    let reporter = ProgressReporter(label: "generate", total: indices.count, unit: "image", style: style, startDone: indices.count - pending.count)
    var done = indices.count - pending.count
    var start = 0
    let size = source.config.imageSize, channels = source.config.channels
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
    return GenerationReport(written: pending.count, skipped: indices.count - pending.count, manifest: manifestURL)
}
