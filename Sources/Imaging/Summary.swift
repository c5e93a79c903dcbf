import Dispatch
import Core
import Foundation

// What `medsynth info` reports: one image file, or a dataset folder.

// MARK: - One file

/// Header facts and the value range of one image file.
public struct ImageFileInfo: Sendable {
    public let url: URL
    public let format: ImageFormat
    public let fileSize: Int
    public let image: Image
    /// Smallest and largest sample per channel (alpha included).
    public let minimum: [Int]
    public let maximum: [Int]

    /// Human-readable report, a few lines.
    public var description: String {
        let names = channelNames(image.channels)
        var lines = ["\(url.path): \(format.rawValue), \(image.width)x\(image.height), "
            + "\(image.channels) channel\(image.channels == 1 ? "" : "s") (\(names.joined(separator: "+"))), "
            + "\(image.bitDepth)-bit, \(fileSize) bytes"]
        let ranges = names.indices.map { "\(names[$0]) \(minimum[$0])...\(maximum[$0])" }
        lines.append("  value range: \(ranges.joined(separator: ", ")) (of 0...\(image.maxValue))")
        return lines.joined(separator: "\n")
    }
}

private func channelNames(_ channels: Int) -> [String] {
    switch channels {
    case 1: return ["gray"]
    case 2: return ["gray", "alpha"]
    case 3: return ["red", "green", "blue"]
    default: return ["red", "green", "blue", "alpha"]
    }
}

/// Decodes one file and measures its value range per channel.
public func imageFileInfo(at url: URL, maxSide: Int = 16384) throws -> ImageFileInfo {
    let bytes = try readFileBytes(at: url)
    let image = try decodeImage(bytes, name: url.path, maxSide: maxSide)
    var minimum = [Int](repeating: Int.max, count: image.channels)
    var maximum = [Int](repeating: Int.min, count: image.channels)
    image.samples.withUnsafeBufferPointer { samples in
        for c in 0..<image.channels {
            var lo = UInt16.max, hi = UInt16.min
            for i in stride(from: c, to: samples.count, by: image.channels) {
                lo = min(lo, samples[i]); hi = max(hi, samples[i])
            }
            minimum[c] = Int(lo); maximum[c] = Int(hi)
        }
    }
    return ImageFileInfo(url: url, format: ImageFormat.sniff(bytes)!, fileSize: bytes.count,
                         image: image, minimum: minimum, maximum: maximum)
}

// MARK: - A folder

/// What a dataset folder holds: images per class, the image sizes seen, and every file that
/// could not be used (not an image, corrupt, outside a class folder) with the reason.
public struct DatasetSummary: Sendable {
    /// One distinct image layout and how many images have it.
    public struct Layout: Hashable, Sendable {
        public let width: Int
        public let height: Int
        public let channels: Int
        public let bitDepth: Int
    }

    public let root: URL
    public let classNames: [String]
    /// Images that decoded, per class (indexed like `classNames`).
    public let countsPerClass: [Int]
    /// Layouts seen with their counts, most frequent first.
    public let layouts: [(layout: Layout, count: Int)]
    public let unreadable: [SkippedFile]

    public var imageCount: Int { countsPerClass.reduce(0, +) }

    /// Human-readable report, one fact per line.
    public var description: String {
        var lines = ["\(root.path): \(imageCount) image\(imageCount == 1 ? "" : "s") in \(classNames.count) class\(classNames.count == 1 ? "" : "es")"]
        for (name, count) in zip(classNames, countsPerClass) { lines.append("  class \(name): \(count)") }
        lines.append("sizes seen:")
        if layouts.isEmpty { lines.append("  (none)") }
        for (layout, count) in layouts {
            lines.append("  \(layout.width)x\(layout.height), \(layout.channels) channel\(layout.channels == 1 ? "" : "s"), \(layout.bitDepth)-bit: \(count)")
        }
        lines.append("unreadable files: \(unreadable.count)")
        for file in unreadable { lines.append("  \(file.url.path): \(file.reason)") }
        return lines.joined(separator: "\n")
    }
}

/// Scans a dataset folder (same rules as `ImageFolderDataset`) and fully decodes every image,
/// so truncated or corrupt files are found and listed. Decoding runs on all cores.
public func summarizeFolder(_ url: URL, maxSide: Int = 16384) throws -> DatasetSummary {
    let scan = try FolderScan(root: url)
    let entries = scan.entries
    // Per entry: the layout if it decoded, else the reason.
    var results = [Result<DatasetSummary.Layout, MedSynthError>?](repeating: nil, count: entries.count)
    let workers = max(1, min(entries.count, ProcessInfo.processInfo.activeProcessorCount))
    results.withUnsafeMutableBufferPointer { results in
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for index in stride(from: worker, to: entries.count, by: workers) {
                do {
                    let image = try readImage(at: entries[index].url, maxSide: maxSide)
                    results[index] = .success(.init(width: image.width, height: image.height,
                                                    channels: image.channels, bitDepth: image.bitDepth))
                } catch let error as MedSynthError {
                    results[index] = .failure(error)
                } catch {
                    results[index] = .failure(MedSynthError(file: entries[index].url.path, "\(error)"))
                }
            }
        }
    }
    var counts = [Int](repeating: 0, count: scan.classNames.count)
    var layoutCounts: [DatasetSummary.Layout: Int] = [:]
    var unreadable = scan.skipped
    for (entry, result) in zip(entries, results) {
        switch result! {
        case .success(let layout):
            counts[entry.classIndex] += 1
            layoutCounts[layout, default: 0] += 1
        case .failure(let error):
            // Drop the "path: " prefix; the report prints the path itself.
            let prefix = entry.url.path + ": "
            let reason = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
            unreadable.append(SkippedFile(url: entry.url, reason: reason))
        }
    }
    unreadable.sort { $0.url.path < $1.url.path }
    let layouts = layoutCounts.map { (layout: $0.key, count: $0.value) }.sorted {
        ($0.count, $1.layout.width, $1.layout.height, $1.layout.channels, $1.layout.bitDepth)
            > ($1.count, $0.layout.width, $0.layout.height, $0.layout.channels, $0.layout.bitDepth)
    }
    return DatasetSummary(root: url, classNames: scan.classNames, countsPerClass: counts,
                          layouts: layouts, unreadable: unreadable)
}
