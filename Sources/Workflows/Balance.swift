import Foundation
import Engine
import Imaging
import Generators
import Compositor
import Layers

// MARK: - Class balancing: real images plus exactly enough synthetic ones per class

public enum BalanceTarget: Equatable, CustomStringConvertible {
    /// Every class up to the largest class's count.
    case max
    /// Every class up to N images.
    case count(Int)
    /// Every class up to ⌈r · largest⌉.
    case ratio(Double)

    public init(parsing text: String) throws {
        if text == "max" { self = .max; return }
        if let n = Int(text), n > 0 { self = .count(n); return }
        if let r = Double(text), r > 0, r <= 1 { self = .ratio(r); return }
        throw MedSynthError("--target must be max, a positive count or a ratio in (0, 1], got '\(text)'")
    }

    public var description: String {
        switch self { case .max: return "max"; case .count(let n): return String(n); case .ratio(let r): return String(r) }
    }
}

/// How the missing images of a class are made.
public enum BalanceMethod: Equatable {
    /// `generate --class` with a conditional generator checkpoint.
    case model(String)
    /// Lesions composited into the healthy class's images (procedural lesions, or a folder of patches).
    case composite(lesions: URL?, healthyClass: String, lesionClass: String)
}

public struct BalanceRequest {
    public var data: URL
    public var out: URL
    public var method: BalanceMethod
    public var target: BalanceTarget = .max
    public var seed: UInt64 = 0
    public init(data: URL, out: URL, method: BalanceMethod) { self.data = data; self.out = out; self.method = method }
}

public struct BalancePlanRow: Equatable {
    public let className: String
    public let have: Int
    public let add: Int
    public let method: String
}

public struct BalanceManifestRecord: Codable, Equatable {
    public var file: String
    public var `class`: String
    public var source: String           // "real" or "synthetic"
    public var origin: String           // original path, or the model / lesion source
    public var seed: UInt64?
    public var model_id: String?
    public var sample_index: Int?
}

func isInside(_ child: URL, _ parent: URL) -> Bool {
    let c = child.standardizedFileURL.resolvingSymlinksInPath().path, p = parent.standardizedFileURL.resolvingSymlinksInPath().path
    return c == p || c.hasPrefix(p.hasSuffix("/") ? p : p + "/")
}

/// The per-class plan: have, will add, method. Refuses a target below a class's count, an output
/// inside the input (or the reverse), and a class the method cannot make.
public func planBalance(_ request: BalanceRequest) throws -> [BalancePlanRow] {
    if isInside(request.out, request.data) || isInside(request.data, request.out) {
        throw MedSynthError(file: request.out.path, "output folder must not be inside the input folder (or contain it)")
    }
    let dataset = try ImageFolderDataset(root: request.data, imageSize: 8, channels: 1)
    let counts = dataset.countsPerClass
    let largest = counts.max() ?? 0
    let wanted: Int
    switch request.target {
    case .max: wanted = largest
    case .count(let n): wanted = n
    case .ratio(let r): wanted = Int((r * Double(largest)).rounded(.up))
    }
    var knownClasses: [String] = []
    var methodName = ""
    switch request.method {
    case .model(let path):
        let file = try readSafetensors(at: try resolveModelFile(path))
        if let text = file.metadata[CheckpointKey.config], let data = text.data(using: .utf8),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            knownClasses = object["classNames"] as? [String] ?? []
        }
        methodName = "generate (\(file.metadata[CheckpointKey.kind] ?? "model"))"
    case .composite(_, let healthy, let lesion):
        guard dataset.classNames.contains(healthy) else {
            throw MedSynthError(file: request.data.path, "no healthy class '\(healthy)' to composite into (classes: \(dataset.classNames.joined(separator: ", ")))")
        }
        knownClasses = [lesion]
        methodName = "composite into '\(healthy)'"
    }
    return try dataset.classNames.enumerated().map { index, name in
        let have = counts[index]
        if case .count(let n) = request.target, n < have {
            throw MedSynthError(file: request.data.path, "target \(n) is below the \(have) images class '\(name)' already has")
        }
        let add = max(0, wanted - have)
        if add > 0 && !knownClasses.contains(name) {
            throw MedSynthError(file: request.data.path, "class '\(name)' needs \(add) image(s) but the method cannot make it (it makes: \(knownClasses.joined(separator: ", ")))")
        }
        return BalancePlanRow(className: name, have: have, add: add, method: add > 0 ? methodName : "-")
    }
}

