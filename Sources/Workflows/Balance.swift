import Foundation
import Core
import Engine
import Imaging
import Generators
import Compositor
import Layers
import Evaluation

// MARK: - Class balancing: real images plus exactly enough synthetic ones per class
//
// The output is a ready-to-train class folder tree: every real image (hard-linked, or copied when
// linking fails, under its own relative path) plus `synthetic_NNNNNN.png` files, and manifest.jsonl
// with one line per file. The whole tree is built in a hidden sibling folder and renamed into place
// at the end, so a killed run never leaves a half-balanced dataset behind.
//
// Reproducibility: synthetic image j of class C depends only on (seed, C, j). The class seed is
// splitMix64(seed + FNV-1a(C)), so adding or removing another class does not change C's images,
// and the manifest's seed is the one `medsynth generate --class C --seed S` takes to remake them.

/// How many images each class should have after balancing.
public enum BalanceTarget: Equatable, CustomStringConvertible {
    /// Every class up to the largest class's count.
    case max
    /// Every class up to N images.
    case count(Int)
    /// Every class up to ⌈r · largest⌉, r in (0, 1].
    case ratio(Double)

    /// Parses `max`, a positive integer, or a fraction such as `0.5`.
    public init(parsing text: String) throws {
        if text == "max" { self = .max; return }
        if let n = Int(text), n > 0 { self = .count(n); return }
        if !text.contains("."), Int(text) != nil { throw MedSynthError("--target must be positive, got '\(text)'") }
        if let r = Double(text), r > 0, r <= 1 { self = .ratio(r); return }
        throw MedSynthError("--target must be max, a positive count or a ratio in (0, 1] such as 0.5, got '\(text)'")
    }

    public var description: String {
        switch self { case .max: return "max"; case .count(let n): return String(n); case .ratio(let r): return String(r) }
    }

    /// The per-class goal for a dataset whose largest class has `largest` images.
    func goal(largest: Int) -> Int {
        switch self {
        case .max: return largest
        case .count(let n): return n
        case .ratio(let r): return Int((r * Double(largest) - 1e-9).rounded(.up))
        }
    }
}

/// How the missing images of a class are made.
public enum BalanceMethod: Equatable {
    /// `generate --class` with conditional generators (GAN or diffusion): run folders or checkpoints.
    /// With several, each class's generated images are split between them in the order given
    /// (GANs trained with different seeds miss different modes; README, session 21).
    case models([String])
    /// Lesions composited into the healthy class's images to fill the lesion class; procedural
    /// lesions when `lesions` is nil, else a folder of patches (see `FolderLesionSource`).
    case composite(lesions: URL?, healthyClass: String, lesionClass: String)
    /// SMOTE in pixel space (Chawla et al. 2002): interpolants between a real image of the class and
    /// one of its `neighbours` nearest same-class images. Needs ≥ 2 images of one size per class.
    case smote(neighbours: Int)
    /// Random oversampling: copies of real images of the class, drawn with replacement.
    case oversample
    /// Classical augmentation: random copies, each under a random affine transform
    /// (`AffineAugmentation`: rotation, per-axis scale, shift).
    case augment
}

/// What `balance` is asked to do.
public struct BalanceRequest {
    /// Dataset folder, one subfolder per class.
    public var data: URL
    /// Output folder; must not exist or be empty, and must not be inside `data` (or contain it).
    public var out: URL
    public var method: BalanceMethod
    public var target: BalanceTarget = .max
    public var seed: UInt64 = 0
    /// With `.models`: diffusion sampler settings (ignored for GANs).
    public var sampling = SamplerSettings()
    /// With `.models`: PNG bit depth of generated images.
    public var bitDepth: Int = 8
    /// With `.models`: the filters generated samples must pass (memorisation always; confidence optional).
    public var filter = BalanceFilterSettings()
    /// With `.models`: this fraction of each class's added images are random copies of its real
    /// images (as `.oversample`), the rest generated. Measured on the digits (README): the copies
    /// keep the real images' exact appearance in the class and the generator adds the variety.
    public var realCopyFraction: Double = 0
    /// With `realCopyFraction`: the copies are augmented (as `.augment`) rather than plain.
    public var augmentCopies = false
    public init(data: URL, out: URL, method: BalanceMethod) { self.data = data; self.out = out; self.method = method }
}

