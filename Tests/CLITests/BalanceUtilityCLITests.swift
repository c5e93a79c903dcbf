import Foundation
import XCTest
import TestSupport

/// `medsynth balance --method` and `medsynth utility`, run as the built binary.
final class BalanceUtilityCLITests: XCTestCase {
    private func run(_ arguments: [String], in folder: URL, timeout: TimeInterval = 120) throws -> ProcessResult {
        let result = try runProcess(requireBinary().path, arguments, in: folder, timeout: timeout, mergeStreams: false)
        if result.timedOut { XCTFail("medsynth \(arguments.joined(separator: " ")) did not finish within \(timeout) s") }
        return result
    }

    /// Class folders of 16×16 8-bit gray PNGs: `bright` has a bright square, `dim` a dim one, at
    /// positions varying with the index (uncompressed-deflate PNGs written by hand).
    private func writeData(_ root: URL, counts: [String: Int]) throws {
        for (name, count) in counts {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<count {
                var pixels = [UInt8](repeating: 20, count: 256)
                for y in 0..<6 { for x in 0..<6 { pixels[(2 + (i % 7) + y) * 16 + 2 + (i * 3 % 8) + x] = name == "bright" ? 230 : 90 } }
                try pngData(pixels, side: 16).write(to: folder.appendingPathComponent("\(name)_\(i).png"))
            }
        }
    }

    private func pngData(_ pixels: [UInt8], side: Int) -> Data {
        func crc(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes { c ^= UInt32(b); for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) } }
            return ~c
        }
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        func chunk(_ tag: String, _ data: [UInt8]) -> [UInt8] { be(UInt32(data.count)) + Array(tag.utf8) + data + be(crc(Array(tag.utf8) + data)) }
        var raw: [UInt8] = []
        for y in 0..<side { raw.append(0); raw += pixels[y * side..<(y + 1) * side] }
        // zlib stream with one stored (uncompressed) block, and its Adler-32.
        var a: UInt32 = 1, b: UInt32 = 0
        for v in raw { a = (a + UInt32(v)) % 65521; b = (b + a) % 65521 }
        let n = UInt16(raw.count)
        let zlib: [UInt8] = [0x78, 0x01, 1, UInt8(n & 255), UInt8(n >> 8), UInt8(~n & 255), UInt8(~n >> 8)] + raw + be(b << 16 | a)
        let header = be(UInt32(side)) + be(UInt32(side)) + [8, 0, 0, 0, 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", zlib) + chunk("IEND", []))
    }

    func testBalanceMethodsAndTheUtilityStudy() throws {
        let folder = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: folder) }
        try writeData(folder.appendingPathComponent("data"), counts: ["bright": 12, "dim": 4])
        try writeData(folder.appendingPathComponent("test"), counts: ["bright": 4, "dim": 4])

        let smote = try run(["balance", "--data", "data", "--method", "smote", "--neighbours", "2", "--out", "smote", "--progress", "none"], in: folder)
        XCTAssertEqual(smote.status, 0, smote.stderr)
        XCTAssert(smote.stdout.contains("smote (k = 2, pixel space)"), smote.stdout)
        let manifest = try String(contentsOf: folder.appendingPathComponent("smote/manifest.jsonl"), encoding: .utf8)
        XCTAssertEqual(manifest.split(separator: "\n").filter { $0.contains("\"origin\":\"smote\"") }.count, 8)
        let over = try run(["balance", "--data", "data", "--method", "oversample", "--out", "over", "--progress", "none"], in: folder)
        XCTAssertEqual(over.status, 0, over.stderr)

        // The parser refuses contradictory or incomplete method flags with one line.
        for bad in [["--composite", "--method", "smote"], ["--method", "model"], ["--model", "x", "--method", "oversample"],
                    ["--method", "smote", "--min-confidence", "0.5"], ["--method", "magic"]] {
            let r = try run(["balance", "--data", "data", "--out", "never"] + bad, in: folder)
            XCTAssertNotEqual(r.status, 0, bad.joined(separator: " "))
            XCTAssert(r.stderr.hasPrefix("Error:"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("never").path))

        let utility = try run(["utility", "--data", "data", "--synthetic", "smote", "--synthetic", "over", "--test", "test",
                               "--seeds", "2", "--epochs", "3", "--batch", "8", "--out", "u", "--progress", "none"], in: folder)
        XCTAssertEqual(utility.status, 0, utility.stderr)
        XCTAssert(utility.stdout.contains("real + "), utility.stdout)
        XCTAssert(utility.stdout.contains("recall dim"), utility.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("u/utility.json"))) as! [String: Any]
        let rows = try XCTUnwrap(json["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[1]["training_images"] as? [Int], [24, 24], "16 real + 8 SMOTE images; the balance folder's real files are left out")
        let bad = try run(["utility", "--data", "data", "--synthetic", "nothing", "--progress", "none"], in: folder)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssert(bad.stderr.contains("nothing"), bad.stderr)
    }
}
