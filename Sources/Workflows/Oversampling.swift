import Foundation
import Core
import Engine
import Imaging
import Evaluation

// MARK: - The two classical baselines of class balancing, on images
//
// Random oversampling duplicates real images of the class; SMOTE (Chawla et al. 2002, "SMOTE:
// Synthetic Minority Over-sampling Technique", Section 4.2) makes a new sample on the segment
// between a real image and one of its k nearest same-class neighbours: x = x_i + λ (x_nn − x_i),
// λ ~ U[0, 1). Applied to images the "features" are the pixels, so the neighbours are found in
// pixel space and the interpolant is a cross-fade of two real images. Both are here so that a
// generator can be compared against them inside one tool.
//
// Sample j of a class draws everything (the parent, the neighbour, λ) from stream j of the class
// seed, so it depends only on (seed, class, j), like the generated and composited samples.

/// The images of one class as decoded (every frame of a multi-frame file is one image), with the
/// output-relative names the balanced folder gives them ("<class>/<path below the class>[#frame]").
struct ClassImages {
    var images: [Image]
    var names: [String]
}

func loadClassImages(_ className: String, dataset: ImageFolderDataset) throws -> ClassImages {
    guard let index = dataset.classNames.firstIndex(of: className) else { return ClassImages(images: [], names: []) }
    let classRoot = dataset.root.appendingPathComponent(className).standardizedFileURL.path + "/"
    var images: [Image] = [], names: [String] = []
    var cache: (url: URL, frames: [Image])?
    for entry in dataset.entries where entry.classIndex == index {
        if cache?.url != entry.url { cache = (entry.url, try readImages(at: entry.url)) }     // one file at a time
        guard entry.frame < cache!.frames.count else { throw MedSynthError(file: entry.url.path, "frame \(entry.frame) vanished while reading") }
        let full = entry.url.standardizedFileURL.path
        let relative = full.hasPrefix(classRoot) ? String(full.dropFirst(classRoot.count)) : entry.url.lastPathComponent
        images.append(cache!.frames[entry.frame])
        names.append("\(className)/\(relative)" + (entry.frame > 0 ? "#\(entry.frame)" : ""))
    }
    return ClassImages(images: images, names: names)
}

/// Refuses a class whose images differ in size or channels (pixels cannot be interpolated across
/// them) and returns the bit depth the synthetic images get (the class's largest).
func checkInterpolable(_ set: ClassImages, className: String, root: URL) throws -> Int {
    guard let first = set.images.first else { return 8 }
    for (image, name) in zip(set.images, set.names) where image.width != first.width || image.height != first.height || image.channels != first.channels {
        throw MedSynthError(file: root.appendingPathComponent(name).path,
                            "is \(image.width)×\(image.height) with \(image.channels) channel(s) but \(set.names[0]) is \(first.width)×\(first.height) with \(first.channels): SMOTE interpolates pixels and needs one size per class (medsynth convert --size N --channels C first)")
    }
    return set.images.map(\.bitDepth).max()!
}

/// Samples of `image` scaled to `bitDepth`, as Doubles.
func samples(_ image: Image, atDepth bitDepth: Int) -> [Double] {
    let scale = Double(bitDepth == 16 ? 65535 : 255) / Double(image.maxValue)
    return image.samples.map { Double($0) * scale }
}

/// The SMOTE interpolant x_i + λ (x_j − x_i) of two equally shaped sample arrays, rounded and
/// clamped to the depth's range.
func interpolate(_ a: [Double], _ b: [Double], lambda: Double, maxValue: Double) -> [UInt16] {
    precondition(a.count == b.count, "interpolate: \(a.count) vs \(b.count) samples")
    return (0..<a.count).map { UInt16(min(max((a[$0] + lambda * (b[$0] - a[$0])).rounded(), 0), maxValue)) }
}

