import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Evaluation
import TestSupport
import Core

/// 64×64 gray images: a disc on a background, brightness chosen per class.
func discImage(_ s: inout RandomStream, disc: Float, background: Float) -> [Float] {
    let cx = s.uniform(18, 46), cy = s.uniform(18, 46), r = s.uniform(6, 14)
    var v = [Float](repeating: 0, count: 64 * 64)
    for y in 0..<64 { for x in 0..<64 {
        let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
        v[y * 64 + x] = max(-1, min(1, (d < r ? disc : background) + 0.05 * s.normal()))
    } }
    return v
}

/// Writes `count` disc images per class into `folder/<class>/`.
func writeClassFolders(_ folder: URL, classes: [(name: String, disc: Float)], count: Int, seed: UInt64) throws {
    var s = RandomStream(seed: seed)
    for c in classes {
        let dir = folder.appendingPathComponent(c.name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for i in 0..<count {
            let image = Image(floatCHW: discImage(&s, disc: c.disc, background: -0.6), width: 64, height: 64, channels: 1, bitDepth: 8)
            try writePNG(image, to: dir.appendingPathComponent(String(format: "%@_%03d.png", c.name, i)))
        }
    }
}

final class UtilityTests: XCTestCase {
    func testCrossEntropyValueAndGradient() {
        let zero = Tensor(shape: [2, 2], data: [0, 0, 0, 0], requiresGrad: true)
        XCTAssertEqual(softmaxCrossEntropy(zero, labels: [0, 1]).scalar, Float(log(2.0)), accuracy: 1e-6)
        var s = RandomStream(seed: 5)
        let values = (0..<12).map { _ in s.normal() }, labels = [2, 0, 3]
        let logits = Tensor(shape: [3, 4], data: values, requiresGrad: true)
        let loss = softmaxCrossEntropy(logits, labels: labels)
        loss.backward()
        let analytic = logits.grad!
        for i in 0..<12 {
            // Central differences in Double, on the loss as computed from perturbed logits.
            var plus = values, minus = values
            plus[i] += 1e-2; minus[i] -= 1e-2
            let fp = Double(softmaxCrossEntropy(Tensor(shape: [3, 4], data: plus), labels: labels).scalar)
            let fm = Double(softmaxCrossEntropy(Tensor(shape: [3, 4], data: minus), labels: labels).scalar)
            XCTAssertEqual(Double(analytic[i]), (fp - fm) / 2e-2, accuracy: 2e-3)
        }
    }

    func testGlobalAveragePoolGradientSpreadsEvenly() {
        let x = Tensor(shape: [1, 2, 2, 2], data: [1, 2, 3, 4, 10, 20, 30, 40], requiresGrad: true)
        let y = globalAveragePool(x)
        XCTAssertEqual(y.data, [2.5, 25])
        sum(mul(y, Tensor(shape: [1, 2], data: [1, 4]))).backward()
        XCTAssertEqual(x.grad!, [0.25, 0.25, 0.25, 0.25, 1, 1, 1, 1])
    }

    func testClassifierLearnsASeparableTask() {
        var s = RandomStream(seed: 9)
        var images: [[Float]] = [], labels: [Int] = []
        for i in 0..<48 { let c = i % 2; images.append(discImage(&s, disc: c == 0 ? 0.9 : -0.2, background: -0.6)); labels.append(c) }
        var settings = UtilitySettings()
        settings.batch_size = 16; settings.learning_rate = 3e-3; settings.seed = 1
        var losses: [Double] = []
        let (model, _) = trainUtilityClassifier(images: images, labels: labels, classes: 2, steps: 40, settings: settings) { losses.append($1) }
        XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses.prefix(5).reduce(0, +) / 5 * 0.7, "loss must fall: \(losses)")
        var testImages: [[Float]] = [], testLabels: [Int] = []
        for i in 0..<20 { let c = i % 2; testImages.append(discImage(&s, disc: c == 0 ? 0.9 : -0.2, background: -0.6)); testLabels.append(c) }
        let score = scoreUtilityClassifier(model, images: testImages, labels: testLabels, classNames: ["bright", "dim"])
        XCTAssertGreaterThanOrEqual(score.accuracy, 0.9)
        XCTAssertEqual(score.balanced, (score.recall["bright"]! + score.recall["dim"]!) / 2, accuracy: 1e-12)
    }
}

