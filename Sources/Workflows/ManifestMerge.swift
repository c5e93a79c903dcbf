import Foundation
import Engine

// MARK: - Joining the manifests of sharded runs

public struct MergeReport {
    public let lines: Int
    public let shards: Int
    public let manifest: URL
}

/// Joins DIR/manifest.shard-K-of-N.jsonl into DIR/manifest.jsonl, ordered by item, after checking
/// that all N shard files are there and no item is missing or duplicated. Items are
/// `sample_index` (generate) or (`index`, `instance`) (composite). `expect` is the number of
/// samples or images of the whole run when known.
@discardableResult
public func mergeManifests(in folder: URL, expect: Int? = nil) throws -> MergeReport {
    let fm = FileManager.default
    let names = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
    let shardFiles = names.filter { $0.hasPrefix("manifest.shard-") && $0.hasSuffix(".jsonl") }.sorted()
    guard !shardFiles.isEmpty else { throw MedSynthError(file: folder.path, "no manifest.shard-K-of-N.jsonl files to merge") }
    var total: Int? = nil
    var seenShards = Set<Int>()
    for name in shardFiles {
        let parts = name.dropFirst("manifest.shard-".count).dropLast(".jsonl".count).split(separator: "-")
        guard parts.count == 3, let k = Int(parts[0]), parts[1] == "of", let n = Int(parts[2]) else {
            throw MedSynthError(file: folder.appendingPathComponent(name).path, "not a shard manifest name (manifest.shard-K-of-N.jsonl)")
        }
        if let total, total != n { throw MedSynthError(file: folder.path, "shard manifests from different layouts (of \(total) and of \(n))") }
        total = n
        seenShards.insert(k)
    }
    let missingShards = (0..<total!).filter { !seenShards.contains($0) }
    guard missingShards.isEmpty else {
        throw MedSynthError(file: folder.path, "missing shard manifest(s) \(missingShards.map { "\($0)/\(total!)" }.joined(separator: ", "))")
    }
    var items: [(key: [Int], line: String)] = []
    for name in shardFiles {
        let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
        for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw MedSynthError(file: folder.appendingPathComponent(name).path, "a line is not a JSON object")
            }
            let key: [Int]
            if let i = object["sample_index"] as? Int { key = [i] }
            else if let i = object["index"] as? Int { key = [i, object["instance"] as? Int ?? 0] }
            else { throw MedSynthError(file: folder.appendingPathComponent(name).path, "a line has neither sample_index nor index") }
            items.append((key, String(line)))
        }
    }
    items.sort { $0.key.lexicographicallyPrecedes($1.key) }
    var duplicates: [String] = []
    for (a, b) in zip(items, items.dropFirst()) where a.key == b.key { duplicates.append(a.key.map(String.init).joined(separator: ":")) }
    guard duplicates.isEmpty else { throw MedSynthError(file: folder.path, "duplicated item(s) \(duplicates.prefix(10).joined(separator: ", "))") }
    let present = Set(items.map { $0.key[0] })
    let upper = expect ?? ((present.max() ?? -1) + 1)
    let missing = (0..<upper).filter { !present.contains($0) }
    guard missing.isEmpty else {
        throw MedSynthError(file: folder.path, "missing item(s) \(missing.prefix(10).map(String.init).joined(separator: ", "))\(missing.count > 10 ? " and \(missing.count - 10) more" : "")")
    }
    let out = folder.appendingPathComponent("manifest.jsonl")
    try writeAtomically(Data((items.map(\.line).joined(separator: "\n") + "\n").utf8), to: out)
    return MergeReport(lines: items.count, shards: total!, manifest: out)
}
