import Foundation
import Core
import Engine

// MARK: - Joining the manifests of sharded runs
//
// `generate --shard K/N` writes manifest.shard-K-of-N.jsonl with one line per sample
// (`sample_index`); `composite --shard K/N` writes one line per placed lesion (`index` of the scan,
// `instance` 1, 2, … within it). A merge is only right when all N shards are there, every item
// 0..<count appears exactly once, the files the lines name exist, and every shard ran with the same
// seed and model — otherwise the merged folder would not equal one unsharded run.

/// What a merge found and wrote.
public struct MergeReport {
    /// Manifest lines written (samples, or lesions for a composite run).
    public let lines: Int
    /// Distinct items: samples (generate) or scans (composite).
    public let items: Int
    public let shards: Int
    public let manifest: URL
}

/// One shard manifest line: its item key, its text (written to the merged manifest as it is) and what it says.
struct ManifestItem {
    /// [sample_index] or [index, instance].
    var key: [Int]
    var line: String
    var shard: Int
    var fields: ShardManifestLine
}

/// The largest sample, scan or instance index a manifest line may carry (2^48).
let maxManifestIndex = 1 << 48

/// Parses "manifest.shard-K-of-N.jsonl" into (K, N).
func parseShardManifestName(_ name: String) -> (index: Int, count: Int)? {
    guard name.hasPrefix("manifest.shard-"), name.hasSuffix(".jsonl") else { return nil }
    let parts = name.dropFirst("manifest.shard-".count).dropLast(".jsonl".count).split(separator: "-")
    guard parts.count == 3, let k = Int(parts[0]), parts[1] == "of", let n = Int(parts[2]), n >= 1, k >= 0, k < n else { return nil }
    return (k, n)
}

