import Dispatch
import Core
import Foundation
import MedicalFormats

// What `medsynth info` reports: one image file (PNG, JPEG, DICOM, NIfTI), or a dataset folder.
// DICOM and NIfTI images come from `decodeImages`, the path datasets read them through.

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
    var range = ValueRange()
    range.add(image)
    let (minimum, maximum) = (range.minimum, range.maximum)
    return ImageFileInfo(url: url, format: ImageFormat.sniff(bytes)!, fileSize: bytes.count,
                         image: image, minimum: minimum, maximum: maximum)
}

/// Per-channel minimum and maximum sample over images, accumulated one image at a time.
struct ValueRange {
    var minimum: [Int] = [], maximum: [Int] = []

    mutating func add(_ image: Image) {
        let channels = image.channels
        if minimum.isEmpty {
            minimum = [Int](repeating: Int.max, count: channels)
            maximum = [Int](repeating: Int.min, count: channels)
        }
        guard channels == minimum.count else { return }
        image.samples.withUnsafeBufferPointer { samples in
            for c in 0..<channels {
                var lo = UInt16.max, hi = UInt16.min
                for i in stride(from: c, to: samples.count, by: channels) {
                    lo = min(lo, samples[i]); hi = max(hi, samples[i])
                }
                minimum[c] = min(minimum[c], Int(lo)); maximum[c] = max(maximum[c], Int(hi))
            }
        }
    }
}

// MARK: - One DICOM file or NIfTI volume

/// Header facts of a DICOM file or NIfTI volume and the images it gives with the read options.
public struct MedicalFileInfo: Sendable {
    public let url: URL
    /// "DICOM" or "NIfTI-1".
    public let kind: String
    public let fileSize: Int
    /// Modality (0008,0060) of a DICOM file; nil for NIfTI, which does not record one.
    public let modality: String?
    /// Frames (DICOM) or slices along the chosen axis times volumes (NIfTI) in the file.
    public let frames: Int
    /// Header lines: encoding, bit depth, rescale, the file's own window.
    public let details: [String]
    /// What `options.window` does with this file, in words.
    public let windowUsed: String
    public let options: MedicalReadOptions
    /// Number of images read with `options` (frames or selected slices).
    public let imageCount: Int
    /// Size, channels and depth of the first of them.
    public let firstImage: DatasetSummary.Layout?
    public let minimum: [Int]
    public let maximum: [Int]

    public var description: String {
        var head = "\(url.path): \(kind)"
        head += ", modality \(modality ?? (kind == "DICOM" ? "not recorded" : "not recorded (NIfTI has none)"))"
        var lines = [head + ", \(fileSize) bytes"]
        lines += details.map { "  " + $0 }
        lines.append("  window: \(windowUsed)")
        var read = "  read as \(imageCount) image\(imageCount == 1 ? "" : "s") (of \(frames) \(kind == "DICOM" ? "frame" : "slice")\(frames == 1 ? "" : "s"))"
        if kind != "DICOM" { read += " along \(options.axis.rawValue)" }
        if let first = firstImage {
            let names = channelNames(first.channels)
            read += ", \(first.width)x\(first.height), \(first.channels) channel\(first.channels == 1 ? "" : "s") (\(names.joined(separator: "+"))), \(first.bitDepth)-bit"
            lines.append(read)
            let ranges = names.indices.map { "\(names[$0]) \(minimum[$0])...\(maximum[$0])" }
            lines.append("  value range: \(ranges.joined(separator: ", ")) (of 0...\(first.bitDepth == 16 ? 65535 : 255))")
        } else {
            lines.append(read)
        }
        return lines.joined(separator: "\n")
    }
}

/// A number without a trailing ".0" when it is an integer.
private func number(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%g", value)
}

