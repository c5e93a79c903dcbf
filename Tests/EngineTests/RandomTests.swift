import XCTest
@testable import Engine
import TestSupport
import Core

final class RandomTests: XCTestCase {
    /// Known-answer test from the Random123 distribution (kat_vectors, philox4x32_10).
    func testPhiloxKnownAnswers() {
        let zero = philox4x32(counter: (0, 0, 0, 0), key: (0, 0))
        XCTAssertEqual([zero.0, zero.1, zero.2, zero.3], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = philox4x32(counter: (0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), key: (0xffff_ffff, 0xffff_ffff))
        XCTAssertEqual([ones.0, ones.1, ones.2, ones.3], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = philox4x32(counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), key: (0xa409_3822, 0x299f_31d0))
        XCTAssertEqual([pi.0, pi.1, pi.2, pi.3], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    func testStreamsAreReproducibleAndIndependent() {
        var a = RandomStream(seed: 42).split(7)
        var b = RandomStream(seed: 42).split(7)
        var c = RandomStream(seed: 42).split(8)
        let xa = (0..<100).map { _ in a.nextUInt32() }
        let xb = (0..<100).map { _ in b.nextUInt32() }
        let xc = (0..<100).map { _ in c.nextUInt32() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, xc)
    }

    func testNormalMoments() {
        var r = RandomStream(seed: 1)
        let n = 200_000
        var sum = 0.0, sumSq = 0.0
        for _ in 0..<n { let x = Double(r.normal()); sum += x; sumSq += x * x }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
    }

    func testUniformRangeAndIntBelow() {
        var r = RandomStream(seed: 3)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0..<50_000 {
            let u = r.uniform()
            XCTAssert(u >= 0 && u < 1)
            counts[r.int(below: 5)] += 1
        }
        for c in counts { XCTAssertEqual(Double(c) / 50_000, 0.2, accuracy: 0.01) }
        XCTAssertEqual(r.permutation(10).sorted(), Array(0..<10))
    }
}
