import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Evaluation
import TestSupport
import Core

final class RealBaselineTests: XCTestCase {
    func testKIDHasNoSpreadWhenEverySubsetIsTheWholeSet() {
        let a = gaussianMatrix(rows: 30, columns: 4, mean: [0, 0, 0, 0], std: [1, 1, 1, 1], seed: 1)
        let b = gaussianMatrix(rows: 30, columns: 4, mean: [0.5, 0, 0, 0], std: [1, 1, 1, 1], seed: 2)
        let whole = kernelInceptionDistance(a, b, subsets: 50, subsetSize: 100, seed: 0)
        XCTAssert(whole.std.isNaN, "every subset is the whole of both sets: no spread, not 0")
        XCTAssertEqual(whole.mean, kernelInceptionDistance(a, b, subsets: 1, subsetSize: 30, seed: 7).mean, accuracy: 1e-12)
        let varying = kernelInceptionDistance(a, b, subsets: 50, subsetSize: 20, seed: 0)
        XCTAssert(varying.std.isFinite && varying.std > 0, "\(varying)")
        let text = SetMetrics(real_images: 30, synthetic_images: 30, fid: 1, kid_mean: whole.mean, kid_std: nil, kid_subsets: 1,
                              prdc: PRDC(precision: 1, recall: 1, density: 1, coverage: 1, k: 5)).kidText
        XCTAssert(text.hasSuffix("± n/a (one subset)"), text)
    }

    func testEveryReportHasARealVsRealBaselineFromTwoSeededHalves() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        let classes: [(name: String, disc: Float)] = [("lesion", 0.9), ("normal", -0.2)]
        let real = root.appendingPathComponent("real"), synth = root.appendingPathComponent("synth")
        try writeClassFolders(real, classes: classes, count: 11, seed: 1)
        try writeClassFolders(synth, classes: classes, count: 10, seed: 2)
        var request = EvaluationRequest(real: real, synthetic: synth, out: root.appendingPathComponent("out"))
        request.kidSubsets = 9
        request.seed = 4
        let report = try evaluate(request, progress: .none)
        let baseline = try XCTUnwrap(report.real_vs_real)
        XCTAssertEqual(baseline.half_images, 11, "22 real images: two halves of 11")

        // The halves are the seeded permutation's first and second 11 rows.
        let set = try ImageSet(root: real), features = set.features(FeatureNetwork())
        var stream = RandomStream(seed: 4).split(.realBaselineSplit)
        let order = stream.permutation(22)
        let a = subset(features, rows: Array(order[0..<11])), b = subset(features, rows: Array(order[11..<22]))
        XCTAssertEqual(baseline.metrics.fid, try frechetDistance(a, b), accuracy: 1e-9)
        XCTAssertEqual(baseline.metrics.kid_mean, kernelInceptionDistance(a, b, subsets: 1).mean, accuracy: 1e-6)   // float32 dot products, other row order
        XCTAssertNil(baseline.metrics.kid_std, "11 vs 11 with subsets of 11: one subset")
        XCTAssertEqual(baseline.metrics.kid_subsets, 1)
        XCTAssertEqual(baseline.metrics.prdc, precisionRecallDensityCoverage(real: a, fake: b, k: 5))
        // The synthetic set at the halves' size, a seeded draw of its rows, against the first half.
        let synthFeatures = try ImageSet(root: synth).features(FeatureNetwork())
        var draw = RandomStream(seed: 4).split(.realBaselineSyntheticDraw)
        let drawn = subset(synthFeatures, rows: Array(draw.permutation(20)[0..<11]))
        let sameSize = try XCTUnwrap(baseline.synthetic_same_size)
        XCTAssertEqual([sameSize.real_images, sameSize.synthetic_images], [11, 11])
        XCTAssertEqual(sameSize.fid, try frechetDistance(a, drawn), accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(baseline.fid_ratio_same_size), sameSize.fid / baseline.metrics.fid, accuracy: 1e-12)
        // Overall: 22 real vs 20 synthetic, subsets of 20: the real side varies, so there is a spread.
        XCTAssertNotNil(report.overall.kid_std)
        XCTAssertEqual(Set(report.per_class_real_vs_real.keys), ["lesion", "normal"])
        XCTAssertEqual(report.per_class_real_vs_real["lesion"]!.half_images, 5)

