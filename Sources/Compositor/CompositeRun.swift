import Core
import Engine
import Foundation
import Imaging

// MARK: - Options


/// Everything a compositing run needs besides the lesion source.
public struct CompositeOptions: Sendable {
    /// Folder of healthy scans (PNG/JPEG, not recursive).
    public var backgrounds: URL
    /// Output folder: `images/`, `masks/`, `manifest.jsonl` (or one per shard), `manifest.d/`.
    public var out: URL
    /// Lesions per image.
    public var perImage: Int = 1
    public var blend = BlendSettings()
    /// Folder of region masks named like the scans (`NAME.png` or `NAME_mask.png`); nil = automatic.
    public var regionMasks: URL? = nil
    /// Automatic region: erosion in pixels.
    public var margin: Float = 4
    /// Minimum distance in pixels between two lesions of one image.
    public var spacing: Int = 4
    public var match: IntensityMatch = .local
    /// Requested lesion contrast against the local background (0.3 = 30 % brighter); nil = the patch's own.
    public var contrast: Double? = nil
    public var jitter = JitterLimits()
    public var seed: UInt64 = 0
    public var shard = Shard()
    /// Keep scans whose outputs (image, mask and manifest part) an earlier run of the same seed and
    /// lesion count finished; make the others.
    public var resume = false

    public init(backgrounds: URL, out: URL) {
        self.backgrounds = backgrounds
        self.out = out
    }
}

// MARK: - Manifest

/// One manifest line: a lesion placed into one scan.
public struct LesionRecord: Codable, Equatable, Sendable {
    /// File name of the background scan, inside the backgrounds folder.
    public var background: String
    /// Output image and mask, relative to the output folder.
    public var image: String
    public var mask: String
    /// Index of the background in the sorted backgrounds folder (its random stream).
    public var index: Int
    /// Label value of this lesion in the mask image (1, 2, …).
    public var instance: Int
    public var lesionSource: String
    /// Centroid of the recorded mask, pixels (x, y).
    public var centre: [Double]
    /// Bounding box of the recorded mask: x, y, width, height.
    public var bbox: [Int]
    /// Pixels in the recorded mask.
    public var area: Int
    public var scale: Double
    /// Degrees, counter-clockwise.
    public var rotation: Double
    public var flip: Bool
    public var mode: String
    public var match: String
    /// Lesion mean against the local background mean before blending: (μ_L − μ_b) / μ_b.
    public var contrast: Double
    public var seed: UInt64
}

/// Encodes records as JSON lines (sorted keys, snake_case), one per record.
public func manifestLines(_ records: [LesionRecord]) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var text = ""
    for record in records {
        text += String(decoding: try encoder.encode(record), as: UTF8.self) + "\n"
    }
    return text
}

private func rounded(_ value: Double, _ digits: Double = 4) -> Double {
    let factor = pow(10, digits)
    return (value * factor).rounded() / factor
}

// MARK: - One image

/// The result of compositing one scan.
public struct CompositeResult: Sendable {
    /// The scan with its lesions, at the scan's bit depth and channel count.
    public var image: Image
    /// One label value per lesion instance (8-bit when ≤ 255 lesions, else 16-bit), 0 elsewhere.
    public var labels: Image
    public var records: [LesionRecord]
}

/// One manifest line for a scan the run skipped because its allowed region had no room for all
/// of its lesions. It has no image, mask or instance; `skipped` says why.
public struct SkippedScanRecord: Codable, Equatable, Sendable {
    public var background: String
    public var index: Int
    public var skipped: String
    public var seed: UInt64
}

/// Places `options.perImage` lesions into `background` inside `region`, with all randomness from
/// stream `index` of `options.seed`, so the result depends only on (seed, index) and the inputs.
/// Throws when the region has no room for every lesion.
public func compositeImage(background: Image, name: String, index: Int, region: BinaryMask,
                           lesions: LesionSource, options: CompositeOptions) throws -> CompositeResult {
    switch try compositeOrNoRoom(background: background, name: name, index: index, region: region, lesions: lesions, options: options) {
    case .success(let result): return result
    case .failure(let noRoom): throw noRoom
    }
}

