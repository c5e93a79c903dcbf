import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Evaluation
import TestSupport
import Core

func gaussianMatrix(rows: Int, columns: Int, mean: [Double], std: [Double], seed: UInt64) -> Matrix {
    var s = RandomStream(seed: seed)
    var m = Matrix(rows: rows, columns: columns)
    for r in 0..<rows { for c in 0..<columns { m[r, c] = mean[c] + std[c] * Double(s.normal()) } }
    return m
}

final class EvaluationMetricTests: XCTestCase {
    func fixture(_ name: String) -> URL { Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)! }

    func testFrechetDistanceMatchesSciPy() throws {
        let a = try readNPY(at: fixture("fid_a.npy")), b = try readNPY(at: fixture("fid_b.npy"))
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("fid_golden.json"))) as! [String: Double]
        let value = try frechetDistance(a, b)
        XCTAssertEqual(value, golden["fid"]!, accuracy: 1e-4 * golden["fid"]!)
        XCTAssertEqual(try frechetDistance(a, a), 0, accuracy: 1e-9)
    }

    func testClosedFormForDiagonalGaussians() throws {
        // Independent coordinates: FD = ‖μ₁ − μ₂‖² + Σ (σ₁ − σ₂)² (population values, large samples).
        let a = gaussianMatrix(rows: 20_000, columns: 3, mean: [0, 1, 2], std: [1, 2, 0.5], seed: 1)
        let b = gaussianMatrix(rows: 20_000, columns: 3, mean: [1, 1, 0], std: [2, 2, 1], seed: 2)
        let expected = 1.0 + 0 + 4 + 1 + 0 + 0.25
        XCTAssertEqual(try frechetDistance(a, b), expected, accuracy: 0.1)
    }

    func testDistanceGrowsWithShift() throws {
        let base = gaussianMatrix(rows: 500, columns: 4, mean: [0, 0, 0, 0], std: [1, 1, 1, 1], seed: 3)
        var previous = -1.0
        for shift in [0.0, 0.5, 1.0, 2.0] {
            var moved = gaussianMatrix(rows: 500, columns: 4, mean: [0, 0, 0, 0], std: [1, 1, 1, 1], seed: 4)
            for r in 0..<moved.rows { moved[r, 0] += shift }
            let fd = try frechetDistance(base, moved)
            XCTAssertGreaterThan(fd, previous)
            previous = fd
        }
    }

    func testKIDIsUnbiasedForOneDistribution() {
        let a = gaussianMatrix(rows: 300, columns: 8, mean: [Double](repeating: 0.5, count: 8), std: [Double](repeating: 1, count: 8), seed: 5)
        let b = gaussianMatrix(rows: 300, columns: 8, mean: [Double](repeating: 0.5, count: 8), std: [Double](repeating: 1, count: 8), seed: 6)
        let same = kernelInceptionDistance(a, b, subsets: 20, subsetSize: 200)
        XCTAssertLessThan(abs(same.mean), 3 * same.std + 1e-3, "KID of one distribution should be ≈ 0: \(same)")
        var shifted = b
        for r in 0..<shifted.rows { for c in 0..<8 { shifted[r, c] += 1 } }
        XCTAssertGreaterThan(kernelInceptionDistance(a, shifted, subsets: 20, subsetSize: 200).mean, 10 * abs(same.mean) + 0.01)
    }

    func testPrecisionRecallForIdenticalAndDisjointSets() {
        let a = gaussianMatrix(rows: 80, columns: 3, mean: [0, 0, 0], std: [1, 1, 1], seed: 7)
        let same = precisionRecallDensityCoverage(real: a, fake: a)
        XCTAssertEqual(same.precision, 1); XCTAssertEqual(same.recall, 1); XCTAssertEqual(same.coverage, 1)
        XCTAssertEqual(same.density, 1, accuracy: 0.25)
        var far = a
        for r in 0..<far.rows { far[r, 0] += 100 }
        let disjoint = precisionRecallDensityCoverage(real: a, fake: far)
        XCTAssertEqual(disjoint.precision, 0); XCTAssertEqual(disjoint.recall, 0); XCTAssertEqual(disjoint.coverage, 0)
    }

    func testNPYRoundTrip() throws {
        let dir = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: dir) }
        let m = Matrix(rows: 2, columns: 3, values: [1, -2.5, 3, 0.125, 5, 6])
        try writeNPY(m, to: dir.appendingPathComponent("m.npy"))
        XCTAssertEqual(try readNPY(at: dir.appendingPathComponent("m.npy")), m)
        let bytes = try Data(contentsOf: dir.appendingPathComponent("m.npy"))
        XCTAssertEqual((10 + Int(bytes[8])) % 64, 0)
    }
}

