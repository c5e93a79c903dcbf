import CZlib
import Core
import Foundation

// MARK: - Bounded zlib inflate/deflate
//
// Compressed input can claim anything (deflate expands up to ~1032:1), so output is grown in
// chunks as zlib actually produces bytes and never past a caller-given bound: a hostile .nii.gz
// cannot make us allocate more than the caller allowed.

/// Stream framing accepted by `inflateBounded`.
enum InflateFormat {
    /// gzip (RFC 1952, multi-member allowed) or zlib (RFC 1950), detected from the header.
    case gzipOrZlib
    /// Raw deflate (RFC 1951), as in DICOM's Deflated Explicit VR Little Endian.
    case raw
}

/// Inflates `input` into at most `maxOutput` bytes.
/// - Parameter stopAtLimit: when true, output beyond `maxOutput` is simply not produced (the caller
///   needs only a prefix); when false, more output than `maxOutput` is an error.
/// - Returns: the inflated bytes; shorter than `maxOutput` when the stream ends first.
/// - Parameter prefix: bytes the result starts with (not counted in `maxOutput`), so a caller that
///   needs header + inflated data gets them without a second copy.
/// - Parameter expectedSize: inflated bytes the caller expects; reserved up front (capped by
///   `maxOutput`), so the output does not grow by doubling.
func inflateBounded(_ input: ArraySlice<UInt8>, format: InflateFormat, maxOutput: Int,
                    stopAtLimit: Bool = false, prefix: [UInt8] = [], expectedSize: Int? = nil, path: String) throws -> [UInt8] {
    let what = format == .raw ? "deflate" : "gzip"
    var stream = z_stream()
    let windowBits: Int32 = format == .raw ? -15 : 15 + 32
    guard inflateInit2_(&stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw MedSynthError(file: path, "cannot initialise zlib")
    }
    defer { inflateEnd(&stream) }

    var output = prefix
    let base = prefix.count
    if let expectedSize { output.reserveCapacity(base + min(max(expectedSize, 0), maxOutput)) }
    let input = ContiguousArray(input)
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    return try input.withUnsafeBufferPointer { inBuffer -> [UInt8] in
        guard let inBase = inBuffer.baseAddress, inBuffer.count > 0 else {
            throw MedSynthError(file: path, "\(what) data is empty")
        }
        stream.next_in = UnsafeMutablePointer(mutating: inBase)
        stream.avail_in = UInt32(clamping: inBuffer.count)
        while true {
            // Never ask zlib for more than the remaining allowance (+1 to detect overflow).
            let allowance = maxOutput - (output.count - base) + (stopAtLimit ? 0 : 1)
            if allowance <= 0 { return output }
            let want = min(chunk.count, allowance)
            let (status, produced) = chunk.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(want)
                let status = zlibInflate(&stream)
                return (status, want - Int(stream.avail_out))
            }
            if output.count - base + produced > maxOutput {
                throw MedSynthError(file: path, "\(what) data inflates to more than the limit of \(maxOutput) bytes")
            }
            output.append(contentsOf: chunk[0..<produced])
            let consumed = UnsafePointer(stream.next_in!) - inBase
            switch status {
            case Z_OK:
                // zlib's avail_in is 32-bit; very large inputs are fed in slices.
                if stream.avail_in == 0 && consumed < inBuffer.count {
                    stream.next_in = UnsafeMutablePointer(mutating: inBase + consumed)
                    stream.avail_in = UInt32(clamping: inBuffer.count - consumed)
                }
            case Z_STREAM_END:
                // gzip files may hold several members back to back (RFC 1952 §2.2).
                let rest = inBuffer.count - consumed
                if format == .gzipOrZlib && rest >= 2 && inBase[consumed] == 0x1F && inBase[consumed + 1] == 0x8B {
                    inflateReset(&stream)
                    stream.next_in = UnsafeMutablePointer(mutating: inBase + consumed)
                    stream.avail_in = UInt32(clamping: rest)
                    continue
                }
                return output
            case Z_BUF_ERROR:
                if produced == 0 && stream.avail_in == 0 {
                    throw MedSynthError(file: path, "\(what) data is truncated (stream ends after \(output.count - base) bytes of output)")
                }
            case Z_NEED_DICT:
                throw MedSynthError(file: path, "\(what) data needs a preset dictionary")
            default:
                let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                throw MedSynthError(file: path, "\(what) data is corrupt: \(message)")
            }
        }
    }
}