/// One class of the plan.
public struct BalancePlanRow: Equatable {
    public let className: String
    /// Images the class has now (frames of multi-frame files count one each, as in training).
    public let have: Int
    /// Synthetic images to add.
    public let add: Int
    /// "generate (dcgan)", "composite into 'healthy'", or "-" when nothing is added.
    public let method: String
    /// Seed of this class's synthetic images (the `--seed` for `generate --class`).
    public let seed: UInt64
    /// With `.models`, after a run: candidates generated and rejected by the filters.
    public var filtered = BalanceFilterCounts()
}

/// One line of the balanced folder's manifest.jsonl.
public struct BalanceManifestRecord: Codable, Equatable {
    /// Path relative to the output folder.
    public var file: String
    public var `class`: String
    /// "real" or "synthetic".
    public var source: String
    /// Real: the original file's path. Synthetic: "generate", "composite", "smote", "oversample" or "augment".
    /// Rejected (kept under .rejected/, not part of the dataset): "generate".
    public var origin: String
    public var seed: UInt64?
    /// Index j of the synthetic image within its class (its random stream).
    public var sample_index: Int?
    /// Generated images: the model path, its content id and kind.
    public var model: String?
    public var model_id: String?
    public var model_kind: String?
    /// Composited images: the healthy scan used, the lesion patch, and the lesion mask file.
    public var background: String?
    public var lesion_source: String?
    public var mask: String?
    /// SMOTE: the real image and its neighbour (output-relative names); oversampling: the copied image.
    public var parents: [String]?
    /// SMOTE: x = parents[0] + lambda · (parents[1] − parents[0]), and the k of the neighbour search.
    public var lambda: Double?
    public var neighbours: Int?
    /// Augmented copies: the transform applied to parents[0] (`affineTransformed` remakes the file).
    public var augmentation: AffineAugmentation?
    /// Source "rejected": why ("memorised" or "unsure"), the nearest real image and its feature
    /// distance against the threshold, the pixel RMS, and the classifier's probability for the class.
    public var rejected_because: String?
    public var nearest_real: String?
    public var feature_distance: Double?
    public var threshold: Double?
    public var pixel_rms: Double?
    public var confidence: Double?
}

/// True when `child` is `parent` or lies below it (symbolic links resolved).
func isInside(_ child: URL, _ parent: URL) -> Bool {
    let c = child.standardizedFileURL.resolvingSymlinksInPath().path, p = parent.standardizedFileURL.resolvingSymlinksInPath().path
    return c == p || c.hasPrefix(p.hasSuffix("/") ? p : p + "/")
}

/// Seed of class `name`'s synthetic images under the run seed `seed`.
public func classSeed(_ seed: UInt64, className name: String) -> UInt64 { splitMix64(seed &+ FNV1a64.hash(name)) }

/// File name of synthetic image j of a class.
public func syntheticFileName(_ index: Int) -> String { String(format: "synthetic_%06d.png", index) }
/// The file name of copy j of a real image when `--real-copies` mixes copies into generated images.
public func realCopyFileName(_ index: Int) -> String { String(format: "copy_%06d.png", index) }

/// How many of `add` images are real copies at `fraction` (the rest are generated).
func realCopyCount(add: Int, fraction: Double) -> Int { min(add, Int((Double(add) * fraction).rounded())) }

// MARK: - Plan

/// Everything the plan found: the rows plus what running it needs.
struct BalanceScan {
    var rows: [BalancePlanRow]
    var dataset: ImageFolderListing
    /// The models resolved to their checkpoint files, with their kinds (`.models` only).
    var models: [ResolvedModel] = []
}

struct ResolvedModel {
    /// As the user gave it (recorded in the manifest).
    var path: String
    var file: URL
    var kind: String
}