/// `window` in words for a file whose own window is `fileWindow` (center, width).
private func describeWindow(_ window: MedicalWindow, fileWindow: (center: Double, width: Double)?, fileWindowName: String) -> String {
    switch window {
    case .fileDefault:
        if let w = fileWindow, w.width >= 1, w.center.isFinite, w.width.isFinite {
            return "the file's (\(fileWindowName)): center \(number(w.center)), width \(number(w.width))"
        }
        return "the data range (the file has no window)"
    case .preset(let preset):
        return "preset \(preset.rawValue): center \(number(preset.center)), width \(number(preset.width))"
    case .explicit(let center, let width):
        return "center \(number(center)), width \(number(width))"
    case .fullRange:
        return "the data range (minimum to maximum)"
    case .stored:
        return "none: stored values kept exactly"
    }
}

/// Reads a DICOM file or NIfTI volume with `options` (as datasets do) and collects its header facts.
public func medicalFileInfo(at url: URL, options: MedicalReadOptions = .init()) throws -> MedicalFileInfo {
    let bytes = try readFileBytes(at: url)
    let kind = medicalFileKind(bytes: bytes, name: url.path)
    guard kind != .image else { throw MedSynthError(file: url.path, "not a DICOM file or NIfTI volume") }
    // Images are looked at one at a time: a volume's slices are never all in memory.
    let images = try openImages(bytes, name: url.path, options: options)
    var range = ValueRange()
    var firstImage: DatasetSummary.Layout? = nil
    try images.forEach { image in
        if firstImage == nil { firstImage = .init(width: image.width, height: image.height, channels: image.channels, bitDepth: image.bitDepth) }
        range.add(image)
    }
    let (minimum, maximum) = (range.minimum, range.maximum)
    var details: [String] = []
    if kind == .dicom {
        guard let file = images.dicomFile else { throw MedSynthError(file: url.path, "not a DICOM file") }
        let info = try file.imageInfo()
        let modality = file.string(.modality).flatMap { $0.isEmpty ? nil : $0 }
        details.append("\(info.columns)x\(info.rows), \(info.numberOfFrames) frame\(info.numberOfFrames == 1 ? "" : "s"), "
            + "\(info.samplesPerPixel) sample\(info.samplesPerPixel == 1 ? "" : "s") per pixel (\(info.photometric)), "
            + "\(info.bitsStored) of \(info.bitsAllocated) bits stored, \(info.isSigned ? "signed" : "unsigned")")
        details.append("transfer syntax: \(file.transferSyntax.name)")
        details.append("rescale: slope \(number(info.rescaleSlope)), intercept \(number(info.rescaleIntercept))")
        details.append("window in file: " + (info.window.map { "center \(number($0.center)), width \(number($0.width))" } ?? "none"))
        return MedicalFileInfo(url: url, kind: "DICOM", fileSize: bytes.count, modality: modality, frames: info.numberOfFrames,
                               details: details, windowUsed: describeWindow(options.window, fileWindow: info.window, fileWindowName: "Window Center/Width"),
                               options: options, imageCount: images.count, firstImage: firstImage, minimum: minimum, maximum: maximum)
    }
    guard case .nifti(let volume, _) = images.source else { throw MedSynthError(file: url.path, "not a NIfTI volume") }
    let h = volume.header
    let gzipped = bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    details.append("\(h.nx)x\(h.ny)x\(h.nz) voxels, \(h.volumes) volume\(h.volumes == 1 ? "" : "s"), \(h.dataType) "
        + "(\(h.dataType.bytes * 8) bits)\(gzipped ? ", gzip-compressed" : ""), voxel size "
        + h.voxelSize.map { number(Double($0)) }.joined(separator: "x"))
    details.append("scaling: slope \(number(h.slope)), intercept \(number(h.intercept))")
    details.append("window in file (cal_min...cal_max): " + (h.calMax > h.calMin ? "\(number(h.calMin))...\(number(h.calMax))" : "none"))
    let frames = volume.sliceCount(options.axis) * (options.volume == nil ? h.volumes : 1)
    return MedicalFileInfo(url: url, kind: "NIfTI-1", fileSize: bytes.count, modality: nil, frames: frames, details: details,
                           windowUsed: describeWindow(options.window, fileWindow: volume.encoding.fileWindow, fileWindowName: "cal_min...cal_max"),
                           options: options, imageCount: images.count, firstImage: firstImage, minimum: minimum, maximum: maximum)
}