final class EvaluationRunTests: XCTestCase {
    /// Blobby 64×64 "scans" with a seed-dependent position, written as PNG.
    func writeSet(_ folder: URL, count: Int, seed: UInt64, blur: Bool = false, offset: Float = 0) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var s = RandomStream(seed: seed)
        for i in 0..<count {
            let cx = s.uniform(20, 44), cy = s.uniform(20, 44), r = s.uniform(6, 14)
            var v = [Float](repeating: -0.9, count: 64 * 64)
            for y in 0..<64 { for x in 0..<64 {
                let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                v[y * 64 + x] = (blur ? max(-0.9, 0.6 - 0.1 * max(d - r, 0)) : (d < r ? 0.6 : -0.9)) + 0.05 * s.normal() + offset
            } }
            try writePNG(Image(floatCHW: v, width: 64, height: 64, channels: 1, bitDepth: 8), to: folder.appendingPathComponent(String(format: "img_%03d.png", i)))
        }
    }

    func testReportFlagsAPlantedCopyAndShiftedSetsScoreWorse() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        let real = root.appendingPathComponent("real"), good = root.appendingPathComponent("good"), bad = root.appendingPathComponent("bad")
        try writeSet(real, count: 60, seed: 1)
        try writeSet(good, count: 60, seed: 2)
        try writeSet(bad, count: 60, seed: 3, blur: true, offset: 0.3)
        // A verbatim copy of a training image among the synthetic ones.
        try FileManager.default.copyItem(at: real.appendingPathComponent("img_007.png"), to: good.appendingPathComponent("zz_copy.png"))
        var request = EvaluationRequest(real: real, synthetic: good, out: root.appendingPathComponent("out-good"))
        request.featuresOut = root.appendingPathComponent("features")
        request.kidSubsets = 10
        let goodReport = try evaluate(request, progress: .none)
        XCTAssert(goodReport.memorisation.flagged.contains { $0.synthetic == "zz_copy.png" && $0.training == "img_007.png" && $0.pixel_distance < 1e-6 })
        XCTAssertFalse(goodReport.warnings.isEmpty, "60 images for 512 features must warn about a rank-deficient covariance")
        request.synthetic = bad
        request.out = root.appendingPathComponent("out-bad")
        request.featuresOut = nil
        let badReport = try evaluate(request, progress: .none)
        XCTAssertGreaterThan(badReport.overall.fid, goodReport.overall.fid)
        XCTAssertGreaterThan(badReport.overall.kid_mean, goodReport.overall.kid_mean)
        XCTAssertGreaterThan(badReport.intensity_w1, goodReport.intensity_w1)
        // The breakdown adds up to FD in every row, and the summary and the page show it.
        for metrics in [goodReport.overall, badReport.overall] + [goodReport.real_vs_real?.metrics].compactMap({ $0 }) {
            let b = try XCTUnwrap(metrics.fid_breakdown)
            XCTAssertEqual(b.mean_term + b.covariance_term, metrics.fid, accuracy: 1e-9 * max(metrics.fid, 1))
        }
        XCTAssert(evaluationSummary(badReport).contains("  FD = "), evaluationSummary(badReport))
        // Pixel quantiles: the +0.3 set's median pixel (background) sits at least 0.3 higher (its blur adds a ramp
        // above the background as well); the good set's does not move.
        let goodQ = try XCTUnwrap(goodReport.intensity_quantiles), badQ = try XCTUnwrap(badReport.intensity_quantiles)
        XCTAssertEqual(badQ.levels, [0.5, 0.75, 0.9, 0.99])
        XCTAssertGreaterThan(badQ.synthetic[0] - badQ.real[0], 0.28)
        XCTAssertLessThan(badQ.synthetic[0] - badQ.real[0], 0.45)
        XCTAssertEqual(goodQ.synthetic[0], goodQ.real[0], accuracy: 0.02)
        XCTAssert(evaluationSummary(badReport).contains("pixel values (network input, [−1, 1]) p50/p75/p90/p99: real "), evaluationSummary(badReport))
        // At the baseline's sizes a set from the real distribution scores about the baseline, a shifted one far above it.
        let goodRatio = try XCTUnwrap(goodReport.real_vs_real?.fid_ratio_same_size)
        let badRatio = try XCTUnwrap(badReport.real_vs_real?.fid_ratio_same_size)
        XCTAssertEqual(goodRatio, 1, accuracy: 0.35, "same distribution")
        XCTAssertGreaterThan(badRatio, 2 * goodRatio)
        let badJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("out-bad/report.json"))) as! [String: Any]
        XCTAssertNotNil((badJSON["overall"] as? [String: Any])?["fid_breakdown"] as? [String: Any])
        // Without --train the memorisation reference is the real set, and the report says so.
        XCTAssert(goodReport.warnings.contains { $0.hasPrefix("no --train") }, "\(goodReport.warnings)")
        request.train = real
        request.out = root.appendingPathComponent("out-train")
        let trainReport = try evaluate(request, progress: .none)
        XCTAssertFalse(trainReport.warnings.contains { $0.hasPrefix("no --train") }, "\(trainReport.warnings)")
        let html = try String(contentsOf: root.appendingPathComponent("out-good/report.html"), encoding: .utf8)
        XCTAssert(html.contains("data:image/png;base64,") && html.contains("zz_copy.png") && html.contains("FD = means + spreads"))
        let features = try readNPY(at: root.appendingPathComponent("features/synthetic_features.npy"))
        XCTAssertEqual(features.rows, 61); XCTAssertEqual(features.columns, 512)
        XCTAssertThrowsError(try evaluate(EvaluationRequest(real: real, synthetic: root.appendingPathComponent("missing"), out: root), progress: .none)) {
            XCTAssert("\($0)".contains("missing"), "\($0)")
        }
    }
}
