import Foundation
import Core
import Engine

// MARK: - safetensors
//
// Format (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian tensor bytes; offsets are relative to the end of the header.

public enum SafetensorsDType: String {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64", i32 = "I32"

    var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .f64, .i64: return 8
        }
    }
}

/// One tensor to write: values plus the dtype to store them as.
public struct SafetensorsEntry {
    public let name: String
    public let shape: [Int]
    public let values: [Float]
    public let dtype: SafetensorsDType

    public init(name: String, shape: [Int], values: [Float], dtype: SafetensorsDType = .f32) {
        self.name = name; self.shape = shape; self.values = values; self.dtype = dtype
    }
}

/// The contents of a safetensors file, converted to Float.
public struct SafetensorsFile {
    public var tensors: [String: (shape: [Int], values: [Float])]
    public var dtypes: [String: SafetensorsDType]
    public var metadata: [String: String]
}

/// Serialises tensors to safetensors bytes. F16 halves the size of shipped checkpoints.
public func encodeSafetensors(_ entries: [SafetensorsEntry], metadata: [String: String] = [:]) throws -> Data {
    var header: [String: Any] = [:]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var offset = 0
    for e in entries {
        precondition(e.shape.reduce(1, *) == e.values.count, "safetensors: \(e.name) shape \(e.shape) vs \(e.values.count) values")
        let length = e.values.count * e.dtype.byteSize
        header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + length]] as [String: Any]
        offset += length
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data(capacity: 8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    for e in entries {
        switch e.dtype {
        case .f32:
            e.values.withUnsafeBufferPointer { b in out.append(UnsafeBufferPointer(start: UnsafeRawPointer(b.baseAddress!).assumingMemoryBound(to: UInt8.self), count: b.count * 4)) }
        case .f16:
            let halves = e.values.map { Float16($0).bitPattern.littleEndian }
            halves.withUnsafeBytes { out.append(contentsOf: $0) }
        case .bf16:
            let halves = e.values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16).littleEndian }
            halves.withUnsafeBytes { out.append(contentsOf: $0) }
        case .f64:
            e.values.map { Double($0).bitPattern.littleEndian }.withUnsafeBytes { out.append(contentsOf: $0) }
        case .i64:
            e.values.map { Int64($0).littleEndian }.withUnsafeBytes { out.append(contentsOf: $0) }
        case .i32:
            e.values.map { Int32($0).littleEndian }.withUnsafeBytes { out.append(contentsOf: $0) }
        }
    }
    return out
}

public func writeSafetensors(_ entries: [SafetensorsEntry], metadata: [String: String] = [:], to url: URL) throws {
    try writeAtomically(try encodeSafetensors(entries, metadata: metadata), to: url)
}

/// Reads and validates a safetensors file: every offset, size and dtype is checked against the
/// bytes present, so a truncated or foreign file is refused with a message, not a crash.
public func readSafetensors(at url: URL) throws -> SafetensorsFile {
    let name = url.path
    guard let data = FileManager.default.contents(atPath: url.path) else {
        throw MedSynthError(file: name, "cannot read the file (missing or unreadable)")
    }
    return try decodeSafetensors(data, name: name)
}

public func decodeSafetensors(_ data: Data, name: String) throws -> SafetensorsFile {
    let bytes = [UInt8](data)
    guard bytes.count >= 8 else { throw MedSynthError(file: name, "not a safetensors file (shorter than its 8-byte header length)") }
    var headerLength: UInt64 = 0
    for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard headerLength <= UInt64(bytes.count - 8), headerLength <= 100_000_000 else {
        throw MedSynthError(file: name, "truncated or not a safetensors file (header of \(headerLength) bytes, file has \(bytes.count))")
    }
    let dataStart = 8 + Int(headerLength)
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])), let header = object as? [String: Any] else {
        throw MedSynthError(file: name, "not a safetensors file (header is not a JSON object)")
    }
    let payload = bytes.count - dataStart
    var result = SafetensorsFile(tensors: [:], dtypes: [:], metadata: [:])
    for (key, value) in header {
        if key == "__metadata__" {
            if let meta = value as? [String: String] { result.metadata = meta }
            continue
        }
        // Every number must be a non-negative integer; anything else (fractions, 1e30, strings)
        // makes the entry malformed rather than being dropped or wrapped.
        guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
              let rawShape = info["shape"] as? [Any], let shape = exactSizes(rawShape), shape.count <= 16,
              let rawOffsets = info["data_offsets"] as? [Any], let offsets = exactSizes(rawOffsets), offsets.count == 2 else {
            throw MedSynthError(file: name, "tensor '\(key)' has a malformed header entry")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw MedSynthError(file: name, "tensor '\(key)' has unsupported dtype \(dtypeName)")
        }
        // Overflow-checked: a shape whose product wraps around must not pass as small.
        var product: Int? = 1
        for side in shape { product = product.flatMap { p in let (r, o) = p.multipliedReportingOverflow(by: side); return o ? nil : r } }
        guard let count = product, count <= payload else {
            throw MedSynthError(file: name, "tensor '\(key)' has an impossible shape \(shape)")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard end >= begin, end <= payload else {
            throw MedSynthError(file: name, "tensor '\(key)' lies outside the file (offsets \(begin)..<\(end), \(payload) data bytes) — truncated?")
        }
        guard end - begin == count * dtype.byteSize else {
            throw MedSynthError(file: name, "tensor '\(key)' has \(end - begin) bytes for shape \(shape) of \(dtypeName)")
        }
        var values = [Float](repeating: 0, count: count)
        let base = dataStart + begin
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let p = base + i * dtype.byteSize
                switch dtype {
                case .f32: values[i] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: p, as: UInt32.self).littleEndian)
                case .f16: values[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: p, as: UInt16.self).littleEndian))
                case .bf16: values[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: p, as: UInt16.self).littleEndian) << 16)
                case .f64: values[i] = Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: p, as: UInt64.self).littleEndian))
                case .i64: values[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: p, as: Int64.self)))
                case .i32: values[i] = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: p, as: Int32.self)))
                }
            }
        }
        result.tensors[key] = (shape, values)
        result.dtypes[key] = dtype
    }
    return result
}

/// JSON numbers as non-negative integers, or nil when any is not one (negative, fractional, huge,
/// not a number). Values are capped at 2^53 (exact in a double; far above any real size).
func exactSizes(_ values: [Any]) -> [Int]? {
    var sizes: [Int] = []
    sizes.reserveCapacity(values.count)
    for value in values {
        guard let number = value as? NSNumber else { return nil }
        let double = number.doubleValue
        guard double.isFinite, double >= 0, double <= 9_007_199_254_740_992, double == double.rounded(.towardZero) else { return nil }
        sizes.append(Int(double))
    }
    return sizes
}

extension Module {
    /// The module's tensors as safetensors entries (integer buffers as I64, like PyTorch).
    public func safetensorsEntries(prefix: String = "", dtype: SafetensorsDType = .f32) -> [SafetensorsEntry] {
        namedTensors().map { e in
            SafetensorsEntry(name: prefix.isEmpty ? e.name : "\(prefix).\(e.name)", shape: e.tensor.shape,
                             values: e.tensor.data, dtype: e.isInteger ? .i64 : dtype)
        }
    }
}
