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
//
// Memory follows an image, not the class: one file of a class can be a volume of 1,024 slices of
// 512² (a 0.65 MB .nii.gz at the pixel limit), which as images and pixel vectors took 4.8 GB. The
// neighbour search keeps one feature vector per image (`SMOTEFeatureGrid`, within
// `smoteFeatureBudget` values for classes of up to 32,768 images), and the images a sample needs are read back one at a
// time when it is written (`ClassImageReader`: a slice index into the file, which stays open).

/// Where the images of one class are (file and frame of each, no pixels), with the output-relative
/// names the balanced folder gives them ("<class>/<path below the class>[#frame]").
struct ClassImageList {
    var entries: [DatasetEntry]
    var names: [String]
    /// Index of each image's file among the class's files (in order of first appearance).
    var fileIndex: [Int]
    var count: Int { entries.count }
}

func classImageList(_ className: String, dataset: ImageFolderListing) -> ClassImageList {
    guard let index = dataset.classNames.firstIndex(of: className) else { return ClassImageList(entries: [], names: [], fileIndex: []) }
    let classRoot = dataset.root.appendingPathComponent(className).standardizedFileURL.path + "/"
    var list = ClassImageList(entries: [], names: [], fileIndex: [])
    var files: [URL: Int] = [:]
    for entry in dataset.entries where entry.classIndex == index {
        let full = entry.url.standardizedFileURL.path
        let relative = full.hasPrefix(classRoot) ? String(full.dropFirst(classRoot.count)) : entry.url.lastPathComponent
        list.entries.append(entry)
        list.names.append("\(className)/\(relative)" + (entry.frame > 0 ? "#\(entry.frame)" : ""))
        list.fileIndex.append(files[entry.url] ?? { files[entry.url] = files.count; return files.count - 1 }())
    }
    return list
}

/// Reads the images of a class one at a time. The last `openFiles` files stay open (a SMOTE sample
/// needs its parent and its neighbour, often from two files): an open volume gives any slice for one
/// plane read, while opening it again would inflate it again. PNG and JPEG files are decoded when
/// opened. The images last read are kept up to `cacheBytes` of samples, so a class of small PNGs
/// drawn from thousands of times decodes each file about once.
final class ClassImageReader {
    let list: ClassImageList
    static let openFiles = 2
    static let cacheBytes = 32 << 20
    /// Most recently used last.
    private var open: [(url: URL, images: MedicalImages)] = []
    private var cache: [Int: Image] = [:]
    /// Cached image indices, oldest first from `cacheHead`, and the bytes they hold.
    private var cacheOrder: [Int] = []
    private var cacheHead = 0
    private var cachedBytes = 0

    init(_ list: ClassImageList) { self.list = list }

    private func opened(_ url: URL) throws -> MedicalImages {
        if let at = open.firstIndex(where: { $0.url == url }) {
            let hit = open.remove(at: at)
            open.append(hit)
            return hit.images
        }
        if open.count >= ClassImageReader.openFiles { open.removeFirst() }
        let images = try openImages(readFileBytes(at: url), name: url.path)
        open.append((url, images))
        return images
    }

    /// Image `i` of the class.
    func image(_ i: Int) throws -> Image {
        if let cached = cache[i] { return cached }
        let entry = list.entries[i]
        let images = try opened(entry.url)
        guard entry.frame < images.count else { throw MedSynthError(file: entry.url.path, "frame \(entry.frame) vanished while reading") }
        let image = try images.image(at: entry.frame)
        let bytes = 2 * image.samples.count
        guard bytes <= ClassImageReader.cacheBytes / 4 else { return image }
        // First in, first out: the oldest images leave until the new one fits.
        while cachedBytes + bytes > ClassImageReader.cacheBytes, cacheHead < cacheOrder.count {
            if let old = cache.removeValue(forKey: cacheOrder[cacheHead]) { cachedBytes -= 2 * old.samples.count }
            cacheHead += 1
        }
        if cacheHead > 4096 && cacheHead * 2 > cacheOrder.count { cacheOrder.removeFirst(cacheHead); cacheHead = 0 }
        cache[i] = image
        cacheOrder.append(i)
        cachedBytes += bytes
        return image
    }

