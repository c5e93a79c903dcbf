import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - What a training run is asked to do (shared by the GAN and diffusion trainers)

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
    /// Differentiable augmentation before D (GAN only); nil = on below 2,000 images.
    public var augment: Bool? = nil
    public var flips = false
    /// Network width: ngf = ndf for the DCGAN (default 64), base width for the U-Net (default 32).
    public var width: Int? = nil
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
    guard request.steps > 0, request.batchSize > 0 else { throw MedSynthError("--steps and --batch must be positive") }
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

func checkFinite(_ values: [String: Float], step: Int, run: RunFolder) throws {
    for (name, v) in values.sorted(by: { $0.key < $1.key }) where !v.isFinite {
        throw MedSynthError(file: run.url.path, "\(name) became \(v.isNaN ? "NaN" : "infinite") at step \(step); training stopped, the last good checkpoint is \(run.latestCheckpoint.lastPathComponent) (try a lower learning rate)")
    }
}

/// A run to continue: the run's saved settings (they win over the command line, except for a
/// longer --steps), its step, its options of type `Options` (metadata `optionsKey`) and its state.
struct ResumedRun<Options: Decodable> {
    let request: TrainingRequest
    let options: Options
    let step: Int
    let state: SafetensorsFile
}

func loadResumedRun<Options: Decodable>(_ request: TrainingRequest, out: URL, resume: Bool, kind: ModelKind,
                                        optionsKey: String, as: Options.Type) throws -> ResumedRun<Options>? {
    let latest = RunFolder(out).latestCheckpoint
    guard resume, FileManager.default.fileExists(atPath: latest.path) else { return nil }
    let state = try readSafetensors(at: latest)
    guard state.metadata[CheckpointKey.kind] == kind.rawValue else {
        throw MedSynthError(file: latest.path, "checkpoint holds a \(state.metadata[CheckpointKey.kind] ?? "unknown") model, not a \(kind.rawValue) model")
    }
    var saved = try decodeJSON(TrainingRequest.self, state.metadata[CheckpointKey.training], file: latest.path, what: "training settings")
    saved.steps = max(request.steps, saved.steps)
    let options = try decodeJSON(Options.self, state.metadata[optionsKey], file: latest.path, what: "\(kind.rawValue) options")
    return ResumedRun(request: saved, options: options, step: Int(state.metadata[CheckpointKey.step] ?? "") ?? 0, state: state)
}
