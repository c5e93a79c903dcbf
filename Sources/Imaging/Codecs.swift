import CImageCodecs
import Core
import Foundation
import MedicalFormats
#if canImport(Glibc)
import Glibc
#endif

// PNG and JPEG through the C shim (Sources/CImageCodecs), which owns libpng's and libjpeg's
// setjmp/longjmp error paths. The format is chosen by the file's first bytes, never its name.

// MARK: - Formats

/// The image file formats medsynth reads and writes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case png = "PNG"
    case jpeg = "JPEG"

    /// The format whose signature starts `bytes`, or nil.
    public static func sniff<C: Collection>(_ bytes: C) -> ImageFormat? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF { return .jpeg }
        return nil
    }

    /// The format an output path asks for by its extension (`.png`, `.jpg`, `.jpeg`), or nil.
    public static func forExtension(of url: URL) -> ImageFormat? {
        switch url.pathExtension.lowercased() {
        case "png": return .png
        case "jpg", "jpeg": return .jpeg
        default: return nil
        }
    }

    /// The usual file extension, without the dot.
    public var fileExtension: String { self == .png ? "png" : "jpg" }
}

// MARK: - Reading

/// Reads a whole file. Refuses anything that is not a regular file (a folder, a FIFO that would
/// block) and reports the system's reason for an unreadable path.
public func readFileBytes(at url: URL) throws -> [UInt8] {
    let path = url.path
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw MedSynthError(file: path, "cannot read: \(String(cString: strerror(errno)))")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
        throw MedSynthError(file: path, (info.st_mode & S_IFMT) == S_IFDIR ? "is a folder, not a file" : "not a regular file")
    }
    guard let file = fopen(path, "rb") else {
        throw MedSynthError(file: path, "cannot read: \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    let expected = Int(info.st_size)
    var bytes = [UInt8](repeating: 0, count: expected)
    let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, expected, file) }
    if got != expected {
        throw MedSynthError(file: path, "cannot read: got \(got) of \(expected) bytes")
    }
    return bytes
}

/// Reads a PNG or JPEG file (chosen by content). Errors name the file and the reason: empty,
/// not an image, truncated or corrupt, CMYK JPEG, a side above `maxSide` pixels, or more than
/// `maxPixels` pixels (default `DecodeLimits.maxImagePixels`).
public func readImage(at url: URL, maxSide: Int = 16384, maxPixels: Int = DecodeLimits.maxImagePixels) throws -> Image {
    try decodeImage(readFileBytes(at: url), name: url.path, maxSide: maxSide, maxPixels: maxPixels)
}

/// Decodes PNG or JPEG bytes (chosen by content); `name` is used in error messages.
public func decodeImage(_ bytes: [UInt8], name: String, maxSide: Int = 16384,
                        maxPixels: Int = DecodeLimits.maxImagePixels) throws -> Image {
    if bytes.isEmpty { throw MedSynthError(file: name, "file is empty (0 bytes)") }
    switch ImageFormat.sniff(bytes) {
    case .png: return try decodePNG(bytes, name: name, maxSide: maxSide, maxPixels: maxPixels)
    case .jpeg: return try decodeJPEG(bytes, name: name, maxSide: maxSide, maxPixels: maxPixels)
    case nil: throw MedSynthError(file: name, "not a PNG or JPEG image (unrecognised file signature)")
    }
}

/// Decodes PNG bytes: 8/16-bit gray, gray+alpha, RGB, RGBA, palette (to RGB or RGBA),
/// low-bit gray (to 8-bit), interlaced or not. 16-bit data stays 16-bit.
public func decodePNG(_ bytes: [UInt8], name: String, maxSide: Int = 16384,
                      maxPixels: Int = DecodeLimits.maxImagePixels) throws -> Image {
    try callDecoder(bytes, name: name, maxSide: maxSide, maxPixels: maxPixels, format: .png)
}