/// `compositeImage`, with "no room for a lesion" as a `.failure` (a batch skips that scan) and
/// every other problem thrown.
public func compositeOrNoRoom(background: Image, name: String, index: Int, region: BinaryMask,
                       lesions: LesionSource, options: CompositeOptions) throws -> Result<CompositeResult, MedSynthError> {
    precondition(region.width == background.width && region.height == background.height, "compositeImage: region size")
    let stem = stem(name)
    var planes = background.colorPlanes()
    var allowed = withoutBorder(region)
    var labels = [UInt16](repeating: 0, count: background.width * background.height)
    var records: [LesionRecord] = []
    let imageStream = RandomStream(seed: options.seed).split(UInt64(index))
    let jitter = options.jitter
    for slot in 0..<options.perImage {
        var random = imageStream.split(UInt64(slot))
        var placed: (patch: PlacedPatch, lesion: Int, transform: PatchTransform, intensity: Double)? = nil
        var lastTried: (mask: BinaryMask, lesion: Int, transform: PatchTransform)? = nil
        for _ in 0..<4 {
            let lesionIndex = random.int(below: lesions.count)
            let lesion = try lesions.lesion(lesionIndex)
            let transform = PatchTransform(
                scale: exp(Double(random.uniform(-1, 1)) * log1p(max(0, jitter.scale))),
                rotationDegrees: Double(random.uniform(-1, 1)) * jitter.rotationDegrees,
                flip: jitter.flip && random.uniform() < 0.5)
            let intensity = 1 + Double(random.uniform(-1, 1)) * jitter.intensity
            let converted = lesion.converted(channels: planes.count, bitDepth: background.bitDepth)
            let moved = transformPatch(planes: converted, mask: lesion.mask, by: transform,
                                       margin: 2 + Int(options.blend.feather.rounded(.up)))
            lastTried = (moved.mask, lesionIndex, transform)
            if let origin = placeMask(moved.mask, in: allowed, random: &random) {
                placed = (PlacedPatch(planes: moved.planes, mask: moved.mask, x: origin.x, y: origin.y),
                          lesionIndex, transform, intensity)
                break
            }
        }
        guard let chosen = placed else {
            let tried = lastTried!
            var scratch = RandomStream(seed: 0)
            let box = tried.mask.boundingBox!
            if placeMask(tried.mask, in: withoutBorder(region), random: &scratch) == nil {
                return .failure(MedSynthError(file: name, "lesion \(lesions.sourceLabel(tried.lesion)) (\(box.width)x\(box.height) px "
                    + "at scale \(rounded(tried.transform.scale, 2))) is larger than the allowed region "
                    + "(\(region.count) px); use smaller lesions, a smaller --margin or a larger region mask"))
            }
            return .failure(MedSynthError(file: name, "no room left in the allowed region for lesion \(slot + 1) of \(options.perImage) "
                + "(spacing \(options.spacing) px); lower --per-image or --spacing"))
        }
        var patch = chosen.patch
        let (lesionIndex, transform) = (chosen.lesion, chosen.transform)
        let contrast = matchIntensity(&patch.planes, mask: patch.mask, background: planes, x: patch.x, y: patch.y,
                                      match: options.match, contrast: options.contrast, jitter: chosen.intensity)
        let outcome = blend(patch, into: &planes, settings: options.blend)
        let instance = slot + 1
        // The recorded mask is the lesion's placed mask (inside the image); alpha changes exactly
        // these pixels, the Poisson modes also a `feather`-wide ring around them.
        var lesionPixels: [Int] = []
        var sx = 0.0, sy = 0.0, x0 = Int.max, y0 = Int.max, x1 = Int.min, y1 = Int.min
        for my in 0..<patch.mask.height {
            let y = patch.y + my
            if y < 0 || y >= background.height { continue }
            for mx in 0..<patch.mask.width where patch.mask[mx, my] {
                let x = patch.x + mx
                if x < 0 || x >= background.width { continue }
                let p = y * background.width + x
                lesionPixels.append(p)
                labels[p] = UInt16(instance)
                sx += Double(x); sy += Double(y)
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
            }
        }
        reserve(lesionPixels + outcome.pixels, spacing: options.spacing, in: &allowed)
        let n = Double(max(1, lesionPixels.count))
        records.append(LesionRecord(
            background: name, image: "images/\(stem).png", mask: "masks/\(stem).png", index: index, instance: instance,
            lesionSource: lesions.sourceLabel(lesionIndex),
            centre: [rounded(sx / n, 2), rounded(sy / n, 2)],
            bbox: lesionPixels.isEmpty ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
            area: lesionPixels.count, scale: rounded(transform.scale), rotation: rounded(transform.rotationDegrees, 2),
            flip: transform.flip, mode: options.blend.mode.rawValue, match: options.match.rawValue,
            contrast: rounded(contrast), seed: options.seed))
    }
    var image = background
    for c in planes.indices { image.setChannel(c, from: planes[c], truncate: options.blend.openCVCompatible) }
    let labelImage = Image(width: background.width, height: background.height, channels: 1,
                           bitDepth: options.perImage <= 255 ? 8 : 16, samples: labels)
    return .success(CompositeResult(image: image, labels: labelImage, records: records))
}