        let summary = evaluationSummary(report)
        XCTAssert(summary.contains("real vs real (baseline, two halves of 11)"), summary)
        XCTAssert(summary.contains("n/a (one subset)"), summary)
        XCTAssert(summary.contains("synthetic vs the first half, 11 images (the baseline's sizes)"), summary)
        XCTAssert(summary.contains("synthetic at its sizes: FD"), summary)
        let baselineLine = try XCTUnwrap(summary.split(separator: "\n").first { $0.hasPrefix("real vs real") })
        XCTAssertFalse(baselineLine.contains("± 0.00000"), summary)
        let html = try String(contentsOf: request.out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssert(html.contains("all: real vs real (baseline)") && html.contains("lesion: real vs real (baseline)"))
        XCTAssert(html.contains("all: synthetic vs the first half (baseline's sizes)"), "same-size row")
        // A synthetic set smaller than a half has no same-size row.
        let few = root.appendingPathComponent("few")
        try writeClassFolders(few, classes: classes, count: 2, seed: 3)
        request.synthetic = few
        request.out = root.appendingPathComponent("out-few")
        let fewReport = try evaluate(request, progress: .none)
        XCTAssertNil(fewReport.real_vs_real?.synthetic_same_size)
        XCTAssertNil(fewReport.real_vs_real?.fid_ratio_same_size)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: request.out.appendingPathComponent("report.json"))) as! [String: Any]
        let rvr = try XCTUnwrap(json["real_vs_real"] as? [String: Any])
        XCTAssert((rvr["metrics"] as? [String: Any])?["kid_std"] is NSNull, "no spread is null in JSON, not 0")
    }
}

final class UtilityStudyTests: XCTestCase {
    func testStudentTQuantilesAndIntervals() {
        // scipy.stats.t.ppf(0.975, df) for df = 1, 4, 29, 40, 100, 1000.
        for (df, expected) in [(1, 12.706), (4, 2.776), (29, 2.045), (40, 2.021075), (100, 1.983972), (1000, 1.962339)] {
            XCTAssertEqual(studentT975(degreesOfFreedom: df), expected, accuracy: 2e-4, "df \(df)")
        }
        let s = ScoreSummary([1, 2, 3])
        XCTAssertEqual(s.mean, 2); XCTAssertEqual(s.std, 1, accuracy: 1e-12)
        XCTAssertEqual(s.ci95_high - s.mean, 4.303 / 3.0.squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(s.mean - s.ci95_low, 4.303 / 3.0.squareRoot(), accuracy: 1e-9)
        let one = ScoreSummary([0.5])
        XCTAssertEqual([one.ci95_low, one.ci95_high], [0.5, 0.5]); XCTAssertEqual(one.text, "0.500")
    }

    func testStratifiedSplitHoldsOutEveryClassBySeed() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        try writeClassFolders(root, classes: [("a", 0.9), ("b", -0.2)], count: 8, seed: 1)
        try writeClassFolders(root, classes: [("c", 0.3)], count: 2, seed: 2)
        let set = try ImageSet(root: root)
        let split = stratifiedSplit(set, fraction: 0.25, seed: 3)
        XCTAssertEqual(Set(split.train).intersection(split.test), [])
        XCTAssertEqual((split.train + split.test).sorted(), Array(0..<18))
        XCTAssertEqual([0, 1, 2].map { c in split.test.filter { set.labels[$0] == c }.count }, [2, 2, 1])
        XCTAssertEqual(stratifiedSplit(set, fraction: 0.25, seed: 3).test, split.test)
        XCTAssertNotEqual((3..<8).map { stratifiedSplit(set, fraction: 0.25, seed: UInt64($0)).test }, Array(repeating: split.test, count: 5))
    }