/// Decodes JPEG bytes (baseline or progressive, 8-bit gray or colour) to a gray or RGB image.
/// Also used for JPEG fragments inside other containers; MedicalFormats can call the same C
/// entry point, `cic_decode_jpeg`, directly.
public func decodeJPEG(_ bytes: [UInt8], name: String, maxSide: Int = 16384,
                       maxPixels: Int = DecodeLimits.maxImagePixels) throws -> Image {
    try callDecoder(bytes, name: name, maxSide: maxSide, maxPixels: maxPixels, format: .jpeg)
}

/// Reads the header, checks the limits, then decodes straight into the image's own sample array
/// (no second copy of a large image).
private func callDecoder(_ bytes: [UInt8], name: String, maxSide: Int, maxPixels: Int, format: ImageFormat) throws -> Image {
    let header = try probeImage(bytes, name: name)
    guard header.format == format else { throw MedSynthError(file: name, "not a \(format.rawValue) image") }
    guard header.width <= maxSide, header.height <= maxSide else {
        throw MedSynthError(file: name, "image is \(header.width)x\(header.height), above the limit of \(maxSide) pixels per side")
    }
    guard header.width >= 1, header.height >= 1, header.width <= maxPixels / header.height else {
        throw MedSynthError(file: name, "image is \(header.width)x\(header.height), above the limit of \(maxPixels) pixels per image (--max-image-pixels / MEDSYNTH_MAX_IMAGE_PIXELS)")
    }
    let limit = Int32(clamping: max(1, maxSide))
    let count = header.width * header.height * header.channels
    var decoded = CICImage()
    var message = [CChar](repeating: 0, count: Int(CIC_ERROR_SIZE))
    var status: Int32 = 0
    let samples = [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
        status = bytes.withUnsafeBufferPointer { data in
            message.withUnsafeMutableBufferPointer { error in
                format == .png
                    ? cic_decode_png(data.baseAddress, data.count, limit, Int64(maxPixels), buffer.baseAddress, count,
                                     &decoded, error.baseAddress, error.count)
                    : cic_decode_jpeg(data.baseAddress, data.count, limit, Int64(maxPixels), buffer.baseAddress, count,
                                      &decoded, error.baseAddress, error.count)
            }
        }
        // On failure the buffer may be partly written; the array is dropped below either way.
        initialized = status == 0 ? count : 0
    }
    guard status == 0 else {
        let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw MedSynthError(file: name, decodeFailureMessage(reason, format: format))
    }
    guard Int(decoded.width) * Int(decoded.height) * Int(decoded.channels) == count else {
        throw MedSynthError(file: name, "corrupt \(format.rawValue): decoded \(decoded.width)x\(decoded.height)x\(decoded.channels), header says \(header.width)x\(header.height)x\(header.channels)")
    }
    return Image(width: Int(decoded.width), height: Int(decoded.height), channels: Int(decoded.channels),
                 bitDepth: Int(decoded.bit_depth), samples: samples)
}

/// Prefixes library messages with the format so "Not a JPEG file" reads as a reason, but keeps
/// our own already-clear messages (limits, truncation, CMYK) as they are.
private func decodeFailureMessage(_ reason: String, format: ImageFormat) -> String {
    let plain = ["file is truncated", "image is ", "CMYK JPEG", "not a PNG", "not a JPEG", "out of memory", "corrupt ", "sample buffer"]
    if plain.contains(where: { reason.hasPrefix($0) }) { return reason }
    // libjpeg says "Unsupported JPEG process" for valid files it cannot read (lossless, 12-bit).
    if reason.hasPrefix("Unsupported") { return "unsupported \(format.rawValue): \(reason)" }
    return "corrupt \(format.rawValue): \(reason)"
}

/// Width, height, channels and bit depth from the header alone, without decoding pixels.
public struct ImageHeader: Equatable, Sendable {
    public let format: ImageFormat
    public let width: Int
    public let height: Int
    public let channels: Int
    public let bitDepth: Int
}