// MARK: - Batch

/// Progress after each scan of a run.
public struct CompositeProgress: Sendable {
    /// Scans of this shard finished (written or skipped) and in total.
    public var done: Int
    public var total: Int
    public var name: String
    public var skipped: Bool
}

/// What a run did.
public struct CompositeSummary: Sendable {
    public var written: Int
    /// Scans kept from an earlier run (--resume).
    public var skipped: Int
    public var lesions: Int
    public var manifest: URL
    /// Scans without room for their lesions: nothing written for them; each has a
    /// `SkippedScanRecord` line in the manifest. The reason names the scan's path.
    public var noRoom: [SkippedFile] = []
    /// Orphaned temporaries of an interrupted run that were removed.
    public var removedTemporaries: [URL] = []
}

/// Composites lesions into every scan of `options.backgrounds` that belongs to `options.shard`,
/// writing `images/NAME.png`, `masks/NAME.png` and a manifest part `manifest.d/NAME.jsonl` per scan
/// (each atomically; the part last, so it marks a finished scan), then the shard's manifest:
/// `manifest.jsonl`, or `manifest.shard-K-of-N.jsonl` for a shard of a split run. Scan `i` depends
/// only on (seed, i), so the shards of a split run together write exactly the files of a single run.
public func runComposite(_ options: CompositeOptions, lesions: LesionSource,
                         progress: ((CompositeProgress) -> Void)? = nil) throws -> CompositeSummary {
    guard options.perImage >= 1 else { throw MedSynthError("composite: --per-image must be at least 1") }
    guard options.perImage <= 65535 else { throw MedSynthError("composite: --per-image must be at most 65535") }
    guard lesions.count > 0 else { throw MedSynthError("composite: the lesion source is empty") }
    let names = try listImageFiles(in: options.backgrounds)
    if names.isEmpty { throw MedSynthError(file: options.backgrounds.path, "no scans (PNG or JPEG files) found") }
    var seen: [String: String] = [:]
    for name in names {
        if let other = seen[stem(name)] {
            throw MedSynthError(file: options.backgrounds.path, "'\(other)' and '\(name)' would both be written as \(stem(name)).png")
        }
        seen[stem(name)] = name
    }
    let images = options.out.appendingPathComponent("images")
    let masks = options.out.appendingPathComponent("masks")
    let parts = options.out.appendingPathComponent("manifest.d")
    for folder in [images, masks, parts] {
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw MedSynthError(file: folder.path, "cannot create folder (\(error.localizedDescription))")
        }
    }
    let mine = names.indices.filter { options.shard.contains($0) }
    let manifestName = options.shard.count == 1
        ? "manifest.jsonl" : "manifest.shard-\(options.shard.index)-of-\(options.shard.count).jsonl"
    let manifestURL = options.out.appendingPathComponent(manifestName)
    try checkCompositeManifestIsOurs(manifestURL)
    // Temporaries a killed run of this shard left behind are orphans now.
    let stems = mine.map { stem(names[$0]) }
    var removed = removeStaleTemporaries(in: options.out, for: [manifestName])
    removed += removeStaleTemporaries(in: images, for: Set(stems.map { $0 + ".png" }))
    removed += removeStaleTemporaries(in: masks, for: Set(stems.map { $0 + ".png" }))
    removed += removeStaleTemporaries(in: parts, for: Set(stems.map { $0 + ".jsonl" }))
    var written = 0, skipped = 0, lesionCount = 0
    var noRoom: [SkippedFile] = []
    var manifest = ""
    for (done, index) in mine.enumerated() {
        let name = names[index], stem = stem(name)
        let imageURL = images.appendingPathComponent(stem + ".png")
        let maskURL = masks.appendingPathComponent(stem + ".png")
        let partURL = parts.appendingPathComponent(stem + ".jsonl")
        let fm = FileManager.default
        if options.resume, let part = keptPart(part: partURL, image: imageURL, mask: maskURL, name: name, index: index, options: options) {
            manifest += part
            lesionCount += part.split(separator: "\n").count
            skipped += 1
            progress?(CompositeProgress(done: done + 1, total: mine.count, name: name, skipped: true))
            continue
        }
        let backgroundURL = options.backgrounds.appendingPathComponent(name)
        let background = try readImage(at: backgroundURL)
        let region: BinaryMask
        if let folder = options.regionMasks {
            let candidates = [stem + ".png", stem + "_mask.png"].map { folder.appendingPathComponent($0) }
            guard let url = candidates.first(where: { fm.fileExists(atPath: $0.path) }) else {
                throw MedSynthError(file: backgroundURL.path, "no region mask in \(folder.path) (looked for \(stem).png and \(stem)_mask.png)")
            }
            region = try regionFromMask(readImage(at: url), path: url.path, width: background.width, height: background.height)
        } else {
            region = automaticRegion(background, margin: options.margin)
        }
        // Name the full path of the scan at fault.
        func withPath(_ error: MedSynthError) -> MedSynthError {
            error.message.hasPrefix(name + ":") ? MedSynthError(backgroundURL.path + error.message.dropFirst(name.count)) : error
        }
        let result: CompositeResult
        do {
            switch try compositeOrNoRoom(background: background, name: name, index: index, region: region,
                                         lesions: lesions, options: options) {
            case .success(let made):
                result = made
            case .failure(let reason):
                // One crowded scan does not stop the run: it is listed at the end and in the manifest.
                let message = withPath(reason).message, prefix = backgroundURL.path + ": "
                let why = message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
                noRoom.append(SkippedFile(url: backgroundURL, reason: why))
                // Outputs an earlier run left under this scan's names no longer belong to the manifest
                // (and a stale part would make --resume keep them): remove them, part first.
                for url in [partURL, imageURL, maskURL] where fm.fileExists(atPath: url.path) { try? fm.removeItem(at: url) }
                manifest += try skippedScanLine(SkippedScanRecord(background: name, index: index, skipped: why, seed: options.seed))
                progress?(CompositeProgress(done: done + 1, total: mine.count, name: name, skipped: true))
                continue
            }
        } catch let error as MedSynthError {
            throw withPath(error)
        }
        try writePNG(result.image, to: imageURL)
        try writePNG(result.labels, to: maskURL)
        let part = try manifestLines(result.records)
        try writeAtomically(Data(part.utf8), to: partURL)
        manifest += part
        written += 1
        lesionCount += result.records.count
        progress?(CompositeProgress(done: done + 1, total: mine.count, name: name, skipped: false))
    }
    try writeAtomically(Data(manifest.utf8), to: manifestURL)
    return CompositeSummary(written: written, skipped: skipped, lesions: lesionCount, manifest: manifestURL,
                            noRoom: noRoom, removedTemporaries: removed)
}

