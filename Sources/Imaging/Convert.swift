import Dispatch
import Core
import Foundation

// `medsynth convert`: one file to one file, or a folder tree to a mirrored folder tree.

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

    public init(size: Int? = nil, channels: Int? = nil, bitDepth: Int? = nil, quality: Int = 92, format: ImageFormat? = nil) {
        self.size = size
        self.channels = channels
        self.bitDepth = bitDepth
        self.quality = quality
        self.format = format
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
public func convertImages(from input: URL, to output: URL, options: ConvertOptions) throws -> ConvertReport {
    try options.validate()
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: input.path, isDirectory: &isFolder) else {
        throw MedSynthError(file: input.path, "no such file or folder")
    }
    if !isFolder.boolValue {
        guard let format = ImageFormat.forExtension(of: output) else {
            throw MedSynthError(file: output.path, "unknown output format; use a .png, .jpg or .jpeg name")
        }
        try convertFile(input, to: output, format: format, options: options)
        return ConvertReport(written: [output], failed: [])
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
    for file in try FolderScan.allFiles(below: source) {
        if let reason = FolderScan.notAnImageReason(file) {
            report.failed.append(SkippedFile(url: file, reason: reason))
            continue
        }
        let relative = String(file.path.dropFirst(source.path.count + 1))
        guard let format = try options.format ?? ImageFormat.sniff(readFilePrefix(file)) else {
            report.failed.append(SkippedFile(url: file, reason: "not a PNG or JPEG image"))
            continue
        }
        let destination = target.appendingPathComponent(relative).deletingPathExtension().appendingPathExtension(format.fileExtension)
        if let other = claimed[destination.path] {
            report.failed.append(SkippedFile(url: file, reason: "same output name as \(other.path)"))
            continue
        }
        claimed[destination.path] = file
        jobs.append((file, destination, format))
    }
    var outcomes = [String?](repeating: nil, count: jobs.count)
    let workers = max(1, min(jobs.count, ProcessInfo.processInfo.activeProcessorCount))
    outcomes.withUnsafeMutableBufferPointer { outcomes in
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for index in stride(from: worker, to: jobs.count, by: workers) {
                let job = jobs[index]
                do {
                    try FileManager.default.createDirectory(at: job.target.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try convertFile(job.source, to: job.target, format: job.format, options: options)
                } catch let error as MedSynthError {
                    outcomes[index] = error.message
                } catch {
                    outcomes[index] = "\(job.target.path): cannot create folder (\(error.localizedDescription))"
                }
            }
        }
    }
    for (job, outcome) in zip(jobs, outcomes) {
        if let message = outcome {
            let prefix = job.source.path + ": "
            let reason = message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
            report.failed.append(SkippedFile(url: job.source, reason: reason))
        } else {
            report.written.append(job.target)
        }
    }
    report.failed.sort { $0.url.path < $1.url.path }
    return report
}

private func convertFile(_ input: URL, to output: URL, format: ImageFormat, options: ConvertOptions) throws {
    let image = try readImage(at: input)
    let converted: Image
    do { converted = try applyConvertOptions(image, options, format: format) } catch let error as MedSynthError {
        throw MedSynthError(file: output.path, error.message)
    }
    switch format {
    case .png: try writePNG(converted, to: output)
    case .jpeg: try writeJPEG(converted, to: output, quality: options.quality)
    }
}

private func readFilePrefix(_ url: URL) throws -> [UInt8] {
    guard let handle = FileHandle(forReadingAtPath: url.path) else { throw MedSynthError(file: url.path, "cannot open file") }
    defer { try? handle.close() }
    return [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
}
