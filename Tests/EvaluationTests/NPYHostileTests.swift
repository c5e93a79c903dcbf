import XCTest
import Core
import TestSupport
import Foundation
import Engine
@testable import Evaluation

/// Issue 16: a .npy header whose shape product overflows must not match the file size by wrapping.
final class NPYHostileTests: XCTestCase {
    func npy(shape: String, dataBytes: Int) -> Data {
        var header = "{'descr': '<f8', 'fortran_order': False, 'shape': (\(shape)), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(Data(count: dataBytes))
        return data
    }

    func testOverflowingAndNegativeShapesAreRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // 2^61 × 8 bytes wraps to 0 in 64-bit arithmetic.
        for (name, shape, bytes) in [("wrap", "2305843009213693952, 1", 0), ("negative", "-2, -4", 64), ("ok", "2, 3", 48)] {
            let url = folder.appendingPathComponent("\(name).npy")
            try npy(shape: shape, dataBytes: bytes).write(to: url)
            if name == "ok" {
                XCTAssertEqual(try readNPY(at: url).values.count, 6)
            } else {
                XCTAssertThrowsError(try readNPY(at: url)) { XCTAssert("\($0)".contains("\(name).npy"), "\($0)") }
            }
        }
    }
}
