import Core
import Foundation

// MARK: - Bounded byte reading
//
// Every reader in this module goes through `ByteReader`, which checks each read against the bytes
// that are actually left. Lengths found in files are never trusted: a length is compared with
// `remaining` before anything is sliced or allocated. Release builds use -Ounchecked, so these
// checks are the only thing standing between a hostile file and an out-of-bounds read.

/// A cursor over a byte array with explicit endianness; every read is bounds-checked and a short
/// read throws a `MedSynthError` naming the file and the offset.
struct ByteReader {
    let bytes: [UInt8]
    let path: String
    var position: Int
    var bigEndian: Bool

    init(bytes: [UInt8], path: String, position: Int = 0, bigEndian: Bool = false) {
        self.bytes = bytes
        self.path = path
        self.position = position
        self.bigEndian = bigEndian
    }

    var remaining: Int { bytes.count - position }
    var atEnd: Bool { position >= bytes.count }

    /// Throws unless `count` more bytes are available.
    func require(_ count: Int, _ what: @autoclosure () -> String) throws {
        if count < 0 || count > remaining {
            throw MedSynthError(file: path, "truncated: \(what()) needs \(count) bytes at offset \(position), only \(max(remaining, 0)) left")
        }
    }

    mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws {
        try require(count, what())
        position += count
    }

    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 {
        try require(2, what())
        defer { position += 2 }
        return readUInt16(bytes, at: position, bigEndian: bigEndian)
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        try require(4, what())
        defer { position += 4 }
        return readUInt32(bytes, at: position, bigEndian: bigEndian)
    }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws -> ArraySlice<UInt8> {
        try require(count, what())
        defer { position += count }
        return bytes[position..<(position + count)]
    }
}

/// Reads a 16-bit integer; the caller has checked that `offset + 2 <= bytes.count`.
@inline(__always)
func readUInt16(_ bytes: [UInt8], at offset: Int, bigEndian: Bool) -> UInt16 {
    let a = UInt16(bytes[offset]), b = UInt16(bytes[offset + 1])
    return bigEndian ? (a << 8 | b) : (b << 8 | a)
}

/// Reads a 32-bit integer; the caller has checked that `offset + 4 <= bytes.count`.
@inline(__always)
func readUInt32(_ bytes: [UInt8], at offset: Int, bigEndian: Bool) -> UInt32 {
    let a = UInt32(bytes[offset]), b = UInt32(bytes[offset + 1])
    let c = UInt32(bytes[offset + 2]), d = UInt32(bytes[offset + 3])
    return bigEndian ? (a << 24 | b << 16 | c << 8 | d) : (d << 24 | c << 16 | b << 8 | a)
}

/// Reads a 64-bit integer; the caller has checked that `offset + 8 <= bytes.count`.
@inline(__always)
func readUInt64(_ bytes: [UInt8], at offset: Int, bigEndian: Bool) -> UInt64 {
    let lo = UInt64(readUInt32(bytes, at: offset, bigEndian: bigEndian))
    let hi = UInt64(readUInt32(bytes, at: offset + 4, bigEndian: bigEndian))
    return bigEndian ? (lo << 32 | hi) : (hi << 32 | lo)
}

/// Product of non-negative sizes, or nil when it overflows `Int` (a file claiming absurd dimensions).
func checkedProduct(_ values: [Int]) -> Int? {
    var product = 1
    for v in values {
        guard v >= 0 else { return nil }
        let (p, overflow) = product.multipliedReportingOverflow(by: v)
        if overflow { return nil }
        product = p
    }
    return product
}

// MARK: - Little byte writer

/// Appends fixed-width integers in either byte order (used by the DICOM and NIfTI writers).
struct ByteWriter {
    var bytes: [UInt8] = []
    var bigEndian = false

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) {
        if bigEndian { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
        else { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
    }
    mutating func u32(_ v: UInt32) {
        if bigEndian { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }
        else { u16(UInt16(v & 0xFFFF)); u16(UInt16(v >> 16)) }
    }
    mutating func i16(_ v: Int16) { u16(UInt16(bitPattern: v)) }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func ascii(_ s: String, length: Int) {
        var chars = Array(s.utf8.prefix(length))
        chars += [UInt8](repeating: 0, count: length - chars.count)
        bytes += chars
    }
}

// MARK: - Files

/// Reads a whole file, turning I/O failures into a one-line error naming it.
func readFileBytes(_ url: URL) throws -> [UInt8] {
    do {
        return [UInt8](try Data(contentsOf: url))
    } catch {
        throw MedSynthError(file: url.path, "cannot read: \(error.localizedDescription)")
    }
}

/// An anonymous temporary file for data too large to hold in memory (the inflated voxels of a big
/// .nii.gz): unlinked as soon as it is made, so nothing is left behind even when the process is
/// killed. Positional reads and writes; errors name the input file it serves.
final class SpillFile: @unchecked Sendable {
    private let descriptor: Int32
    private let path: String

    init(for path: String) throws {
        self.path = path
        let folder = FileManager.default.temporaryDirectory.path
        var template = Array((folder + "/.medsynth-spill-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw MedSynthError(file: path, "cannot make a temporary file in \(folder): \(String(cString: strerror(errno)))")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        descriptor = fd
    }

    deinit { close(descriptor) }

    func write(_ data: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < data.count {
            let n = pwrite(descriptor, data.baseAddress! + done, data.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw MedSynthError(file: path, "cannot write its inflated voxels to a temporary file: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    func read(into data: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < data.count {
            let n = pread(descriptor, data.baseAddress! + done, data.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw MedSynthError(file: path, "cannot read its inflated voxels back from the temporary file: \(n < 0 ? String(cString: strerror(errno)) : "file is short")")
            }
            done += n
        }
    }
}
