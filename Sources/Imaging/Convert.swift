import Dispatch
import Core
import Foundation
import MedicalFormats

// `medsynth convert`: one file to one file, or a folder tree to a mirrored folder tree.
// DICOM files and NIfTI volumes are read through `decodeImages` (the same path datasets use),
// windowed and sliced by `ConvertOptions.medical`; a file that gives several images (frames,
// slices) is written as NAME_0000, NAME_0001, … beside where NAME would go.

/// What `convert` changes; nil keeps the source's value.
public struct ConvertOptions: Sendable {
    /// Centre-crop to a square and resize to `size` x `size`.
    public var size: Int?
    /// 1 (gray) or 3 (RGB); alpha is dropped when set.
    public var channels: Int?
    /// 8 or 16. JPEG output is always 8-bit; asking for 16 with JPEG output is an error.
    public var bitDepth: Int?
    /// JPEG quality 1-100.
    public var quality: Int
    /// Output format for folder conversion (nil keeps each file's format). Files use the
    /// output extension instead.
    public var format: ImageFormat?
    /// How DICOM and NIfTI inputs become images (window, axis, slices, volume). Its bit depth is
    /// replaced by `bitDepth` (or 8 for JPEG output), so windowing goes straight to the output depth.
    public var medical: MedicalReadOptions

    public init(size: Int? = nil, channels: Int? = nil, bitDepth: Int? = nil, quality: Int = 92, format: ImageFormat? = nil,
                medical: MedicalReadOptions = .init()) {
        self.size = size; self.channels = channels; self.bitDepth = bitDepth
        self.quality = quality; self.format = format; self.medical = medical
    }

    /// Checks the values; errors name the option.
    public func validate() throws {
        if let size, size < 1 { throw MedSynthError("--size must be at least 1, got \(size)") }
        if let channels, channels != 1 && channels != 3 { throw MedSynthError("--channels must be 1 or 3, got \(channels)") }
        if let bitDepth, bitDepth != 8 && bitDepth != 16 { throw MedSynthError("--bit-depth must be 8 or 16, got \(bitDepth)") }
        if quality < 1 || quality > 100 { throw MedSynthError("--quality must be 1...100, got \(quality)") }
    }
}

/// What a conversion did.
public struct ConvertReport: Sendable {
    public var written: [URL] = []
    /// Files that failed or were not images, with the reason.
    public var failed: [SkippedFile] = []