/// One SMOTE draw for sample j: the parent, the chosen neighbour (an index into the class) and λ.
public struct SMOTEDraw: Equatable {
    public var parent: Int
    public var neighbour: Int
    public var lambda: Double
}

/// The draws of samples 0..<count for a class whose images have the given k-NN lists (nearest
/// first, self excluded), from stream j of `seed` for sample j.
func smoteDraws(count: Int, neighbours: NearestNeighbours, images: Int, seed: UInt64) -> [SMOTEDraw] {
    let root = RandomStream(seed: seed)
    return (0..<count).map { j in
        var s = root.split(UInt64(j))
        let parent = s.int(below: images)
        let neighbour = neighbours.index(parent, s.int(below: neighbours.k))
        return SMOTEDraw(parent: parent, neighbour: neighbour, lambda: s.uniformDouble())
    }
}

/// The k nearest same-class neighbours of every image in pixel space (Euclidean on samples scaled
/// to [0, 1]), self excluded.
func pixelNeighbours(_ set: [[Double]], maxValue: Double, k: Int) -> NearestNeighbours {
    let columns = set[0].count
    let matrix = Matrix(rows: set.count, columns: columns, values: set.flatMap { $0.map { $0 / maxValue } })
    return nearestNeighbours(matrix, in: matrix, k: k, excludingSelf: true)
}

/// Writes `row.add` SMOTE interpolants (or, with `neighbours` nil, random duplicates) of the class's
/// real images as `synthetic_NNNNNN.png`, with manifest lines naming the parents and λ.
func oversampleClass(_ row: BalancePlanRow, smoteNeighbours: Int?, dataset: ImageFolderDataset, into out: URL,
                     style: ProgressStyle) throws -> [BalanceManifestRecord] {
    let set = try loadClassImages(row.className, dataset: dataset)
    let classFolder = out.appendingPathComponent(row.className)
    try FileManager.default.createDirectory(at: classFolder, withIntermediateDirectories: true)
    let reporter = ProgressReporter(label: "balance \(row.className)", total: row.add, unit: "image", style: style)
    var records: [BalanceManifestRecord] = []
    func write(_ image: Image, _ j: Int, origin: String, parents: [String], lambda: Double?, k: Int?) throws {
        let destination = classFolder.appendingPathComponent(syntheticFileName(j))
        try checkFree(destination)
        try writePNG(image, to: destination)
        var record = BalanceManifestRecord(file: "\(row.className)/\(syntheticFileName(j))", class: row.className, source: "synthetic",
                                           origin: origin, seed: row.seed, sample_index: j)
        record.parents = parents
        record.lambda = lambda
        record.neighbours = k
        records.append(record)
        reporter.update(done: j + 1, items: j + 1)
    }
    if let k = smoteNeighbours {
        let depth = try checkInterpolable(set, className: row.className, root: dataset.root)
        let maxValue = Double(depth == 16 ? 65535 : 255)
        let values = set.images.map { samples($0, atDepth: depth) }
        let nn = pixelNeighbours(values, maxValue: maxValue, k: k)
        let first = set.images[0]
        for (j, draw) in smoteDraws(count: row.add, neighbours: nn, images: set.images.count, seed: row.seed).enumerated() {
            let image = Image(width: first.width, height: first.height, channels: first.channels, bitDepth: depth,
                              samples: interpolate(values[draw.parent], values[draw.neighbour], lambda: draw.lambda, maxValue: maxValue))
            try write(image, j, origin: "smote", parents: [set.names[draw.parent], set.names[draw.neighbour]], lambda: draw.lambda, k: nn.k)
        }
    } else {
        let root = RandomStream(seed: row.seed)
        for j in 0..<row.add {
            var s = root.split(UInt64(j))
            let parent = s.int(below: set.images.count)
            try write(set.images[parent], j, origin: "oversample", parents: [set.names[parent]], lambda: nil, k: nil)
        }
    }
    return records
}