/// The manifest part of a scan finished by an earlier run, when it may be kept on --resume: the
/// part's lines are this scan's lesions 1…perImage under this run's seed, and the image and mask
/// decode to the same size. Otherwise nil, and the scan is made again.
func keptPart(part: URL, image: URL, mask: URL, name: String, index: Int, options: CompositeOptions) -> String? {
    guard let bytes = try? readFileBytes(at: part) else { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    let lines = text.split(separator: "\n")
    let records = lines.compactMap { try? decoder.decode(LesionRecord.self, from: Data($0.utf8)) }
    guard records.count == lines.count, records.map(\.instance) == Array(1...options.perImage),
          records.allSatisfy({ $0.seed == options.seed && $0.index == index && $0.background == name }),
          let picture = try? readImage(at: image), let labels = try? readImage(at: mask),
          picture.width == labels.width, picture.height == labels.height else { return nil }
    return text.hasSuffix("\n") ? text : text + "\n"
}

/// A `SkippedScanRecord` as one JSON line, encoded like the lesion lines.
func skippedScanLine(_ record: SkippedScanRecord) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(record), as: UTF8.self) + "\n"
}

/// Refuses to replace `url` unless every line is a lesion or skipped-scan line of `composite`
/// (or a merge of them), so an unrelated manifest.jsonl in the output folder is never lost.
func checkCompositeManifestIsOurs(_ url: URL) throws {
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    let bytes: [UInt8]
    do { bytes = try readFileBytes(at: url) } catch let error as MedSynthError {
        throw MedSynthError(file: url.path, "\(error.message); refusing to overwrite it (move it away or choose another --out)")
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    for (number, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
        let data = Data(line.utf8)
        if (try? decoder.decode(LesionRecord.self, from: data)) != nil || (try? decoder.decode(SkippedScanRecord.self, from: data)) != nil { continue }
        throw MedSynthError(file: url.path, "exists and is not a manifest of `medsynth composite` (line \(number + 1) is not a lesion record); "
            + "refusing to overwrite it (move it away or choose another --out)")
    }
}

// MARK: - Benchmark

/// Blends `patch` (top-left at `x`, `y`, no jitter, no intensity matching) into `background`
/// `repeats` times and returns the last result with the mean seconds per blend (the solve on
/// ready planes) and per full call (image to planes, blend, planes back to integers).
public func benchmarkBlend(background: Image, patch: LesionPatch, x: Int, y: Int, settings: BlendSettings,
                           repeats: Int) -> (image: Image, blendSeconds: Double, totalSeconds: Double, iterations: Int) {
    let planes = patch.converted(channels: background.colorChannels, bitDepth: background.bitDepth)
    let placed = PlacedPatch(planes: planes, mask: patch.mask, x: x, y: y)
    var blendTime = 0.0, totalTime = 0.0, iterations = 0
    var image = background
    for _ in 0..<max(1, repeats) {
        let start = DispatchTime.now().uptimeNanoseconds
        var target = background.colorPlanes()
        let blendStart = DispatchTime.now().uptimeNanoseconds
        iterations = blend(placed, into: &target, settings: settings).iterations
        let blendEnd = DispatchTime.now().uptimeNanoseconds
        image = background
        for c in target.indices { image.setChannel(c, from: target[c], truncate: settings.openCVCompatible) }
        let end = DispatchTime.now().uptimeNanoseconds
        blendTime += Double(blendEnd - blendStart) * 1e-9
        totalTime += Double(end - start) * 1e-9
    }
    let n = Double(max(1, repeats))
    return (image, blendTime / n, totalTime / n, iterations)
}