func scanBalance(_ request: BalanceRequest) throws -> BalanceScan {
    let fm = FileManager.default
    var isFolder: ObjCBool = false
    guard fm.fileExists(atPath: request.data.path, isDirectory: &isFolder), isFolder.boolValue else {
        throw MedSynthError(file: request.data.path, "no such dataset folder")
    }
    if isInside(request.out, request.data) || isInside(request.data, request.out) {
        throw MedSynthError(file: request.out.path, "output folder must not be inside the input folder \(request.data.path) (nor contain it)")
    }
    // fileExists follows symbolic links: a linked dataset folder or class folder counts like a real one.
    let subfolders = ((try? fm.contentsOfDirectory(atPath: request.data.path)) ?? []).filter { name in
        var isClassFolder: ObjCBool = false
        return !name.hasPrefix(".") && fm.fileExists(atPath: request.data.appendingPathComponent(name).path, isDirectory: &isClassFolder)
            && isClassFolder.boolValue
    }
    if subfolders.isEmpty {
        throw MedSynthError(file: request.data.path, "no class subfolders: balance needs one subfolder per class (e.g. healthy/ and lesion/)")
    }
    // Listed, not decoded: a volume's slices are read when (and if) they are needed.
    let dataset = try ImageFolderListing(root: request.data)
    var names = dataset.classNames
    var counts = dataset.countsPerClass
    let makes: (String) -> Bool
    let methodName: String
    var models: [ResolvedModel] = []
    let cannot: (String) -> String
    switch request.method {
    case .models(let paths):
        guard !paths.isEmpty else { throw MedSynthError("balancing by model needs at least one --model") }
        var knownPerModel: [[String]] = []
        for path in paths {
            let url = try resolveModelFile(path)
            let file = try readSafetensors(at: url)
            guard let kind = file.metadata[CheckpointKey.kind], ModelKind(rawValue: kind) != nil else {
                throw MedSynthError(file: url.path, "not a medsynth generator checkpoint (no '\(CheckpointKey.kind)' metadata)")
            }
            var known: [String] = []
            if let text = file.metadata[CheckpointKey.config],
               let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
                known = object["classNames"] as? [String] ?? []
            }
            models.append(ResolvedModel(path: path, file: url, kind: kind))
            knownPerModel.append(known)
        }
        guard (0...1).contains(request.realCopyFraction) else {
            throw MedSynthError("--real-copies must be a fraction in [0, 1], got \(request.realCopyFraction)")
        }
        let available = Dictionary(zip(names, counts), uniquingKeysWith: +)
        let copies = request.realCopyFraction
        makes = { name in knownPerModel.allSatisfy { $0.contains(name) } && (copies == 0 || available[name, default: 0] >= 1) }
        cannot = { name in
            guard let m = knownPerModel.firstIndex(where: { !$0.contains(name) }) else {
                return "--real-copies copies real images of the class and it has none"
            }
            let known = knownPerModel[m], url = models[m].file
            return known.isEmpty
                ? "the model \(url.path) is unconditional and cannot be asked for class '\(name)'"
                : "the model \(url.path) cannot generate class '\(name)' (it knows: \(known.joined(separator: ", ")))" }
        var kinds: [String] = []
        for model in models where !kinds.contains(model.kind) { kinds.append(model.kind) }
        let generator = models.count == 1 ? kinds[0] : "\(models.count) models: " + kinds.joined(separator: ", ")
        methodName = copies > 0 ? String(format: "generate (%@) + %.0f %% %@copies of real images", generator, 100 * copies,
                                         request.augmentCopies ? "augmented " : "") : "generate (\(generator))"
    case .composite(let lesions, let healthy, let lesion):
        guard let h = names.firstIndex(of: healthy), counts[h] > 0 else {
            throw MedSynthError(file: request.data.path, "no healthy class '\(healthy)' with images to composite into (classes: \(names.joined(separator: ", ")))")
        }
        guard healthy != lesion else { throw MedSynthError("--healthy-class and --lesion-class must differ, both are '\(healthy)'") }
        if let lesions, isInside(request.out, lesions) {
            throw MedSynthError(file: request.out.path, "output folder must not be inside the lesion folder \(lesions.path)")
        }
        // The lesion class may not exist yet: it is made entirely of composites then.
        if !names.contains(lesion) {
            let at = names.firstIndex { $0 > lesion } ?? names.count
            names.insert(lesion, at: at)
            counts.insert(0, at: at)
        }
        makes = { $0 == lesion }
        cannot = { "compositing only fills the lesion class '\(lesion)'; class '\($0)' would need images too (lower --target, or use --model)" }
        methodName = "composite into '\(healthy)'"
    case .smote(let k):
        guard k >= 1 else { throw MedSynthError("--neighbours must be at least 1, got \(k)") }
        let available = Dictionary(zip(names, counts), uniquingKeysWith: +)
        makes = { available[$0, default: 0] >= 2 }
        cannot = { "SMOTE interpolates between two real images of the class and it has \(available[$0, default: 0])" }
        methodName = "smote (k = \(k), pixel space)"
    case .oversample:
        let available = Dictionary(zip(names, counts), uniquingKeysWith: +)
        makes = { available[$0, default: 0] >= 1 }
        cannot = { _ in "random oversampling copies real images of the class and it has none" }
        methodName = "oversample (random copies)"
    case .augment:
        let available = Dictionary(zip(names, counts), uniquingKeysWith: +)
        makes = { available[$0, default: 0] >= 1 }
        cannot = { _ in "augmentation transforms real images of the class and it has none" }
        methodName = "augment (random affine copies)"
    }
    let goal = request.target.goal(largest: counts.max() ?? 0)
    var rows: [BalancePlanRow] = []
    for (name, have) in zip(names, counts) {
        if case .count(let n) = request.target, n < have {
            throw MedSynthError(file: request.data.appendingPathComponent(name).path,
                                "target \(n) is below the \(have) images this class already has (balancing never removes real images)")
        }
        let add = Swift.max(0, goal - have)
        if add > 0 && !makes(name) {
            throw MedSynthError(file: request.data.appendingPathComponent(name).path, "needs \(add) more image(s), but " + cannot(name))
        }
        rows.append(BalancePlanRow(className: name, have: have, add: add, method: add > 0 ? methodName : "-",
                                   seed: classSeed(request.seed, className: name)))
    }
    return BalanceScan(rows: rows, dataset: dataset, models: models)
}

