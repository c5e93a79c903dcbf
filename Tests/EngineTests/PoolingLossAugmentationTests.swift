import XCTest
@testable import Engine
import TestSupport
import Core

/// Global average pooling, softmax cross-entropy and the augmentation kernel: values on
/// hand-checkable inputs and gradients against finite differences.
final class PoolingLossAugmentationTests: XCTestCase {
    func testGlobalAveragePoolValuesAndGradient() {
        let x = Tensor(shape: [1, 2, 2, 2], data: (0..<8).map(Float.init))
        XCTAssertEqual(globalAveragePool(x).data, [1.5, 5.5])
        checkGradients("globalAveragePool", inputs: [randomTensor([2, 3, 4, 5], seed: 1)]) { globalAveragePool($0[0]) }
    }

    func testAveragePool2x2ValuesAndGradient() {
        let x = Tensor(shape: [1, 1, 2, 4], data: [0, 1, 2, 3, 4, 5, 6, 7])
        let y = averagePool2x2(x)
        XCTAssertEqual(y.shape, [1, 1, 1, 2])
        XCTAssertEqual(y.data, [2.5, 4.5])
        checkGradients("averagePool2x2", inputs: [randomTensor([2, 3, 4, 6], seed: 2)]) { averagePool2x2($0[0]) }
    }

    func testCropSpatialValuesGradientAndBounds() {
        let x = Tensor(shape: [1, 2, 3, 4], data: (0..<24).map(Float.init))
        let y = cropSpatial(x, top: 1, left: 2, height: 2, width: 2)
        XCTAssertEqual(y.shape, [1, 2, 2, 2])
        XCTAssertEqual(y.data, [6, 7, 10, 11, 18, 19, 22, 23])
        checkGradients("cropSpatial", inputs: [randomTensor([2, 3, 6, 5], seed: 3)]) { cropSpatial($0[0], top: 2, left: 1, height: 3, width: 4) }
    }

    func testSoftmaxCrossEntropyValuesAndGradient() {
        // Two classes with equal logits: loss ln 2 whatever the label.
        XCTAssertEqual(softmaxCrossEntropy(Tensor(shape: [1, 2], data: [3, 3]), labels: [1]).scalar, Float(log(2.0)), accuracy: 1e-6)
        // Large logits stay finite through log-sum-exp.
        let big = softmaxCrossEntropy(Tensor(shape: [1, 3], data: [1000, 0, -1000]), labels: [1]).scalar
        XCTAssertEqual(big, 1000, accuracy: 1e-3)
        let labels = [2, 0, 1, 2]
        checkGradients("softmaxCrossEntropy", inputs: [randomTensor([4, 3], seed: 2)]) { softmaxCrossEntropy($0[0], labels: labels) }
    }

    func testAugmentationShiftsCutsAndFlips() {
        // One 1×3×3 counting image; shift right by one: the first column reads outside (0).
        let x = Tensor(shape: [1, 1, 3, 3], data: (1...9).map(Float.init))
        var shift = SampleAugmentation()
        shift.shiftX = 1
        XCTAssertEqual(augmentImages(x, [shift]).data, [0, 1, 2, 0, 4, 5, 0, 7, 8])
        var flip = SampleAugmentation()
        flip.flip = true
        XCTAssertEqual(augmentImages(x, [flip]).data, [3, 2, 1, 6, 5, 4, 9, 8, 7])
        var cut = SampleAugmentation()
        cut.cutX = 1; cut.cutY = 1; cut.cutSide = 2
        XCTAssertEqual(augmentImages(x, [cut]).data, [1, 2, 3, 4, 0, 0, 7, 0, 0])
        // Contrast c around the mean (5): 5 + c·(v − 5); brightness b adds b everywhere.
        var colour = SampleAugmentation()
        colour.contrast = 2; colour.brightness = 1
        XCTAssertEqual(augmentImages(x, [colour]).data, (1...9).map { Float(6 + 2 * ($0 - 5)) })
    }

    func testAugmentationGradient() {
        var a = SampleAugmentation(), b = SampleAugmentation()
        a.brightness = 0.3; a.contrast = 1.4; a.shiftX = 1; a.shiftY = -2; a.cutX = 2; a.cutY = 0; a.cutSide = 2
        b.contrast = 0.6; b.flip = true; b.shiftX = -1
        checkGradients("augmentImages", inputs: [randomTensor([2, 2, 5, 6], seed: 3)]) { augmentImages($0[0], [a, b]) }
    }
}