    public var description: String {
        var lines = ["converted \(written.count) file\(written.count == 1 ? "" : "s")"]
        if !failed.isEmpty {
            lines.append("not converted: \(failed.count)")
            for file in failed { lines.append("  \(file.url.path): \(file.reason)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// Applies size, channel and depth options to an image, then fits it to `format`
/// (JPEG: alpha dropped, 8-bit).
public func applyConvertOptions(_ image: Image, _ options: ConvertOptions, format: ImageFormat) throws -> Image {
    var result = image
    if let size = options.size { result = result.squareResized(size) }
    if let channels = options.channels { result = result.converted(channels: channels) }
    if let depth = options.bitDepth { result = result.converted(bitDepth: depth) }
    if format == .jpeg {
        if options.bitDepth == 16 { throw MedSynthError("JPEG holds only 8-bit samples; use a .png output for --bit-depth 16") }
        if result.hasAlpha { result = result.converted(channels: result.colorChannels) }
        if result.bitDepth != 8 { result = result.converted(bitDepth: 8) }
    }
    return result
}

/// Converts `input` to `output`. A file goes to a file whose extension (.png, .jpg, .jpeg)
/// picks the format; a folder goes to a folder with the same subfolders, each image written
/// under its own name with the extension of its output format. Folder conversion runs on all
/// cores, continues past bad files and lists them in the report.
/// `threads` caps the parallel file conversions (default: all cores); `progress(done, total)` is
/// called after each file, from one thread at a time.
public func convertImages(from input: URL, to output: URL, options: ConvertOptions, threads: Int? = nil,
                          progress: @escaping (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> ConvertReport {
    try options.validate()
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: input.path, isDirectory: &isFolder) else {
        throw MedSynthError(file: input.path, "no such file or folder")
    }
    if !isFolder.boolValue {
        guard let format = ImageFormat.forExtension(of: output) else {
            throw MedSynthError(file: output.path, "unknown output format; use a .png, .jpg or .jpeg name")
        }
        let written = try convertFile(input, to: output, format: format, options: options)
        progress(1, 1)
        return ConvertReport(written: written, failed: [])
    }
    let source = input.standardizedFileURL, target = output.standardizedFileURL
    if source.path == target.path { throw MedSynthError(file: output.path, "output folder is the input folder") }
    var outputIsFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: target.path, isDirectory: &outputIsFolder), !outputIsFolder.boolValue {
        throw MedSynthError(file: output.path, "is a file; a folder converts into a folder")
    }

    // Plan every output path first, so two sources cannot write the same file.
    var report = ConvertReport()
    var jobs: [(source: URL, target: URL, format: ImageFormat)] = []
    var claimed: [String: URL] = [:]
    var walker = FolderWalker()
    walker.enter(source)
    let files = try walker.allFiles(below: source)
    report.failed += walker.skipped
    for file in files {
        if let reason = FolderScan.notAnImageReason(file) {
            report.failed.append(SkippedFile(url: file, reason: reason))
            continue
        }
        let relative = String(file.path.dropFirst(source.path.count + 1))
        let head = (try? readFileHead(file, count: 348)) ?? []
        let kind = medicalFileKind(bytes: head, name: file.lastPathComponent)
        // Medical files default to PNG, which keeps 16-bit samples.
        guard let format = options.format ?? (kind == .image ? ImageFormat.sniff(head) : .png) else {
            report.failed.append(SkippedFile(url: file, reason: "not a PNG or JPEG image"))
            continue
        }
        let destination = target.appendingPathComponent(outputStem(relative, kind: kind)).appendingPathExtension(format.fileExtension)
        if let other = claimed[destination.path] {
            report.failed.append(SkippedFile(url: file, reason: "same output name as \(other.path)"))
            continue
        }
        claimed[destination.path] = file
        jobs.append((file, destination, format))
    }
    let claimedBy = claimed
    var outcomes = [Result<[URL], MedSynthError>?](repeating: nil, count: jobs.count)
    let workers = max(1, min(jobs.count, threads ?? AvailableProcessors.count))
    let progressLock = NSLock()
    var finished = 0
    outcomes.withUnsafeMutableBufferPointer { outcomes in
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for index in stride(from: worker, to: jobs.count, by: workers) {
                let job = jobs[index]
                do {
                    try FileManager.default.createDirectory(at: job.target.deletingLastPathComponent(), withIntermediateDirectories: true)
                    // Names of the other sources' outputs: a multi-image file must not write over them.
                    let taken: (URL) -> URL? = { url in claimedBy[url.path].flatMap { $0 == job.source ? nil : $0 } }
                    outcomes[index] = .success(try convertFile(job.source, to: job.target, format: job.format, options: options, taken: taken))
                } catch let error as MedSynthError {
                    outcomes[index] = .failure(error)
                } catch {
                    outcomes[index] = .failure(MedSynthError(file: job.target.path, "cannot create folder (\(error.localizedDescription))"))
                }
                progressLock.lock()
                finished += 1
                progress(finished, jobs.count)
                progressLock.unlock()
            }
        }
    }
    for (job, outcome) in zip(jobs, outcomes) {
        switch outcome! {
        case .failure(let error):
            let message = error.message, prefix = job.source.path + ": "
            let reason = message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
            report.failed.append(SkippedFile(url: job.source, reason: reason))
        case .success(let written):
            report.written += written
        }
    }
    report.failed.sort { $0.url.path < $1.url.path }
    return report
}

/// The relative output path without extension: PNG/JPEG names lose their extension; NIfTI names
/// lose .nii/.nii.gz; DICOM names lose only .dcm/.dicom (DICOM files are often named by UIDs with
/// dots, or have no extension at all).
func outputStem(_ relative: String, kind: MedicalFileKind) -> String {
    let lower = relative.lowercased()
    switch kind {
    case .image:
        return (relative as NSString).deletingPathExtension
    case .nifti:
        for suffix in [".nii.gz", ".nii"] where lower.hasSuffix(suffix) { return String(relative.dropLast(suffix.count)) }
        return relative
    case .dicom:
        for suffix in [".dcm", ".dicom"] where lower.hasSuffix(suffix) { return String(relative.dropLast(suffix.count)) }
        return relative
    }
}

/// Output names for `count` images meant for `output`: `output` itself for one image, else
/// `STEM_0000.EXT`, `STEM_0001.EXT`, … beside it.
func numberedOutputs(_ output: URL, count: Int) -> [URL] {
    if count == 1 { return [output] }
    let stem = output.deletingPathExtension().lastPathComponent, ext = output.pathExtension
    let folder = output.deletingLastPathComponent()
    let digits = max(4, String(count - 1).count)
    return (0..<count).map { index in
        let number = String(index)
        return folder.appendingPathComponent("\(stem)_\(String(repeating: "0", count: digits - number.count))\(number)").appendingPathExtension(ext)
    }
}

/// Converts one file (PNG, JPEG, DICOM or NIfTI) and returns the files written. `taken` names the
/// source that claimed an output path, when that is another file of the same folder conversion.
private func convertFile(_ input: URL, to output: URL, format: ImageFormat, options: ConvertOptions,
                         taken: (URL) -> URL? = { _ in nil }) throws -> [URL] {
    let bytes = try readFileBytes(at: input)
    let images: MedicalImages
    if medicalFileKind(bytes: Array(bytes.prefix(348)), name: input.lastPathComponent) == .image {
        images = MedicalImages(source: .decoded([try decodeImage(bytes, name: input.path)]), values: nil)
    } else {
        var medical = options.medical
        medical.bitDepth = options.bitDepth ?? (format == .jpeg ? 8 : nil)
        images = try openImages(bytes, name: input.path, options: medical)
        if images.count == 0 { throw MedSynthError(file: input.path, "no slices selected (see --slices)") }
    }
    let outputs = numberedOutputs(output, count: images.count)
    for url in outputs { if let other = taken(url) { throw MedSynthError(file: input.path, "output \(url.lastPathComponent) is also the output of \(other.path)") } }
    // One image at a time: a volume's slices are made in batches, never all at once.
    var next = 0
    try images.forEach { image in
        let url = outputs[next]
        next += 1
        let converted: Image
        do { converted = try applyConvertOptions(image, options, format: format) } catch let error as MedSynthError {
            throw MedSynthError(file: url.path, error.message)
        }
        switch format {
        case .png: try writePNG(converted, to: url)
        case .jpeg: try writeJPEG(converted, to: url, quality: options.quality)
        }
    }
    return outputs
}