/// `info` for any single file: PNG/JPEG facts, or DICOM/NIfTI facts read with `medical`.
public func describeFile(at url: URL, maxSide: Int = 16384, medical: MedicalReadOptions = .init()) throws -> String {
    let head = try readFileHead(url, count: 348)
    if medicalFileKind(bytes: head, name: url.path) == .image {
        return try imageFileInfo(at: url, maxSide: maxSide).description
    }
    return try medicalFileInfo(at: url, options: medical).description
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
    /// Files that decoded (a DICOM or NIfTI file may give several images).
    public let fileCount: Int
    /// DICOM files per modality ("DICOM CT", "DICOM (no modality)") and "NIfTI-1" volumes, with counts.
    public let medicalFiles: [(kind: String, count: Int)]

    public var imageCount: Int { countsPerClass.reduce(0, +) }

    /// Human-readable report, one fact per line.
    public var description: String {
        var first = "\(root.path): \(imageCount) image\(imageCount == 1 ? "" : "s") in \(classNames.count) class\(classNames.count == 1 ? "" : "es")"
        if fileCount != imageCount { first += " (from \(fileCount) file\(fileCount == 1 ? "" : "s"))" }
        var lines = [first]
        for (name, count) in zip(classNames, countsPerClass) { lines.append("  class \(name): \(count)") }
        if !medicalFiles.isEmpty {
            lines.append("medical files: " + medicalFiles.map { "\($0.kind): \($0.count)" }.joined(separator: ", "))
        }
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
/// so truncated or corrupt files are found and listed. Decoding runs on all cores. DICOM and
/// NIfTI files are read with `medical` and count one image per frame or selected slice.
public func summarizeFolder(_ url: URL, maxSide: Int = 16384, medical: MedicalReadOptions = .init()) throws -> DatasetSummary {
    let scan = try FolderScan(root: url)
    let entries = scan.entries
    /// What one file gave: its images' layouts and, for medical files, its kind.
    struct Decoded { var layouts: [DatasetSummary.Layout]; var kind: String? }
    var results = [Result<Decoded, MedSynthError>?](repeating: nil, count: entries.count)
    let workers = max(1, min(entries.count, AvailableProcessors.count))
    results.withUnsafeMutableBufferPointer { results in
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for index in stride(from: worker, to: entries.count, by: workers) {
                do {
                    let file = entries[index].url
                    let bytes = try readFileBytes(at: file)
                    let kind = medicalFileKind(bytes: bytes, name: file.lastPathComponent)
                    var layouts: [DatasetSummary.Layout] = []
                    let images = kind == .image ? MedicalImages(source: .decoded([try decodeImage(bytes, name: file.path, maxSide: maxSide)]), values: nil)
                        : try openImages(bytes, name: file.path, options: medical)
                    // One image at a time: a volume's slices are never all in memory.
                    try images.forEach { layouts.append(.init(width: $0.width, height: $0.height, channels: $0.channels, bitDepth: $0.bitDepth)) }
                    var label: String? = nil
                    if kind == .dicom {
                        let modality = images.dicomFile?.string(.modality).flatMap { $0.isEmpty ? nil : $0 }
                        label = "DICOM " + (modality ?? "(no modality)")
                    } else if kind == .nifti {
                        label = "NIfTI-1"
                    }
                    results[index] = .success(Decoded(layouts: layouts, kind: label))
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
    var fileCount = 0
    var kinds: [String: Int] = [:]
    for (entry, result) in zip(entries, results) {
        switch result! {
        case .success(let decoded):
            fileCount += 1
            if let kind = decoded.kind { kinds[kind, default: 0] += 1 }
            counts[entry.classIndex] += decoded.layouts.count
            for layout in decoded.layouts { layoutCounts[layout, default: 0] += 1 }
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
                          layouts: layouts, unreadable: unreadable, fileCount: fileCount,
                          medicalFiles: kinds.sorted { $0.key < $1.key }.map { (kind: $0.key, count: $0.value) })
}