final class EvaluationErrorAndClassTests: XCTestCase {
    func testPerClassMetricsUtilityAndClearErrors() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        let classes: [(name: String, disc: Float)] = [("lesion", 0.9), ("normal", -0.2)]
        let real = root.appendingPathComponent("real"), synth = root.appendingPathComponent("synth"), test = root.appendingPathComponent("test")
        try writeClassFolders(real, classes: classes, count: 12, seed: 1)
        try writeClassFolders(synth, classes: classes, count: 10, seed: 2)
        try writeClassFolders(test, classes: classes, count: 6, seed: 3)
        var request = EvaluationRequest(real: real, synthetic: synth, out: root.appendingPathComponent("out"))
        request.test = test
        request.kidSubsets = 5
        request.utility.epochs = 4
        request.utility.batch_size = 8
        request.utility.learning_rate = 3e-3
        let report = try evaluate(request, progress: .none)
        XCTAssertEqual(Set(report.per_class.keys), ["lesion", "normal"])
        XCTAssertEqual(report.per_class["lesion"]!.real_images, 12)
        XCTAssertEqual(report.per_class["normal"]!.synthetic_images, 10)
        let u = try XCTUnwrap(report.utility)
        XCTAssertEqual(u.classes, ["lesion", "normal"]); XCTAssertEqual(u.test_images, 12)
        XCTAssertEqual(u.real_only.training_images, 24); XCTAssertEqual(u.real_plus_synthetic.training_images, 44)
        XCTAssertGreaterThanOrEqual(u.real_only.balanced_accuracy, 0.75)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("out/report.json"))) as! [String: Any]
        XCTAssertNotNil(json["utility"]); XCTAssertNotNil(json["per_class"])
        let csv = try String(contentsOf: root.appendingPathComponent("out/nearest_training.csv"), encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 21)
        XCTAssert(csv.contains("lesion/lesion_000.png"))

        // Mismatched classes for the utility test name the folder.
        try writeClassFolders(root.appendingPathComponent("odd"), classes: [("cyst", 0.5)], count: 2, seed: 4)
        request.test = root.appendingPathComponent("odd")
        XCTAssertThrowsError(try evaluate(request, progress: .none)) { XCTAssert("\($0)".contains("cyst"), "\($0)") }

        // An empty folder, a single image and colour against gray each give a one-line error naming the folder.
        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try evaluate(EvaluationRequest(real: real, synthetic: empty, out: root), progress: .none)) {
            XCTAssert("\($0)".contains(empty.path) && "\($0)".contains("no images"), "\($0)")
        }
        let one = root.appendingPathComponent("one")
        try FileManager.default.createDirectory(at: one, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: real.appendingPathComponent("lesion/lesion_000.png"), to: one.appendingPathComponent("a.png"))
        XCTAssertThrowsError(try evaluate(EvaluationRequest(real: real, synthetic: one, out: root), progress: .none)) {
            XCTAssert("\($0)".contains(one.path) && "\($0)".contains("at least 2"), "\($0)")
        }
        let colour = root.appendingPathComponent("colour")
        try FileManager.default.createDirectory(at: colour, withIntermediateDirectories: true)
        for i in 0..<3 {
            try writePNG(Image(width: 64, height: 64, channels: 3, bitDepth: 8, samples: [UInt16](repeating: UInt16(40 * i), count: 64 * 64 * 3)),
                         to: colour.appendingPathComponent("c\(i).png"))
        }
        XCTAssertThrowsError(try evaluate(EvaluationRequest(real: real, synthetic: colour, out: root), progress: .none)) {
            XCTAssert("\($0)".contains(colour.path) && "\($0)".contains("channel"), "\($0)")
        }
    }
}
