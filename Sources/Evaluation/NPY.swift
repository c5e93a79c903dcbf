import Foundation
import Core
import Engine

// MARK: - NumPy .npy (format version 1.0, little-endian, C order), for --features-out

/// Element type of a written .npy file.
public enum NPYType: String {
    case float32 = "<f4", float64 = "<f8"
}

/// A 2-D .npy file (format 1.0: magic, version, header length, a Python-dict header padded with
/// spaces to a multiple of 64 bytes and ending in a newline, then the values in C order).
public func encodeNPY(_ m: Matrix, as type: NPYType = .float64) -> Data {
    var header = "{'descr': '\(type.rawValue)', 'fortran_order': False, 'shape': (\(m.rows), \(m.columns)), }"
    // Magic (6) + version (2) + header length (2) + header must be a multiple of 64, ending in '\n'.
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    switch type {
    case .float64: m.values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
    case .float32: m.values.map { Float($0).bitPattern.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
    }
    return data
}

/// Writes `m` as a .npy file, atomically.
public func writeNPY(_ m: Matrix, to url: URL, as type: NPYType = .float64) throws {
    try writeAtomically(encodeNPY(m, as: type), to: url)
}

/// Reads a 2-D little-endian float64 or float32 .npy in C order.
public func readNPY(at url: URL) throws -> Matrix {
    guard let data = FileManager.default.contents(atPath: url.path) else { throw MedSynthError(file: url.path, "cannot read the file") }
    let bytes = [UInt8](data)
    guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { throw MedSynthError(file: url.path, "not a .npy file") }
    guard bytes[6] == 1 else { throw MedSynthError(file: url.path, ".npy format version \(bytes[6]).\(bytes[7]) is not supported (only 1.0)") }
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    guard bytes.count >= 10 + headerLength, let header = String(bytes: bytes[10..<10 + headerLength], encoding: .ascii) else {
        throw MedSynthError(file: url.path, "truncated .npy header")
    }
    let isDouble = header.contains("'<f8'"), isFloat = header.contains("'<f4'")
    guard (isDouble || isFloat), header.contains("'fortran_order': False"),
          let open = header.firstIndex(of: "("), let close = header.firstIndex(of: ")") else {
        throw MedSynthError(file: url.path, "only C-order little-endian float32/float64 .npy files are supported")
    }
    guard open < close else { throw MedSynthError(file: url.path, "malformed .npy header (shape)") }
    let dims = header[header.index(after: open)..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard dims.count == 2, dims[0] >= 0, dims[1] >= 0 else { throw MedSynthError(file: url.path, "expected a 2-D array, got shape \(dims)") }
    let start = 10 + headerLength, size = isDouble ? 8 : 4
    // Overflow-checked: a shape whose product wraps must not match the file size by accident.
    let (elements, overflow1) = dims[0].multipliedReportingOverflow(by: dims[1])
    let (dataBytes, overflow2) = elements.multipliedReportingOverflow(by: size)
    guard !overflow1, !overflow2, bytes.count - start == dataBytes else {
        throw MedSynthError(file: url.path, "data size does not match shape \(dims)")
    }
    var values = [Double](repeating: 0, count: dims[0] * dims[1])
    bytes.withUnsafeBytes { raw in
        for i in values.indices {
            values[i] = isDouble ? Double(bitPattern: raw.loadUnaligned(fromByteOffset: start + 8 * i, as: UInt64.self).littleEndian)
                                 : Double(Float(bitPattern: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self).littleEndian))
        }
    }
    return Matrix(rows: dims[0], columns: dims[1], values: values)
}