/// zlib's `inflate`, renamed so it does not clash with our own names.
@inline(__always)
private func zlibInflate(_ stream: UnsafeMutablePointer<z_stream>) -> Int32 {
    inflate(stream, Z_NO_FLUSH)
}

/// A gzip deflater (RFC 1952, zlib level 6) fed in pieces: the one compression loop of the
/// in-memory and the file-to-file .nii.gz writers.
final class GzipDeflater {
    private var stream = z_stream()
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)
    private let path: String

    init(path: String) throws {
        self.path = path
        // windowBits 15 + 16 selects the gzip wrapper; memLevel 8 is zlib's default.
        guard deflateInit2_(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw MedSynthError(file: path, "cannot initialise zlib")
        }
    }
    deinit { deflateEnd(&stream) }

    /// Compresses `input` (at most UInt32.max bytes); `finish` ends the stream. Every compressed
    /// piece goes to `sink`.
    func feed(_ input: UnsafeMutableBufferPointer<UInt8>, finish: Bool, sink: (ArraySlice<UInt8>) throws -> Void) throws {
        let flush = finish ? Z_FINISH : Z_NO_FLUSH
        stream.next_in = input.baseAddress
        stream.avail_in = UInt32(input.count)
        var status: Int32 = Z_OK
        repeat {
            let produced = chunk.withUnsafeMutableBufferPointer { out -> Int in
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                status = deflate(&stream, flush)
                return out.count - Int(stream.avail_out)
            }
            if status == Z_STREAM_ERROR { throw MedSynthError(file: path, "zlib deflate failed") }
            try sink(chunk[0..<produced])
        } while stream.avail_out == 0
        if finish, status != Z_STREAM_END { throw MedSynthError(file: path, "zlib deflate did not finish") }
    }
}

/// gzip-compresses `input` (RFC 1952, zlib level 6) for .nii.gz output.
public func gzipCompress(_ input: [UInt8], path: String) throws -> [UInt8] {
    let deflater = try GzipDeflater(path: path)
    var output: [UInt8] = []
    var source = input
    try source.withUnsafeMutableBufferPointer { all in
        var offset = 0
        repeat {
            let take = min(all.count - offset, Int(UInt32.max / 2))
            let piece = UnsafeMutableBufferPointer(rebasing: all[offset..<offset + take])
            offset += take
            try deflater.feed(piece, finish: offset == all.count) { output.append(contentsOf: $0) }
        } while offset < all.count
    }
    return output
}

// MARK: - Streaming

/// Inflates a gzip/zlib (or raw deflate) stream piece by piece into caller buffers, so a volume can
/// be read plane by plane without its whole inflated size ever being in memory (a 500 KB .nii.gz
/// can hold 512 MB of voxels, a 650 KB deflated DICOM 512 MB of pixel data). Reading again from the
/// start means making a new inflater.
final class StreamingInflater {
    private let input: [UInt8]
    private var inputOffset = 0
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private let path: String
    private let what: String
    private let format: InflateFormat
    /// Bytes produced so far.
    private(set) var position = 0
    /// True once the stream has ended: no more bytes will come.
    private(set) var ended = false