/// Writes the balanced dataset: real images linked (or copied) under their own names, synthetic
/// ones added per the plan, and manifest.jsonl marking each file real or synthetic.
@discardableResult
public func runBalance(_ request: BalanceRequest, progress style: ProgressStyle = .human) throws -> [BalancePlanRow] {
    let plan = try planBalance(request)
    let dataset = try ImageFolderDataset(root: request.data, imageSize: 8, channels: 1)
    let fm = FileManager.default
    if fm.fileExists(atPath: request.out.path), let contents = try? fm.contentsOfDirectory(atPath: request.out.path), !contents.isEmpty {
        throw MedSynthError(file: request.out.path, "output folder exists and is not empty")
    }
    let staging = request.out.appendingPathComponent(".staging")
    try fm.createDirectory(at: staging, withIntermediateDirectories: true)
    var records: [BalanceManifestRecord] = []
    for (index, row) in plan.enumerated() {
        let classFolder = request.out.appendingPathComponent(row.className)
        try fm.createDirectory(at: classFolder, withIntermediateDirectories: true)
        for entry in dataset.entries where entry.classIndex == index && entry.frame == 0 {
            let destination = classFolder.appendingPathComponent(entry.url.lastPathComponent)
            do { try fm.linkItem(at: entry.url, to: destination) } catch { try fm.copyItem(at: entry.url, to: destination) }
            records.append(BalanceManifestRecord(file: "\(row.className)/\(entry.url.lastPathComponent)", class: row.className, source: "real", origin: entry.url.path))
        }
        guard row.add > 0 else { continue }
        let classSeed = splitMix64(request.seed &+ UInt64(index))
        switch request.method {
        case .model(let path):
            let folder = staging.appendingPathComponent(row.className)
            var g = GenerationRequest(model: path, count: row.add, out: folder)
            g.className = row.className
            g.seed = classSeed
            let report = try generateImages(g, progress: style)
            let modelID = try modelIdentifier(of: try resolveModelFile(path))
            _ = report
            for i in 0..<row.add {
                let name = "synthetic_\(sampleFileName(i))"
                try fm.moveItem(at: folder.appendingPathComponent(sampleFileName(i)), to: classFolder.appendingPathComponent(name))
                records.append(BalanceManifestRecord(file: "\(row.className)/\(name)", class: row.className, source: "synthetic",
                                                     origin: path, seed: classSeed, model_id: modelID, sample_index: i))
            }
        case .composite(let lesionFolder, let healthy, _):
            let healthyFolder = request.data.appendingPathComponent(healthy)
            let lesions: LesionSource = try lesionFolder.map { try FolderLesionSource(folder: $0) }
                ?? ProceduralLesionSource(seed: classSeed, count: 64, settings: ProceduralLesionSettings(size: 24, polarity: .mixed, bitDepth: 16))
            var made = 0, pass = 0
            while made < row.add {
                // Each pass composites every healthy image once, with its own seed.
                var options = CompositeOptions(backgrounds: healthyFolder, out: staging.appendingPathComponent("\(row.className)-pass\(pass)"))
                options.seed = splitMix64(classSeed &+ UInt64(pass))
                _ = try runComposite(options, lesions: lesions)
                let images = try fm.contentsOfDirectory(atPath: options.out.appendingPathComponent("images").path).sorted()
                for name in images where made < row.add {
                    let newName = "synthetic_p\(pass)_\(name)"
                    try fm.moveItem(at: options.out.appendingPathComponent("images/\(name)"), to: classFolder.appendingPathComponent(newName))
                    records.append(BalanceManifestRecord(file: "\(row.className)/\(newName)", class: row.className, source: "synthetic",
                                                         origin: "composite of \(healthy)/\(name) (\(lesionFolder?.path ?? "procedural lesions"))",
                                                         seed: options.seed))
                    made += 1
                }
                pass += 1
            }
        }
    }
    try? fm.removeItem(at: staging)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let lines = try records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
    try writeAtomically(Data(lines.utf8), to: request.out.appendingPathComponent("manifest.jsonl"))
    return plan
}