/// The per-class plan (have, will add, method), written nowhere. Refuses a target below a
/// class's count, an output inside the input (or the reverse), and a class the method cannot make.
public func planBalance(_ request: BalanceRequest) throws -> [BalancePlanRow] {
    try scanBalance(request).rows
}

// MARK: - Run

/// Writes the balanced dataset to `request.out`: real images linked (or copied) under their own
/// relative paths, the synthetic ones of the plan, and manifest.jsonl marking each file real or
/// synthetic with its origin, seed and model. Composited images also get their lesion masks under
/// `.masks/<class>/` (hidden, so the folder still reads as a plain class-folder dataset).
@discardableResult
public func runBalance(_ request: BalanceRequest, progress style: ProgressStyle = .human) throws -> [BalancePlanRow] {
    let scan = try scanBalance(request)
    let fm = FileManager.default
    var isFolder: ObjCBool = false
    if fm.fileExists(atPath: request.out.path, isDirectory: &isFolder) {
        guard isFolder.boolValue else { throw MedSynthError(file: request.out.path, "output path is a file") }
        let contents = (try? fm.contentsOfDirectory(atPath: request.out.path)) ?? []
        guard contents.isEmpty else { throw MedSynthError(file: request.out.path, "output folder exists and is not empty") }
    }
    let parent = request.out.standardizedFileURL.deletingLastPathComponent()
    do { try fm.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
        throw MedSynthError(file: parent.path, "cannot create the output's parent folder (\(error.localizedDescription))")
    }
    // Built beside the output and renamed at the end; a leftover from a killed run is ours to remove.
    let staging = parent.appendingPathComponent(".\(request.out.lastPathComponent).partial")
    try? fm.removeItem(at: staging)
    do { try fm.createDirectory(at: staging, withIntermediateDirectories: true) } catch {
        throw MedSynthError(file: staging.path, "cannot create the staging folder (\(error.localizedDescription))")
    }
    var rows = scan.rows
    do {
        let manifest = try ManifestLineWriter(staging.appendingPathComponent("manifest.jsonl"))
        // Built once, on the first class that needs generated images.
        var filter: SampleFilter?
        for (r, row) in scan.rows.enumerated() {
            try manifest.write(try linkRealImages(of: row.className, dataset: scan.dataset, into: staging))
            guard row.add > 0 else { continue }
            switch request.method {
            case .models:
                let copies = realCopyCount(add: row.add, fraction: request.realCopyFraction)
                if copies < row.add {
                    if filter == nil { filter = try SampleFilter(data: request.data, settings: request.filter, seed: request.seed, style: style) }
                    // Model m makes the next share of the class's generated images, from its own seed.
                    var firstIndex = 0
                    for (m, share) in modelShares(row.add - copies, models: scan.models.count).enumerated() where share > 0 {
                        let model = scan.models[m]
                        let part = BalancePlanRow(className: row.className, have: row.have, add: share, method: row.method,
                                                  seed: modelSeed(row.seed, model: m))
                        let (made, counts) = try generateClass(part, model: model, firstIndex: firstIndex,
                                                               rejectedPrefix: scan.models.count > 1 ? "model\(m + 1)-" : "",
                                                               request: request, filter: filter!, into: staging, style: style)
                        try manifest.write(made)
                        rows[r].filtered.generated += counts.generated
                        rows[r].filtered.rejectedMemorised += counts.rejectedMemorised
                        rows[r].filtered.rejectedUnsure += counts.rejectedUnsure
                        firstIndex += share
                    }
                }
                if copies > 0 {
                    let copied = BalancePlanRow(className: row.className, have: row.have, add: copies, method: row.method, seed: row.seed)
                    try oversampleClass(copied, kind: request.augmentCopies ? .augmentedCopies : .copies, dataset: scan.dataset, into: staging, style: style,
                                        fileName: realCopyFileName, emit: manifest.write)
                }
            case .composite(let lesions, let healthy, _):
                try manifest.write(try compositeClass(row, healthy: healthy, lesions: lesions, dataset: scan.dataset,
                                                      into: staging, style: style))
            case .smote(let k):
                try oversampleClass(row, kind: .smote(neighbours: k), dataset: scan.dataset, into: staging, style: style, emit: manifest.write)
            case .oversample:
                try oversampleClass(row, kind: .copies, dataset: scan.dataset, into: staging, style: style, emit: manifest.write)
            case .augment:
                try oversampleClass(row, kind: .augmentedCopies, dataset: scan.dataset, into: staging, style: style, emit: manifest.write)
            }
        }
        try manifest.close()
        // rename(2) replaces an empty folder and fails on a non-empty one, which is what we want.
        if rename(staging.path, request.out.path) != 0 {
            throw MedSynthError(file: request.out.path, "cannot move the finished dataset into place: \(String(cString: strerror(errno)))")
        }
    } catch {
        try? fm.removeItem(at: staging)
        throw error
    }
    return rows
}