    init(_ input: [UInt8], format: InflateFormat = .gzipOrZlib, path: String) throws {
        what = format == .raw ? "deflate" : "gzip"
        guard !input.isEmpty else { throw MedSynthError(file: path, "\(what) data is empty") }
        self.input = input
        self.path = path
        self.format = format
        stream.initialize(to: z_stream())
        guard inflateInit2_(stream, format == .raw ? -15 : 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deallocate()
            throw MedSynthError(file: path, "cannot initialise zlib")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Fills `output` completely with the next inflated bytes; throws if the stream ends first.
    func read(into output: UnsafeMutableRawBufferPointer) throws {
        if try readSome(into: output) < output.count {
            throw MedSynthError(file: path, "\(what) data is truncated (stream ends after \(position) bytes of output)")
        }
    }

    /// Fills `output` with the next inflated bytes, fewer only where the stream ends; returns how many.
    func readSome(into output: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        try input.withUnsafeBufferPointer { inBuffer in
            let inBase = inBuffer.baseAddress!
            while filled < output.count && !ended {
                stream.pointee.next_in = UnsafeMutablePointer(mutating: inBase + inputOffset)
                stream.pointee.avail_in = UInt32(clamping: inBuffer.count - inputOffset)
                let want = UInt32(clamping: output.count - filled)
                stream.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self) + filled
                stream.pointee.avail_out = want
                let status = zlibInflate(stream)
                let produced = Int(want - stream.pointee.avail_out)
                filled += produced
                position += produced
                inputOffset = UnsafePointer(stream.pointee.next_in!) - inBase
                switch status {
                case Z_OK:
                    break
                case Z_STREAM_END:
                    // gzip files may hold several members back to back (RFC 1952 §2.2).
                    let rest = inBuffer.count - inputOffset
                    if format == .gzipOrZlib && rest >= 2 && inBase[inputOffset] == 0x1F && inBase[inputOffset + 1] == 0x8B {
                        inflateReset(stream)
                    } else {
                        ended = true
                    }
                case Z_BUF_ERROR:
                    // All input used and no end of stream: the stream is cut short.
                    if produced == 0 && inputOffset == inBuffer.count {
                        throw MedSynthError(file: path, "\(what) data is truncated (stream ends after \(position) bytes of output)")
                    }
                case Z_NEED_DICT:
                    throw MedSynthError(file: path, "\(what) data needs a preset dictionary")
                default:
                    let message = stream.pointee.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw MedSynthError(file: path, "\(what) data is corrupt: \(message)")
                }
            }
        }
        return filled
    }

    /// Inflates and drops the next `count` bytes.
    func skip(_ count: Int, scratch: inout [UInt8]) throws {
        var left = count
        if scratch.isEmpty { scratch = [UInt8](repeating: 0, count: 1 << 16) }
        while left > 0 {
            let take = min(left, scratch.count)
            try scratch.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<take])) }
            left -= take
        }
    }
}

/// gzip-compresses the file at `source` into `destination` (RFC 1952, zlib level 6) in 1 MiB
/// pieces, so a .nii.gz of any size is written with bounded memory. `path` names the output in errors.
public func gzipCompressFile(source: String, destination: String, path: String) throws {
    guard let input = fopen(source, "rb") else { throw MedSynthError(file: path, "cannot read the temporary file: \(String(cString: strerror(errno)))") }
    defer { fclose(input) }
    guard let output = fopen(destination, "wb") else { throw MedSynthError(file: path, "cannot write: \(String(cString: strerror(errno)))") }
    var closed = false
    defer { if !closed { fclose(output) } }
    let deflater = try GzipDeflater(path: path)
    var piece = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = piece.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, input) }
        if count < piece.count && ferror(input) != 0 { throw MedSynthError(file: path, "cannot read the temporary file") }
        let finish = count < piece.count
        try piece.withUnsafeMutableBufferPointer { all in
            try deflater.feed(UnsafeMutableBufferPointer(rebasing: all[0..<count]), finish: finish) { compressed in
                let written = compressed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, output) }
                guard written == compressed.count else { throw MedSynthError(file: path, "cannot write: \(String(cString: strerror(errno)))") }
            }
        }
        if finish { break }
    }
    closed = true
    guard fflush(output) == 0, fclose(output) == 0 else { throw MedSynthError(file: path, "cannot write: \(String(cString: strerror(errno)))") }
}
