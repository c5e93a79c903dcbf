import Dispatch
import Foundation
import Core
import Engine
import Imaging

// MARK: - An image folder, loaded once, prepared for the feature network

/// The images of a folder (class subfolders or a flat folder), decoded once as the feature
/// network's 64×64 gray inputs in [−1, 1]; the same pixels serve the memorisation check's pixel
/// distances, the intensity histograms, the report's grids and the utility classifier.
public struct ImageSet {
    public let root: URL
    /// Class names (the subfolders, sorted), or the folder's own name for a flat folder.
    public let classNames: [String]
    /// Whether the images sit in class subfolders (per-class metrics need this in both sets).
    public let hasClassFolders: Bool
    /// Class index of every image, indexing `classNames`.
    public let labels: [Int]
    /// Display names: the path below `root` (with "#frame" for DICOM/NIfTI frames).
    public let names: [String]
    /// 64×64 gray images in [−1, 1], CHW (`FeatureNetwork.inputSize`²).
    public let pixels: [[Float]]
    /// Channel counts as stored (1 gray, 3 colour; alpha aside): the channel-mismatch check.
    public let channels: Set<Int>

    /// Loads every image below `root` (in parallel); `progress(done, total)` follows the loading.
    public init(root: URL, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws {
        let size = FeatureNetwork.inputSize
        let dataset = try ImageFolderDataset(root: root, imageSize: size, channels: 1)
        let n = dataset.count, item = size * size
        var flat = [Float](repeating: 0, count: n * item)
        let chunk = 512
        progress(0, n)
        try flat.withUnsafeMutableBufferPointer { out in
            var start = 0
            while start < n {
                let end = min(n, start + chunk)
                try dataset.loadBatch(indices: Array(start..<end),
                                      into: UnsafeMutableBufferPointer(rebasing: out[start * item..<end * item]))
                start = end
                progress(start, n)
            }
        }
        // Stored channels, from each file's header (images are cached; this only re-reads headers).
        var stored = [Int](repeating: 1, count: n)
        stored.withUnsafeMutableBufferPointer { stored in
            DispatchQueue.concurrentPerform(iterations: max(1, min(n, Parallel.workers))) { worker in
                var i = worker
                while i < n {
                    let entry = dataset.entries[i]
                    // DICOM/NIfTI frames (and anything unprobeable) count as gray.
                    if entry.frame == 0, let bytes = try? readFileBytes(at: entry.url), let header = try? probeImage(bytes, name: entry.url.path) {
                        stored[i] = header.channels >= 3 ? 3 : 1
                    }
                    i += Parallel.workers
                }
            }
        }
        let rootPath = root.standardizedFileURL.path
        self.root = root
        self.classNames = dataset.classNames
        self.labels = dataset.entries.map(\.classIndex)
        self.hasClassFolders = dataset.entries.contains { $0.url.deletingLastPathComponent().standardizedFileURL.path != rootPath }
        self.names = dataset.entries.map { entry in
            let path = entry.url.standardizedFileURL.path
            let relative = path.hasPrefix(rootPath + "/") ? String(path.dropFirst(rootPath.count + 1)) : entry.url.lastPathComponent
            return relative + (entry.frame > 0 ? "#\(entry.frame)" : "")
        }
        self.pixels = (0..<n).map { Array(flat[$0 * item..<($0 + 1) * item]) }
        self.channels = Set(stored)
    }

    public var count: Int { pixels.count }

    /// Indices of the images of class `name`.
    public func indices(ofClass name: String) -> [Int] {
        guard let c = classNames.firstIndex(of: name) else { return [] }
        return labels.indices.filter { labels[$0] == c }
    }

    /// Feature rows of every image, `batchSize` images per network call; `progress` gets the count done.
    public func features(_ network: FeatureNetwork, batchSize: Int = 128, progress: (Int) -> Void = { _ in }) -> Matrix {
        let size = FeatureNetwork.inputSize
        var rows: [Double] = []
        rows.reserveCapacity(count * network.dimension)
        var start = 0
        while start < count {
            let end = min(count, start + batchSize)
            var batch = [Float]()
            batch.reserveCapacity((end - start) * size * size)
            for i in start..<end { batch += pixels[i] }
            rows += network.features(Tensor(shape: [end - start, 1, size, size], data: batch))
            start = end
            progress(start)
        }
        return Matrix(rows: count, columns: network.dimension, values: rows)
    }
}