/// manifest.jsonl written a line per record as the run goes, so memory does not grow with the
/// number of synthetic images asked for. It is written inside the staging folder, which is renamed
/// into place whole at the end: a killed run leaves no manifest behind.
final class ManifestLineWriter {
    private let url: URL
    private let handle: FileHandle
    private let encoder = JSONEncoder()

    init(_ url: URL) throws {
        self.url = url
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let handle = FileHandle(forWritingAtPath: url.path) else {
            throw MedSynthError(file: url.path, "cannot create the manifest")
        }
        self.handle = handle
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    func write(_ records: [BalanceManifestRecord]) throws {
        var lines = Data()
        for record in records { lines += try encoder.encode(record); lines.append(0x0A) }
        do { try handle.write(contentsOf: lines) } catch {
            throw MedSynthError(file: url.path, "cannot write the manifest (\(error.localizedDescription))")
        }
    }

    func close() throws {
        do { try handle.close() } catch {
            throw MedSynthError(file: url.path, "cannot write the manifest (\(error.localizedDescription))")
        }
    }
}

/// Hard-links (or copies) every real image file of a class, keeping its path below the class folder.
func linkRealImages(of className: String, dataset: ImageFolderListing, into out: URL) throws -> [BalanceManifestRecord] {
    let fm = FileManager.default
    guard let index = dataset.classNames.firstIndex(of: className) else { return [] }
    let classRoot = dataset.root.appendingPathComponent(className).standardizedFileURL.path + "/"
    var records: [BalanceManifestRecord] = []
    var seen = Set<String>()
    for entry in dataset.entries where entry.classIndex == index && seen.insert(entry.url.path).inserted {
        let full = entry.url.standardizedFileURL.path
        let relative = full.hasPrefix(classRoot) ? String(full.dropFirst(classRoot.count)) : entry.url.lastPathComponent
        let destination = out.appendingPathComponent(className).appendingPathComponent(relative)
        try fm.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
        do { try fm.linkItem(at: entry.url, to: destination) } catch {
            do { try fm.copyItem(at: entry.url, to: destination) } catch {
                throw MedSynthError(file: entry.url.path, "cannot link or copy into \(destination.path) (\(error.localizedDescription))")
            }
        }
        records.append(BalanceManifestRecord(file: "\(className)/\(relative)", class: className, source: "real", origin: full))
    }
    return records
}

/// Refuses to overwrite a real image that happens to carry a synthetic file name.
func checkFree(_ url: URL) throws {
    if FileManager.default.fileExists(atPath: url.path) {
        throw MedSynthError(file: url.path, "a real image already has this synthetic file name; rename it in the input")
    }
}

/// How `count` generated images of a class are split between `models` generators: as evenly as
/// possible, the first ones taking one more.
func modelShares(_ count: Int, models: Int) -> [Int] {
    (0..<models).map { count / models + ($0 < count % models ? 1 : 0) }
}

/// Seed of model m's images of a class: the class seed for the first model (so one model gives
/// the images it always gave), a seed derived from it for the others (so the same model given
/// twice does not repeat its images).
func modelSeed(_ classSeed: UInt64, model m: Int) -> UInt64 { m == 0 ? classSeed : splitMix64(classSeed &+ UInt64(m)) }

/// Synthetic images of one class from a conditional generator. Candidate i is generator sample i
/// of `row.seed` (stream i: `generate --class C --seed S` remakes it); candidates that fail the
/// filters are moved to `.rejected/<class>/` (named `rejectedPrefix` + sample name) and more are
/// generated (indices continue) until the class has `row.add` accepted images, or
/// `maxCandidatesPerImage · add` were tried. Accepted image j is written as synthetic file
/// `firstIndex + j` and keeps its generator index in `sample_index`.
func generateClass(_ row: BalancePlanRow, model: ResolvedModel, firstIndex: Int = 0, rejectedPrefix: String = "", request: BalanceRequest,
                   filter: SampleFilter, into out: URL, style: ProgressStyle) throws -> (records: [BalanceManifestRecord], counts: BalanceFilterCounts) {
    let fm = FileManager.default
    let path = model.path, file = model.file, kind = model.kind
    let scratch = out.appendingPathComponent(".generate-\(row.className)")
    let modelID = try modelIdentifier(of: file)
    let classFolder = out.appendingPathComponent(row.className)
    let rejectedFolder = out.appendingPathComponent(".rejected").appendingPathComponent(row.className)
    try fm.createDirectory(at: classFolder, withIntermediateDirectories: true)
    var records: [BalanceManifestRecord] = [], rejected: [BalanceManifestRecord] = []
    var counts = BalanceFilterCounts()
    let limit = max(row.add, row.add * max(1, request.filter.maxCandidatesPerImage))
    var accepted = 0, generated = 0
    while accepted < row.add {
        guard generated < limit else {
            throw MedSynthError(file: path, "only \(accepted) of \(row.add) '\(row.className)' samples passed the filters after \(generated) candidates "
                                + "(\(counts.rejectedMemorised) memorised copies of real images, \(counts.rejectedUnsure) below the classifier confidence); "
                                + "the generator memorises or draws off-class images: train it differently, or lower --min-confidence")
        }
        // The missing images plus a margin for the ones the filters are rejecting at this rate.
        let missing = row.add - accepted
        let rate = generated == 0 ? 1.0 : Double(accepted) / Double(generated)
        let next = min(limit, generated + max(missing, Int((Double(missing) / max(rate, 0.25)).rounded(.up))))
        var g = GenerationRequest(model: file.path, count: next, out: scratch)
        g.className = row.className
        g.seed = row.seed
        g.bitDepth = request.bitDepth
        g.sampling = request.sampling
        g.resume = true     // keeps the candidates already made
        try generateImages(g, progress: style)
        let candidates = try ImageSet(root: scratch)
        let position = Dictionary(candidates.names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let verdicts = filter.judge(candidates, className: row.className)
        for i in generated..<next {
            guard let p = position[sampleFileName(i)] else {
                throw MedSynthError(file: scratch.appendingPathComponent(sampleFileName(i)).path, "generated sample is missing")
            }
            let source = scratch.appendingPathComponent(sampleFileName(i))
            if accepted < row.add, verdicts[p] == nil {
                let name = syntheticFileName(firstIndex + accepted)
                let destination = classFolder.appendingPathComponent(name)
                try checkFree(destination)
                try fm.moveItem(at: source, to: destination)
                records.append(BalanceManifestRecord(file: "\(row.className)/\(name)", class: row.className, source: "synthetic",
                                                     origin: "generate", seed: row.seed, sample_index: i,
                                                     model: path, model_id: modelID, model_kind: kind))
                accepted += 1
            } else if let verdict = verdicts[p] {
                try fm.createDirectory(at: rejectedFolder, withIntermediateDirectories: true)
                let name = rejectedPrefix + sampleFileName(i)
                try fm.moveItem(at: source, to: rejectedFolder.appendingPathComponent(name))
                var record = BalanceManifestRecord(file: ".rejected/\(row.className)/\(name)", class: row.className, source: "rejected",
                                                   origin: "generate", seed: row.seed, sample_index: i,
                                                   model: path, model_id: modelID, model_kind: kind)
                switch verdict {
                case let .memorised(nearest, distance, threshold, pixel):
                    record.rejected_because = "memorised"
                    record.nearest_real = nearest; record.feature_distance = distance; record.threshold = threshold; record.pixel_rms = pixel
                    counts.rejectedMemorised += 1
                case let .unsure(confidence, _):
                    record.rejected_because = "unsure"
                    record.confidence = confidence
                    counts.rejectedUnsure += 1
                }
                rejected.append(record)
            }
            // (An accepted candidate beyond the count needed is simply not used.)
        }
        generated = next
    }
    counts.generated = generated
    try? fm.removeItem(at: scratch)
    return (records + rejected, counts)
}

/// Synthetic images of the lesion class: image j is healthy image j mod H with one lesion placed
/// from stream j of the class seed (exactly as `runComposite` would place it for scan index j).
func compositeClass(_ row: BalancePlanRow, healthy: String, lesions folder: URL?, dataset: ImageFolderListing,
                    into out: URL, style: ProgressStyle) throws -> [BalanceManifestRecord] {
    let fm = FileManager.default
    // One image at a time, read back from its file (which stays open): a volume can be 1,024 slices of 512².
    let backgrounds = ClassImageReader(classImageList(healthy, dataset: dataset))
    let healthyEntries = backgrounds.list.entries
    let first = try backgrounds.image(0)
    let lesions: LesionSource
    if let folder {
        lesions = try FolderLesionSource(folder: folder)
    } else {
        // Procedural lesions sized to the scans: diameters from a few pixels to about a quarter of the side.
        let side = Swift.max(9, Swift.min(first.width, first.height) / 3)
        lesions = ProceduralLesionSource(seed: row.seed, count: 256,
                                         settings: ProceduralLesionSettings(size: side, polarity: .mixed, bitDepth: first.bitDepth))
    }
    var options = CompositeOptions(backgrounds: dataset.root.appendingPathComponent(healthy), out: out)
    options.seed = row.seed
    options.margin = Float(Swift.max(1, Swift.min(first.width, first.height) / 32))
    let classFolder = out.appendingPathComponent(row.className)
    let maskFolder = out.appendingPathComponent(".masks").appendingPathComponent(row.className)
    try fm.createDirectory(at: classFolder, withIntermediateDirectories: true)
    try fm.createDirectory(at: maskFolder, withIntermediateDirectories: true)
    let reporter = ProgressReporter(label: "balance \(row.className)", total: row.add, unit: "image", style: style)
    var records: [BalanceManifestRecord] = []
    // Scans with no room for a lesion are passed over (image j goes to the next scan that has room,
    // with j's own lesion draw), as `composite` skips them; scans with an empty allowed region are not read again.
    var emptyRegion = Set<Int>(), passedOver = Set<Int>()
    func displayName(_ entry: DatasetEntry) -> String { entry.url.lastPathComponent + (entry.frame > 0 ? "#\(entry.frame)" : "") }
    for j in 0..<row.add {
        var chosen: (result: CompositeResult, scan: Int)? = nil
        for offset in 0..<healthyEntries.count {
            let index = (j + offset) % healthyEntries.count
            if emptyRegion.contains(index) { continue }
            let entry = healthyEntries[index], name = displayName(entry)
            let scan = try backgrounds.image(index)
            let region = automaticRegion(scan, margin: options.margin)
            if region.count == 0 { emptyRegion.insert(index); passedOver.insert(index); continue }
            do {
                switch try compositeOrNoRoom(background: scan, name: name, index: j, region: region, lesions: lesions, options: options) {
                case .success(let result): chosen = (result, index)
                case .failure: passedOver.insert(index)
                }
            } catch let error as MedSynthError {
                throw error.message.hasPrefix(name + ":") ? MedSynthError(entry.url.path + error.message.dropFirst(name.count)) : error
            }
            if chosen != nil { break }
        }
        guard let (result, scanIndex) = chosen else {
            throw MedSynthError(file: dataset.root.appendingPathComponent(healthy).path,
                                "no image of class '\(healthy)' has room for composited lesion \(j + 1) inside its automatic region (\(emptyRegion.count) of \(healthyEntries.count) have an empty region)")
        }
        let entry = healthyEntries[scanIndex]
        let destination = classFolder.appendingPathComponent(syntheticFileName(j))
        try checkFree(destination)
        try writePNG(result.image, to: destination)
        try writePNG(result.labels, to: maskFolder.appendingPathComponent(syntheticFileName(j)))
        records.append(BalanceManifestRecord(file: "\(row.className)/\(syntheticFileName(j))", class: row.className, source: "synthetic",
                                             origin: "composite", seed: row.seed, sample_index: j,
                                             background: entry.url.standardizedFileURL.path + (entry.frame > 0 ? "#\(entry.frame)" : ""),
                                             lesion_source: result.records.first?.lesionSource ?? (folder?.path ?? "procedural"),
                                             mask: ".masks/\(row.className)/\(syntheticFileName(j))"))
        reporter.update(done: j + 1, items: j + 1)
    }
    if !passedOver.isEmpty {
        let names = passedOver.sorted().prefix(5).map { displayName(healthyEntries[$0]) }.joined(separator: ", ")
        reporter.note("\(passedOver.count) '\(healthy)' image(s) had no room for a lesion and were passed over (\(names)\(passedOver.count > 5 ? ", …" : ""))")
    }
    return records
}