/// Joins FOLDER/manifest.shard-K-of-N.jsonl into FOLDER/manifest.jsonl (atomically), ordered by
/// item, after checking that all N shard files are there, no item is missing or duplicated, every
/// file a line names exists, and all shards agree on seed and model. Items are `sample_index`
/// (generate) or (`index`, `instance`) (composite). `expect` is the number of samples or scans of
/// the whole run when known; without it the items must run from 0 to the largest one seen.
@discardableResult
public func mergeManifests(in folder: URL, expect: Int? = nil) throws -> MergeReport {
    let fm = FileManager.default
    var isFolder: ObjCBool = false
    guard fm.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
        throw MedSynthError(file: folder.path, "no such folder")
    }
    if let expect, expect < 1 || expect > maxManifestIndex { throw MedSynthError("--expect must be 1...\(maxManifestIndex), got \(expect)") }
    let names = try fm.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("manifest.shard-") && $0.hasSuffix(".jsonl") }
    guard !names.isEmpty else { throw MedSynthError(file: folder.path, "no manifest.shard-K-of-N.jsonl files to merge") }

    // 1. The shard files: one layout, all N present.
    var layout: Int? = nil
    var shardFiles: [(index: Int, name: String)] = []
    for name in names {
        guard let (k, n) = parseShardManifestName(name) else {
            throw MedSynthError(file: folder.appendingPathComponent(name).path, "not a shard manifest name (manifest.shard-K-of-N.jsonl with 0 <= K < N)")
        }
        if let layout, layout != n {
            throw MedSynthError(file: folder.path, "shard manifests of different layouts (of \(layout) and of \(n)); remove the stale ones")
        }
        layout = n
        shardFiles.append((k, name))
    }
    let total = layout!
    shardFiles.sort { $0.index < $1.index }
    let present = Set(shardFiles.map(\.index))
    let missingShards = (0..<total).filter { !present.contains($0) }
    guard missingShards.isEmpty else {
        throw MedSynthError(file: folder.path, "missing shard manifest(s) \(missingShards.map { "\($0)/\(total)" }.joined(separator: ", ")) — that shard has not finished (rerun it with --resume)")
    }

    // 2. Their lines.
    var items: [ManifestItem] = []
    var kind: String? = nil
    for (k, name) in shardFiles {
        let path = folder.appendingPathComponent(name).path
        guard let data = fm.contents(atPath: path) else { throw MedSynthError(file: path, "cannot read") }
        for (number, (text, line)) in try decodeJSONLines(data, as: ShardManifestLine.self, file: path).enumerated() {
            guard let key = line.key else {
                throw MedSynthError(file: path, "line \(number + 1) has neither sample_index (generate) nor index and instance (composite)")
            }
            let item = ManifestItem(key: key, line: text, shard: k, fields: line)
            let itemKind = key.count == 1 ? "generate" : "composite"
            if let kind, kind != itemKind { throw MedSynthError(file: path, "mixes generate and composite lines; merge each run in its own folder") }
            kind = itemKind
            // Indices come from files: bounded far above any real run so sums and counts cannot overflow.
            guard key.allSatisfy({ $0 <= maxManifestIndex }) else {
                throw MedSynthError(file: path, "line \(number + 1) has an index above \(maxManifestIndex)")
            }
            guard key[0] >= 0, key.count == 1 || key[1] >= 1 || line.skipped != nil else {
                throw MedSynthError(file: path, "line \(number + 1) has a negative index or an instance below 1")
            }
            if key[0] % total != k {
                throw MedSynthError(file: path, "item \(key[0]) does not belong to shard \(k)/\(total) (a shard does items K, K+N, …)")
            }
            if let first = items.first {
                if first.fields.seed != line.seed {
                    throw MedSynthError(file: folder.path, "shards disagree on seed: \(first.fields.seed.map(String.init) ?? "-") in shard \(first.shard)/\(total), \(line.seed.map(String.init) ?? "-") in shard \(k)/\(total); they were not one run")
                }
                if first.fields.model_id != line.model_id {
                    throw MedSynthError(file: folder.path, "shards disagree on model_id: \(first.fields.model_id ?? "-") in shard \(first.shard)/\(total), \(line.model_id ?? "-") in shard \(k)/\(total); they were not one run")
                }
            }
            items.append(item)
        }
    }

    // 3. Each item exactly once, none missing, every named file there.
    items.sort { $0.key.lexicographicallyPrecedes($1.key) }
    var duplicates: [String] = []
    for (a, b) in zip(items, items.dropFirst()) where a.key == b.key {
        let label = a.key.map(String.init).joined(separator: " instance ")
        if duplicates.last != label { duplicates.append(label) }
    }
    guard duplicates.isEmpty else {
        throw MedSynthError(file: folder.path, "duplicated item(s) \(listed(duplicates)) — more than one line for the same \(kind == "generate" ? "sample" : "lesion")")
    }
    let indices = Set(items.map { $0.key[0] })
    let upper = expect ?? ((indices.max() ?? -1) + 1)
    let (firstMissing, missingCount) = gaps(in: indices.sorted(), below: upper, listing: 10)
    guard missingCount == 0 else {
        throw MedSynthError(file: folder.path, "missing item(s) \(listed(firstMissing.map(String.init), total: missingCount))\(expect.map { " of the \($0) expected" } ?? "")")
    }
    if let extra = items.last?.key[0], extra >= upper {
        throw MedSynthError(file: folder.path, "item \(extra) is beyond the \(upper) expected (--expect); was the run larger?")
    }
    if kind == "composite" {
        // Instances of one scan are 1, 2, …, without gaps; a skipped scan has its one line only.
        var start = 0
        while start < items.count {
            var end = start
            while end < items.count && items[end].key[0] == items[start].key[0] { end += 1 }
            if items[start].key[1] == 0 {
                guard end == start + 1 else {
                    throw MedSynthError(file: folder.path, "scan \(items[start].key[0]) is marked skipped but also has lesion lines")
                }
                start = end
                continue
            }
            for (offset, item) in items[start..<end].enumerated() where item.key[1] != offset + 1 {
                throw MedSynthError(file: folder.path, "scan \(item.key[0]): lesion instance \(offset + 1) is missing (found \(item.key[1]))")
            }
            start = end
        }
    }
    var absent: [String] = []
    for item in items { for file in item.fields.files where !fm.fileExists(atPath: folder.appendingPathComponent(file).path) { absent.append(file) } }
    guard absent.isEmpty else {
        throw MedSynthError(file: folder.path, "manifest names missing file(s) \(listed(absent)) — rerun their shard with --resume")
    }

    let out = folder.appendingPathComponent("manifest.jsonl")
    try writeAtomically(Data(items.map { $0.line + "\n" }.joined().utf8), to: out)
    return MergeReport(lines: items.count, items: indices.count, shards: total, manifest: out)
}

/// The first ten of a list of `total` (default: the list's length), then how many more.
func listed(_ values: [String], total: Int? = nil) -> String {
    let count = total ?? values.count
    return values.prefix(10).joined(separator: ", ") + (count > 10 ? " and \(count - 10) more" : "")
}

/// The first `listing` numbers of 0..<upper that `sorted` (ascending, distinct) lacks, and how many
/// it lacks, in time linear in `sorted` whatever `upper` is (indices come from files).
func gaps(in sorted: [Int], below upper: Int, listing: Int) -> (first: [Int], count: Int) {
    var first: [Int] = [], count = 0, next = 0
    func note(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        count += range.count
        first += range.prefix(max(0, listing - first.count))
    }
    for value in sorted where value < upper {
        note(next..<value)
        next = value + 1
    }
    note(next..<max(next, upper))
    return (first, count)
}
