import XCTest
import TestSupport
@testable import Engine

/// The specialised ends: the 1×1-input transposed conv as one GEMM and the sub-pixel form of
/// 4×4 stride-2 transposed convs, against the general col2im path and finite differences.
final class SmallEndsTests: XCTestCase {
    override func setUp() { GradMode.isEnabled = true }
    override func tearDown() { SubPixelSelection.isEnabled = false; SubPixelSelection.minimumHeight = 8; SubPixelSelection.minimumOutChannels = 16 }

    /// Reference transposed convolution by its definition (every input pixel scatters the kernel).
    func directTransposed(_ x: Tensor, _ w: Tensor, stride s: Int, padding p: Int) -> [Float] {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], oc = w.shape[1], k = w.shape[2]
        let oh = (h - 1) * s - 2 * p + k, ow = (wd - 1) * s - 2 * p + k
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for img in 0..<n { for ci in 0..<c { for i in 0..<h { for j in 0..<wd {
            let v = Double(x.data[((img * c + ci) * h + i) * wd + j])
            for o in 0..<oc { for a in 0..<k { for b in 0..<k {
                let y = i * s - p + a, z = j * s - p + b
                if y < 0 || y >= oh || z < 0 || z >= ow { continue }
                out[((img * oc + o) * oh + y) * ow + z] += v * Double(w.data[((ci * oc + o) * k + a) * k + b])
            } } }
        } } } }
        return out.map { Float($0) }
    }

    func testPointInputTransposedConvIsOneGEMM() {
        let x = randomTensor([3, 5, 1, 1], seed: 1), w = randomTensor([5, 4, 4, 4], seed: 2, scale: 0.3)
        let y = withNoGrad { convTranspose2d(x, weight: w, stride: 1, padding: 0) }
        XCTAssertEqual(y.shape, [3, 4, 4, 4])
        XCTAssertLessThan(relativeError(y.data, directTransposed(x, w, stride: 1, padding: 0)), 1e-6)
        checkGradients("convTranspose 1x1 input", inputs: [x, w, randomTensor([4], seed: 3)]) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: 1, padding: 0)
        }
    }

    func testSubPixelTransposedConvMatchesDefinition() {
        SubPixelSelection.isEnabled = true
        SubPixelSelection.minimumHeight = 1
        SubPixelSelection.minimumOutChannels = 1
        for (n, c, oc, h, w) in [(2, 3, 4, 5, 6), (1, 8, 16, 16, 16), (3, 2, 1, 1, 2)] {
            let x = randomTensor([n, c, h, w], seed: 4), weight = randomTensor([c, oc, 4, 4], seed: 5, scale: 0.3)
            let y = withNoGrad { convTranspose2d(x, weight: weight, stride: 2, padding: 1) }
            XCTAssertEqual(y.shape, [n, oc, 2 * h, 2 * w])
            let error = relativeError(y.data, directTransposed(x, weight, stride: 2, padding: 1))
            XCTAssertLessThan(error, 1e-6, "sub-pixel \([n, c, oc, h, w]): relative error \(error)")
        }
        checkGradients("convTranspose sub-pixel", inputs: [randomTensor([2, 3, 4, 5], seed: 6), randomTensor([3, 2, 4, 4], seed: 7, scale: 0.3), randomTensor([2], seed: 8)]) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        }
    }

    /// A kernel as large as the unpadded input (the DCGAN critic's 4×4 → 1×1 layer) runs as one
    /// dense GEMM: its output and gradients must match the convolution's definition.
    func testWholeInputKernelConvIsADenseLayer() {
        for (n, c, oc, side, stride) in [(3, 5, 2, 4, 1), (2, 3, 1, 3, 2), (1, 2, 4, 2, 1)] {
            let x = randomTensor([n, c, side, side], seed: 11), w = randomTensor([oc, c, side, side], seed: 12, scale: 0.3)
            let y = withNoGrad { conv2d(x, weight: w, stride: stride, padding: 0) }
            XCTAssertEqual(y.shape, [n, oc, 1, 1])
            var expected = [Float](repeating: 0, count: n * oc)
            for img in 0..<n { for o in 0..<oc {
                var sum = 0.0
                for k in 0..<c * side * side { sum += Double(x.data[img * c * side * side + k]) * Double(w.data[o * c * side * side + k]) }
                expected[img * oc + o] = Float(sum)
            } }
            XCTAssertLessThan(relativeError(y.data, expected), 1e-6, "whole-input kernel \([n, c, oc, side, stride])")
        }
        checkGradients("conv whole-input kernel", inputs: [randomTensor([3, 4, 4, 4], seed: 13), randomTensor([2, 4, 4, 4], seed: 14, scale: 0.3), randomTensor([2], seed: 15)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], stride: 1, padding: 0)
        }
    }

    /// A "same"-padded 3×3 or 5×5 conv on a 1×1 input (the 8×8 latent U-Net's coarsest level) is
    /// the 1×1 conv of its centre taps: output (with bias and residual) against the definition, and
    /// gradients (the other taps get none) against finite differences.
    func testSamePaddedConvOnOnePixelUsesOnlyTheCentreTap() {
        for (k, p) in [(3, 1), (5, 2)] {
            let x = randomTensor([3, 6, 1, 1], seed: 21), w = randomTensor([4, 6, k, k], seed: 22, scale: 0.3)
            let bias = randomTensor([4], seed: 23), residual = randomTensor([3, 4, 1, 1], seed: 24)
            let y = withNoGrad { conv2d(x, weight: w, bias: bias, padding: p, residual: residual) }
            XCTAssertEqual(y.shape, [3, 4, 1, 1])
            var expected = [Float](repeating: 0, count: 12)
            for img in 0..<3 { for o in 0..<4 {
                var sum = Double(bias.data[o]) + Double(residual.data[img * 4 + o])
                for c in 0..<6 { sum += Double(x.data[img * 6 + c]) * Double(w.data[((o * 6 + c) * k + p) * k + p]) }
                expected[img * 4 + o] = Float(sum)
            } }
            XCTAssertLessThan(relativeError(y.data, expected), 1e-6, "\(k)×\(k) on one pixel")
        }
        checkGradients("conv 3x3 on one pixel", inputs: [randomTensor([2, 3, 1, 1], seed: 25), randomTensor([2, 3, 3, 3], seed: 26, scale: 0.3), randomTensor([2], seed: 27)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1)
        }
    }

    /// A 1×1 conv on a 1×1 input (a latent U-Net's coarsest level, used when sampling) keeps the
    /// per-image pointwise path: an image's output bits do not depend on the batch around it.
    func testPointwiseConvOnOnePixelIsBatchInvariant() {
        let x = randomTensor([7, 48, 1, 1], seed: 21), w = randomTensor([40, 48, 1, 1], seed: 22, scale: 0.3)
        let batch = withNoGrad { conv2d(x, weight: w) }
        for i in [0, 3, 6] {
            let one = Tensor(shape: [1, 48, 1, 1], data: Array(x.data[i * 48..<(i + 1) * 48]))
            let alone = withNoGrad { conv2d(one, weight: w) }
            XCTAssertEqual(alone.data, Array(batch.data[i * 40..<(i + 1) * 40]), "image \(i)")
        }
    }
}