    /// Calls `body(i, image)` for every image of the class in order, opening each file once and
    /// keeping none of its images (the last files stay open).
    func forEach(_ body: (Int, Image) throws -> Void) throws {
        var i = 0
        while i < list.count {
            let url = list.entries[i].url
            var end = i
            var position: [Int: Int] = [:]     // frame → image index
            while end < list.count && list.entries[end].url == url { position[list.entries[end].frame] = end; end += 1 }
            let images = try opened(url)     // and kept open: the samples come from these files next
            var frame = 0, seen = 0
            try images.forEach { image in
                if let index = position[frame] { try body(index, image); seen += 1 }
                frame += 1
            }
            if seen < position.count {
                let missing = position.keys.filter { $0 >= frame }.min() ?? frame
                throw MedSynthError(file: url.path, "frame \(missing) vanished while reading")
            }
            i = end
        }
    }
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

/// The draws of samples `range` for a class whose images have the given k-NN lists (nearest
/// first, self excluded), from stream j of `seed` for sample j.
func smoteDraws(_ range: Range<Int>, neighbours: NearestNeighbours, images: Int, seed: UInt64) -> [SMOTEDraw] {
    let root = RandomStream(seed: seed)
    return range.map { j in
        var s = root.split(UInt64(j))
        let parent = s.int(below: images)
        let neighbour = neighbours.index(parent, s.int(below: neighbours.k))
        return SMOTEDraw(parent: parent, neighbour: neighbour, lambda: s.uniformDouble())
    }
}

// MARK: - What the neighbour search compares

/// Values of the feature matrix of one class's neighbour search (64 MB as Double).
let smoteFeatureBudget = 8 << 20
/// Features per image never go below this (a class of more than 32,768 images gets 256 each).
let smoteMinimumFeatures = 256

/// The features SMOTE's neighbour search gives an image of `width`×`height`×`channels`: the sums of
/// square blocks of `block`×`block` pixels (per channel, clipped at the right and bottom edges),
/// each divided by √(pixels in the block), after scaling samples to [0, 1].
///
/// `block` is the smallest side that keeps an image within its share of `smoteFeatureBudget`.
/// Block 1 is every sample, exactly the pixel-space search of Chawla et al. (and of this tool before
/// features had a budget): classes of small images, e.g. 1,000 of 64×64, get the same neighbours
/// and the same samples as before. Larger blocks give the coordinates of the orthogonal projection
/// onto images constant on each block (the indicator of a block divided by √n is a unit vector), so
/// a feature distance never exceeds the pixel distance, equals it for images constant on the
/// blocks, and what the search no longer sees is detail finer than a block (1,024 slices of 512²
/// are compared as 86×86 grids of 6×6 blocks).
struct SMOTEFeatureGrid: Equatable {
    let width: Int, height: Int, channels: Int
    let block: Int
    var columns: Int { (width + block - 1) / block }
    var rows: Int { (height + block - 1) / block }
    var count: Int { columns * rows * channels }

    init(width: Int, height: Int, channels: Int, images: Int, budget: Int = smoteFeatureBudget) {
        self.width = width; self.height = height; self.channels = channels
        let share = max(smoteMinimumFeatures, budget / max(1, images))
        let pixels = Double(width * height * channels)
        var block = max(1, Int((pixels / Double(share)).squareRoot().rounded(.down)))
        while ((width + block - 1) / block) * ((height + block - 1) / block) * channels > share { block += 1 }
        self.block = block
    }

