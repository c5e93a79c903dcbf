import CZlib
import Core

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

/// gzip-compresses `input` (RFC 1952, zlib level 6) for .nii.gz output.
public func gzipCompress(_ input: [UInt8], path: String) throws -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 16 selects the gzip wrapper; memLevel 8 is zlib's default.
    guard deflateInit2_(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                        zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw MedSynthError(file: path, "cannot initialise zlib")
    }
    defer { deflateEnd(&stream) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    var source = input
    try source.withUnsafeMutableBufferPointer { inBuffer in
        var offset = 0
        while true {
            let take = min(inBuffer.count - offset, Int(UInt32.max / 2))
            stream.next_in = inBuffer.baseAddress.map { $0 + offset }
            stream.avail_in = UInt32(take)
            offset += take
            let flush = offset == inBuffer.count ? Z_FINISH : Z_NO_FLUSH
            var status: Int32 = Z_OK
            repeat {
                let produced = chunk.withUnsafeMutableBufferPointer { out -> Int in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    status = deflate(&stream, flush)
                    return out.count - Int(stream.avail_out)
                }
                if status == Z_STREAM_ERROR { throw MedSynthError(file: path, "zlib deflate failed") }
                output.append(contentsOf: chunk[0..<produced])
            } while stream.avail_out == 0
            if flush == Z_FINISH {
                guard status == Z_STREAM_END else { throw MedSynthError(file: path, "zlib deflate did not finish") }
                return
            }
        }
    }
    return output
}