/// Reads only the header of PNG or JPEG bytes.
public func probeImage(_ bytes: [UInt8], name: String) throws -> ImageHeader {
    if bytes.isEmpty { throw MedSynthError(file: name, "file is empty (0 bytes)") }
    guard let format = ImageFormat.sniff(bytes) else {
        throw MedSynthError(file: name, "not a PNG or JPEG image (unrecognised file signature)")
    }
    var header = CICImage()
    var message = [CChar](repeating: 0, count: Int(CIC_ERROR_SIZE))
    let status = bytes.withUnsafeBufferPointer { data in
        message.withUnsafeMutableBufferPointer { error in
            format == .png
                ? cic_probe_png(data.baseAddress, data.count, &header, error.baseAddress, error.count)
                : cic_probe_jpeg(data.baseAddress, data.count, &header, error.baseAddress, error.count)
        }
    }
    guard status == 0 else {
        let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw MedSynthError(file: name, decodeFailureMessage(reason, format: format))
    }
    return ImageHeader(format: format, width: Int(header.width), height: Int(header.height),
                       channels: Int(header.channels), bitDepth: Int(header.bit_depth))
}

// MARK: - Writing

/// Encodes an image as PNG: gray, gray+alpha, RGB or RGBA at 8 or 16 bits.
/// `compression` is zlib's level 0-9; `interlaced` writes Adam7.
public func encodePNG(_ image: Image, compression: Int = 6, interlaced: Bool = false) throws -> [UInt8] {
    try runEncoder(image, name: "PNG") { samples, output, size, error, errorSize in
        cic_encode_png(samples, Int32(clamping: image.width), Int32(clamping: image.height),
                       Int32(image.channels), Int32(image.bitDepth), Int32(clamping: compression),
                       interlaced ? 1 : 0, output, size, error, errorSize)
    }
}

/// Runs one of the C shim's encoders on the image's samples and returns a copy of the bytes it
/// made; the shim's message becomes the error.
private func runEncoder(_ image: Image, name: String,
                        _ encode: (UnsafePointer<UInt16>?, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                                   UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>?, Int) -> Int32) throws -> [UInt8] {
    var output: UnsafeMutablePointer<UInt8>? = nil
    var size = 0
    var message = [CChar](repeating: 0, count: Int(CIC_ERROR_SIZE))
    let status = image.samples.withUnsafeBufferPointer { samples in
        message.withUnsafeMutableBufferPointer { error in encode(samples.baseAddress, &output, &size, error.baseAddress, error.count) }
    }
    guard status == 0, let bytes = output else {
        let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw MedSynthError("\(name) encoder: \(reason)")
    }
    defer { cic_free(bytes) }
    return Array(UnsafeBufferPointer(start: bytes, count: size))
}

/// Encodes an 8-bit gray or RGB image as baseline JPEG at `quality` 1-100.
/// A 16-bit image or one with alpha is refused: convert it first (`converted(bitDepth: 8)`,
/// `converted(channels:)`), so that no precision is dropped silently.
public func encodeJPEG(_ image: Image, quality: Int = 92) throws -> [UInt8] {
    guard image.bitDepth == 8 else {
        throw MedSynthError("JPEG encoder: JPEG holds 8-bit samples; convert this 16-bit image with converted(bitDepth: 8) first")
    }
    guard image.channels == 1 || image.channels == 3 else {
        throw MedSynthError("JPEG encoder: JPEG holds gray or RGB; this image has \(image.channels) channels (drop alpha with converted(channels:) first)")
    }
    return try runEncoder(image, name: "JPEG") { samples, output, size, error, errorSize in
        cic_encode_jpeg(samples, Int32(clamping: image.width), Int32(clamping: image.height),
                        Int32(image.channels), Int32(clamping: quality), output, size, error, errorSize)
    }
}

/// Writes an image as PNG, atomically (temporary file in the same folder, then rename).
public func writePNG(_ image: Image, to url: URL) throws {
    let bytes: [UInt8]
    do { bytes = try encodePNG(image) } catch let error as MedSynthError {
        throw MedSynthError(file: url.path, error.message)
    }
    try writeAtomically(bytes, to: url)
}

/// Writes an 8-bit gray or RGB image as JPEG at `quality` 1-100, atomically.
public func writeJPEG(_ image: Image, to url: URL, quality: Int = 92) throws {
    let bytes: [UInt8]
    do { bytes = try encodeJPEG(image, quality: quality) } catch let error as MedSynthError {
        throw MedSynthError(file: url.path, error.message)
    }
    try writeAtomically(bytes, to: url)
}