    /// Real data: 2 classes of separable discs. Synthetic set "flipped": three times as many
    /// images with the labels swapped. Trained on real only the classifier separates the classes;
    /// with the flipped images it learns the swapped rule, so its balanced accuracy must collapse,
    /// and the paired gain must be strongly negative with an interval that excludes 0.
    func testMislabelledSyntheticImagesShowAsANegativeGainWithIntervals() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("data"), flipped = root.appendingPathComponent("flipped")
        try writeClassFolders(data, classes: [("bright", 0.9), ("dim", -0.2)], count: 16, seed: 1)
        try writeClassFolders(flipped, classes: [("bright", -0.2), ("dim", 0.9)], count: 48, seed: 2)
        // A balance-style folder: the manifest's real lines are left out of the synthetic set.
        let manifest = "{\"file\":\"bright/bright_000.png\",\"source\":\"real\"}\n{\"file\":\"bright/bright_001.png\",\"source\":\"synthetic\"}\n"
        try Data(manifest.utf8).write(to: flipped.appendingPathComponent("manifest.jsonl"))
        var request = UtilityStudyRequest(data: data, synthetic: [flipped])
        request.repetitions = 3
        request.seed = 5
        request.settings.epochs = 20; request.settings.batch_size = 8; request.settings.learning_rate = 3e-3
        let report = try runUtilityStudy(request)
        XCTAssertEqual(report.seeds, [5, 6, 7])
        XCTAssertEqual(report.test_images, [8, 8, 8], "a quarter of each class of 16")
        XCTAssertEqual(report.rows.count, 2)
        let real = report.rows[0], mixed = report.rows[1]
        XCTAssertEqual(real.training_images, [24, 24, 24])
        XCTAssertEqual(mixed.training_images, [24 + 95, 24 + 95, 24 + 95], "96 flipped images minus the one the manifest calls real")
        XCTAssertGreaterThanOrEqual(real.balanced_accuracy.mean, 0.8, "\(real.balanced_accuracy)")
        XCTAssertLessThanOrEqual(mixed.balanced_accuracy.mean, 0.3, "\(mixed.balanced_accuracy)")
        let gain = try XCTUnwrap(mixed.balanced_accuracy_gain)
        XCTAssertLessThan(gain.ci95_high, 0, "the interval of the paired gain excludes 0: \(gain)")
        for (v, (m, r)) in zip(gain.values, zip(mixed.balanced_accuracy.values, real.balanced_accuracy.values)) { XCTAssertEqual(v, m - r, accuracy: 1e-12) }
        // Balanced accuracy is the mean of the per-class recalls, repetition by repetition.
        for i in 0..<3 {
            XCTAssertEqual(real.balanced_accuracy.values[i], (real.per_class_recall["bright"]!.values[i] + real.per_class_recall["dim"]!.values[i]) / 2, accuracy: 1e-12)
        }
        XCTAssert(report.notes.contains { $0.contains("1 images its manifest marks as real were left out") }, "\(report.notes)")
        XCTAssert(utilityStudySummary(report).contains("gain over real"))
        // The confusion matrix counts every test image of every repetition once, and its
        // diagonal gives the recalls; the flipped row's misses are the swapped classes.
        for row in report.rows {
            XCTAssertEqual(row.confusion.map { $0.reduce(0, +) }, [12, 12], "4 test images per class × 3 repetitions")
            for (c, name) in ["bright", "dim"].enumerated() {
                let recallSum = row.per_class_recall[name]!.values.reduce(0, +)
                XCTAssertEqual(Double(row.confusion[c][c]), recallSum * 4, accuracy: 1e-9)
            }
            XCTAssertNil(row.misclassified, "a held-out split changes per seed: no per-file list")
        }
        XCTAssertGreaterThan(mixed.confusion[0][1] + mixed.confusion[1][0], 18)
        let worst = mostFrequentConfusions(mixed.confusion, classes: report.classes, limit: 1)[0]
        XCTAssert(worst == "bright → dim ×\(mixed.confusion[0][1])" || worst == "dim → bright ×\(mixed.confusion[1][0])", worst)
        XCTAssert(utilityStudySummary(report).contains("most frequent misses (true → predicted, all seeds): " + worst), utilityStudySummary(report))

        // A fixed test folder: every repetition tests on it.
        let test = root.appendingPathComponent("test")
        try writeClassFolders(test, classes: [("bright", 0.9), ("dim", -0.2)], count: 5, seed: 3)
        request.test = test; request.repetitions = 2
        let fixed = try runUtilityStudy(request)
        XCTAssertEqual(fixed.test_images, [10, 10]); XCTAssertEqual(fixed.rows[0].training_images, [32, 32])
        // With a fixed test folder each row names its missed test files, one prediction per repetition,
        // agreeing with the confusion matrix.
        for row in fixed.rows {
            let missed = try XCTUnwrap(row.misclassified)
            var offDiagonal = 0
            for image in missed {
                XCTAssertEqual(image.predicted.count, 2)
                XCTAssert(image.file.hasPrefix(image.true_class + "/"), image.file)
                XCTAssert(image.predicted.contains { $0 != image.true_class }, "listed only when missed at least once")
                offDiagonal += image.predicted.filter { $0 != image.true_class }.count
            }
            XCTAssertEqual(offDiagonal, row.confusion[0][1] + row.confusion[1][0])
            let misses = missed.map { m in m.predicted.filter { $0 != m.true_class }.count }
            XCTAssertEqual(misses, misses.sorted(by: >), "most often missed first")
        }
        XCTAssertGreaterThanOrEqual(fixed.rows[1].misclassified!.count, 5, "the flipped rule misses most of the 10 test images")
        // A synthetic class the data does not have is named.
        try writeClassFolders(flipped, classes: [("cyst", 0.1)], count: 2, seed: 4)
        assertThrows(try runUtilityStudy(request), containing: "cyst")
    }
}