    /// Adds the block sums of `image`'s samples (as stored, not scaled) into `row` (`count` values).
    func accumulate(_ image: Image, into row: UnsafeMutablePointer<Double>) {
        let (w, c, b, cols) = (width, channels, block, columns)
        // Feature offset of each column's block, made once: a division per pixel cost seconds on a volume.
        let columnOffset = (0..<w).map { ($0 / b) * c }
        image.samples.withUnsafeBufferPointer { s in
            columnOffset.withUnsafeBufferPointer { offset in
                for y in 0..<height {
                    let out = row + (y / b) * cols * c, line = s.baseAddress! + y * w * c
                    if c == 1 {
                        for x in 0..<w { out[offset[x]] += Double(line[x]) }
                    } else {
                        for x in 0..<w { for ch in 0..<c { out[offset[x] + ch] += Double(line[x * c + ch]) } }
                    }
                }
            }
        }
    }

    /// Turns the block sums of an image of `imageMaxValue` into features: samples scaled to the
    /// class depth and to [0, 1] as the interpolation scales them, then ÷ √(pixels in the block).
    func finish(_ row: UnsafeMutablePointer<Double>, imageMaxValue: Int, classMaxValue: Double) {
        let scale = classMaxValue / Double(imageMaxValue)
        // In this order (scale, then ÷ maximum) so that block 1 gives the very values it always did.
        for i in 0..<count { row[i] = row[i] * scale / classMaxValue }
        guard block > 1 else { return }
        for r in 0..<rows {
            let h = min(block, height - r * block)
            for col in 0..<columns {
                let root = Double(h * min(block, width - col * block)).squareRoot()
                for ch in 0..<channels { row[(r * columns + col) * channels + ch] /= root }
            }
        }
    }
}

/// The SMOTE features of every image of a class (rows in class order), read one file at a time,
/// and the bit depth the synthetic images get (the class's largest). Refuses a class whose images
/// differ in size or channels: pixels cannot be interpolated across them.
func smoteFeatures(_ reader: ClassImageReader, root: URL, budget: Int = smoteFeatureBudget) throws
    -> (features: Matrix, grid: SMOTEFeatureGrid, depth: Int) {
    let list = reader.list
    var grid: SMOTEFeatureGrid?
    var first: Image?
    var values: [Double] = []
    var maxValues = [Int](repeating: 255, count: list.count)
    try reader.forEach { i, image in
        if let first {
            guard image.width == first.width, image.height == first.height, image.channels == first.channels else {
                throw MedSynthError(file: root.appendingPathComponent(list.names[i]).path,
                                    "is \(image.width)×\(image.height) with \(image.channels) channel(s) but \(list.names[0]) is \(first.width)×\(first.height) with \(first.channels): SMOTE interpolates pixels and needs one size per class (medsynth convert --size N --channels C first)")
            }
        } else {
            first = image
            grid = SMOTEFeatureGrid(width: image.width, height: image.height, channels: image.channels, images: list.count, budget: budget)
            values = [Double](repeating: 0, count: list.count * grid!.count)
        }
        let g = grid!
        values.withUnsafeMutableBufferPointer { g.accumulate(image, into: $0.baseAddress! + i * g.count) }
        maxValues[i] = image.maxValue
    }
    guard let grid else { throw MedSynthError(file: root.path, "the class has no images") }
    let depth = maxValues.contains(65535) ? 16 : 8
    let classMaxValue = Double(depth == 16 ? 65535 : 255)
    values.withUnsafeMutableBufferPointer { v in
        for i in 0..<list.count { grid.finish(v.baseAddress! + i * grid.count, imageMaxValue: maxValues[i], classMaxValue: classMaxValue) }
    }
    return (Matrix(rows: list.count, columns: grid.count, values: values), grid, depth)
}

// MARK: - Writing

/// Samples are made and written this many at a time (their draws sorted by file, so a volume is not
/// reopened for every sample); memory does not grow with the number asked for.
let oversamplingChunk = 4096

/// What `oversampleClass` makes from the class's real images.
enum OversamplingKind: Equatable {
    case copies
    case smote(neighbours: Int)
    case augmentedCopies
}

/// Writes `row.add` random copies, SMOTE interpolants or augmented copies of the class's real images
/// as `synthetic_NNNNNN.png`, and hands their manifest lines, in sample order, to `emit` a chunk at a time.
func oversampleClass(_ row: BalancePlanRow, kind: OversamplingKind, dataset: ImageFolderListing, into out: URL,
                     style: ProgressStyle, featureBudget: Int = smoteFeatureBudget, fileName: (Int) -> String = syntheticFileName,
                     emit: ([BalanceManifestRecord]) throws -> Void) throws {
    let list = classImageList(row.className, dataset: dataset)
    let reader = ClassImageReader(list)
    let classFolder = out.appendingPathComponent(row.className)
    try FileManager.default.createDirectory(at: classFolder, withIntermediateDirectories: true)
    var smote: (neighbours: NearestNeighbours, depth: Int)?
    if case .smote(let k) = kind {
        let (features, _, depth) = try smoteFeatures(reader, root: dataset.root, budget: featureBudget)
        smote = (nearestNeighbours(features, in: features, k: k, excludingSelf: true), depth)
    }
    let reporter = ProgressReporter(label: "balance \(row.className)", total: row.add, unit: "image", style: style)
    let root = RandomStream(seed: row.seed)
    // The transform of augmented copy j comes from stream j after its parent: the parents
    // stay those of plain oversampling with the same seed.
    func augmentation(_ j: Int, width: Int, height: Int) -> AffineAugmentation {
        var s = root.split(UInt64(j))
        _ = s.int(below: list.count)
        return AffineAugmentation.random(&s, width: width, height: height)
    }
    var done = 0
    for start in stride(from: 0, to: row.add, by: oversamplingChunk) {
        let range = start..<min(row.add, start + oversamplingChunk)
        let draws: [SMOTEDraw]
        if let smote {
            draws = smoteDraws(range, neighbours: smote.neighbours, images: list.count, seed: row.seed)
        } else {
            draws = range.map { j in
                var s = root.split(UInt64(j))
                let parent = s.int(below: list.count)
                return SMOTEDraw(parent: parent, neighbour: parent, lambda: 0)
            }
        }
        var records = [BalanceManifestRecord?](repeating: nil, count: range.count)
        let order = draws.indices.sorted {
            (list.fileIndex[draws[$0].parent], list.fileIndex[draws[$0].neighbour], $0)
                < (list.fileIndex[draws[$1].parent], list.fileIndex[draws[$1].neighbour], $1)
        }
        for d in order {
            let draw = draws[d], j = range.lowerBound + d
            let parent = try reader.image(draw.parent)
            var image = parent
            var record = BalanceManifestRecord(file: "\(row.className)/\(fileName(j))", class: row.className, source: "synthetic",
                                               origin: "oversample", seed: row.seed, sample_index: j)
            record.parents = [list.names[draw.parent]]
            if let smote {
                let neighbour = try reader.image(draw.neighbour)
                let maxValue = Double(smote.depth == 16 ? 65535 : 255)
                image = Image(width: parent.width, height: parent.height, channels: parent.channels, bitDepth: smote.depth,
                              samples: interpolate(samples(parent, atDepth: smote.depth), samples(neighbour, atDepth: smote.depth),
                                                   lambda: draw.lambda, maxValue: maxValue))
                record.origin = "smote"
                record.parents = [list.names[draw.parent], list.names[draw.neighbour]]
                record.lambda = draw.lambda
                record.neighbours = smote.neighbours.k
            }
            if kind == .augmentedCopies {
                let transform = augmentation(j, width: parent.width, height: parent.height)
                image = affineTransformed(parent, transform)
                record.origin = "augment"
                record.augmentation = transform
            }
            let destination = classFolder.appendingPathComponent(fileName(j))
            try checkFree(destination)
            try writePNG(image, to: destination)
            records[d] = record
            done += 1
            reporter.update(done: done, items: done)
        }
        try emit(records.compactMap { $0 })
    }
}
