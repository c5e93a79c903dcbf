import XCTest
@testable import Engine
import TestSupport
import Core

final class GradientTests: XCTestCase {
    override func setUp() { GradMode.isEnabled = true }

    func testConv2dPaddedStrided() {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (4, 2, 1), (1, 1, 0), (4, 1, 0), (3, 1, 0)] {
            checkGradients("conv2d k\(k) s\(s) p\(p)", inputs: [randomTensor([2, 3, 7, 6], seed: 1), randomTensor([4, 3, k, k], seed: 2, scale: 0.3), randomTensor([4], seed: 3)]) {
                conv2d($0[0], weight: $0[1], bias: $0[2], stride: s, padding: p)
            }
        }
    }

    func testConv2dLargeBatchChunks() {
        // Small planes make the kernel interleave many images per GEMM; exercise that path.
        checkGradients("conv2d batched", inputs: [randomTensor([5, 2, 3, 3], seed: 4), randomTensor([3, 2, 3, 3], seed: 5, scale: 0.3)]) {
            conv2d($0[0], weight: $0[1], stride: 1, padding: 1)
        }
    }

    func testConvBlockedPathForLargePlanes() {
        // Planes of 16×16 and more take the banded path (per-image bands, lane accumulators).
        checkGradients("conv2d blocked", inputs: [randomTensor([5, 2, 16, 17], seed: 40), randomTensor([3, 2, 3, 3], seed: 41, scale: 0.3), randomTensor([3], seed: 42)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], stride: 1, padding: 1)
        }
        checkGradients("conv2d blocked 1x1", inputs: [randomTensor([2, 3, 16, 16], seed: 43), randomTensor([2, 3, 1, 1], seed: 44, scale: 0.3)]) {
            conv2d($0[0], weight: $0[1])
        }
        checkGradients("convTranspose2d blocked", inputs: [randomTensor([2, 2, 16, 16], seed: 45), randomTensor([2, 1, 4, 4], seed: 46, scale: 0.3)]) {
            convTranspose2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
    }

    func testConvTranspose2d() {
        for (k, s, p, h) in [(4, 2, 1, 4), (4, 1, 0, 1), (3, 1, 1, 5), (3, 2, 0, 3)] {
            checkGradients("convTranspose2d k\(k) s\(s) p\(p)", inputs: [randomTensor([2, 3, h, h], seed: 6), randomTensor([3, 2, k, k], seed: 7, scale: 0.3), randomTensor([2], seed: 8)]) {
                convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: s, padding: p)
            }
        }
    }

    func testBatchNormTrainAndEval() {
        let rm = Tensor(zeros: [3]), rv = Tensor(filled: 1, shape: [3])
        checkGradients("batchNorm train", inputs: [randomTensor([4, 3, 3, 2], seed: 9), randomTensor([3], seed: 10), randomTensor([3], seed: 11)]) {
            batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm, runningVar: rv, training: true)
        }
        let rm2 = Tensor(shape: [3], data: [0.1, -0.2, 0.3]), rv2 = Tensor(shape: [3], data: [0.5, 2, 1.5])
        checkGradients("batchNorm eval", inputs: [randomTensor([2, 3, 2, 2], seed: 12), randomTensor([3], seed: 13), randomTensor([3], seed: 14)]) {
            batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm2, runningVar: rv2, training: false)
        }
    }

    func testBatchNormWithFusedActivation() {
        for slope: Float in [0.2, 0] {
            let rm = Tensor(zeros: [3]), rv = Tensor(filled: 1, shape: [3])
            checkGradients("batchNorm+leakyRelu(\(slope)) train", inputs: [randomTensor([3, 3, 4, 5], seed: 50), randomTensor([3], seed: 51), randomTensor([3], seed: 52)]) {
                batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm, runningVar: rv, training: true, activationSlope: slope)
            }
            let rm2 = Tensor(shape: [3], data: [0.1, -0.2, 0.3]), rv2 = Tensor(shape: [3], data: [0.5, 2, 1.5])
            checkGradients("batchNorm+leakyRelu(\(slope)) eval", inputs: [randomTensor([2, 3, 4, 5], seed: 53), randomTensor([3], seed: 54), randomTensor([3], seed: 55)]) {
                batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm2, runningVar: rv2, training: false, activationSlope: slope)
            }
        }
    }

    /// The fused norm+activation is the composition it replaces: the same forward bits (DCGAN
    /// checkpoints sample as before) and the same gradients, on planes with SIMD bodies and tails.
    func testFusedBatchNormActivationMatchesComposition() {
        for (slope, training) in [(Float(0.2), true), (0, true), (0.2, false)] {
            func run(fused: Bool) -> (y: [Float], dx: [Float], dgamma: [Float], dbeta: [Float], running: [Float]) {
                let x = randomTensor([4, 5, 5, 7], seed: 60, scale: 2), gamma = randomTensor([5], seed: 61), beta = randomTensor([5], seed: 62)
                x.requiresGrad = true; gamma.requiresGrad = true; beta.requiresGrad = true
                let rm = Tensor(shape: [5], data: [0.1, -0.2, 0.3, 0, 0.5]), rv = Tensor(shape: [5], data: [0.5, 2, 1.5, 1, 0.8])
                let y = fused
                    ? batchNorm(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: training, activationSlope: slope)
                    : leakyRelu(batchNorm(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: training), slope: slope)
                let weights = randomTensor(y.shape, seed: 63)
                sum(mul(y, weights)).backward()
                return (y.data, x.grad!, gamma.grad!, beta.grad!, rm.data + rv.data)
            }
            let a = run(fused: true), b = run(fused: false)
            XCTAssertEqual(a.y, b.y, "slope \(slope) training \(training): forward")
            XCTAssertEqual(a.running, b.running)
            XCTAssertTrue(a.y.contains { $0 < 0 } == (slope > 0) && a.y.contains { $0 > 0 })
            assertClose(a.dx, b.dx, 1e-5, "dx")
            assertClose(a.dgamma, b.dgamma, 1e-5, "dgamma")
            assertClose(a.dbeta, b.dbeta, 1e-5, "dbeta")
        }
    }

    func testGroupNorm() {
        checkGradients("groupNorm", inputs: [randomTensor([2, 4, 3, 3], seed: 15), randomTensor([4], seed: 16), randomTensor([4], seed: 17)]) {
            groupNorm($0[0], groups: 2, gamma: $0[1], beta: $0[2])
        }
        checkGradients("groupNorm+silu", inputs: [randomTensor([2, 4, 3, 5], seed: 47), randomTensor([4], seed: 48), randomTensor([4], seed: 49)]) {
            groupNorm($0[0], groups: 2, gamma: $0[1], beta: $0[2], fusedSiLU: true)
        }
        // Rows of 35 pixels: the backward's row sums in vector blocks (8 or 16 lanes) and a scalar tail.
        for fused in [false, true] {
            checkGradients("groupNorm\(fused ? "+silu" : ""), 16-lane rows",
                           inputs: [randomTensor([2, 4, 5, 7], seed: 50), randomTensor([4], seed: 51), randomTensor([4], seed: 52)]) {
                groupNorm($0[0], groups: 2, gamma: $0[1], beta: $0[2], fusedSiLU: fused)
            }
        }
    }

    func testActivations() {
        // Keep values away from the kinks of ReLU / LeakyReLU where differences are not gradients.
        var x = randomTensor([2, 3, 4], seed: 18)
        x = Tensor(shape: x.shape, data: x.data.map { abs($0) < 0.05 ? $0 + 0.2 : $0 })
        checkGradients("relu", inputs: [x]) { relu($0[0]) }
        checkGradients("leakyRelu", inputs: [x]) { leakyRelu($0[0], slope: 0.2) }
        checkGradients("silu", inputs: [x]) { silu($0[0]) }
        checkGradients("tanh", inputs: [x]) { tanh($0[0]) }
        checkGradients("sigmoid", inputs: [x]) { sigmoid($0[0]) }
        checkGradients("softmax", inputs: [x]) { softmax($0[0]) }
        checkGradients("scale", inputs: [x]) { scale($0[0], -1.5) }
    }

    func testBroadcastAddMul() {
        let a = randomTensor([2, 3, 2, 2], seed: 19)
        checkGradients("add same", inputs: [a, randomTensor([2, 3, 2, 2], seed: 20)]) { add($0[0], $0[1]) }
        checkGradients("mul same", inputs: [a, randomTensor([2, 3, 2, 2], seed: 21)]) { mul($0[0], $0[1]) }
        checkGradients("add per-sample channel", inputs: [a, randomTensor([2, 3], seed: 22)]) { add($0[0], $0[1]) }
        checkGradients("mul per-channel", inputs: [a, randomTensor([1, 3, 1, 1], seed: 23)]) { mul($0[0], $0[1]) }
    }

    func testShapeOps() {
        checkGradients("concat", inputs: [randomTensor([2, 2, 3, 3], seed: 24), randomTensor([2, 3, 3, 3], seed: 25)]) { concatChannels([$0[0], $0[1]]) }
        checkGradients("upsample", inputs: [randomTensor([2, 2, 3, 2], seed: 26)]) { upsampleNearest2x($0[0]) }
        checkGradients("bilinear upsample", inputs: [randomTensor([2, 2, 3, 4], seed: 40)]) { upsampleBilinear2x($0[0]) }
        checkGradients("bilinear upsample of one pixel", inputs: [randomTensor([1, 2, 1, 1], seed: 41)]) { upsampleBilinear2x($0[0]) }
        checkGradients("reshape", inputs: [randomTensor([2, 6], seed: 27)]) { reshape($0[0], [3, 4]) }
        checkGradients("sumPerSample", inputs: [randomTensor([3, 2, 2], seed: 39)]) { sumPerSample($0[0]) }
        checkGradients("minibatch std", inputs: [randomTensor([3, 2, 2, 2], seed: 42)]) { appendMinibatchStd($0[0]) }
    }

    func testLinearMatmulEmbedding() {
        checkGradients("linear", inputs: [randomTensor([3, 5], seed: 28), randomTensor([4, 5], seed: 29), randomTensor([4], seed: 30)]) {
            linear($0[0], weight: $0[1], bias: $0[2])
        }
        checkGradients("matmul", inputs: [randomTensor([3, 5], seed: 31), randomTensor([5, 2], seed: 32)]) { matmul($0[0], $0[1]) }
        checkGradients("embedding", inputs: [randomTensor([4, 3], seed: 33)]) { embedding([2, 0, 2, 3], table: $0[0]) }
    }

    func testAttention() {
        checkGradients("attention", inputs: [randomTensor([2, 6, 3, 2], seed: 34)]) { spatialSelfAttention(qkv: $0[0]) }
    }

    func testLosses() {
        let target = randomTensor([2, 3], seed: 35)
        checkGradients("mse", inputs: [randomTensor([2, 3], seed: 36)]) { mseLoss($0[0], target) }
        checkGradients("bce", inputs: [randomTensor([5], seed: 37, scale: 2)]) { bceWithLogits($0[0], targets: [1, 0, 1, 0.3, 0]) }
        checkGradients("mean", inputs: [randomTensor([7], seed: 38)]) { mean($0[0]) }
    }

    func testGradientsAccumulateAcrossUses() {
        let x = Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        sum(add(mul(x, x), x)).backward()   // d/dx (x² + x) = 2x + 1
        XCTAssertEqual(x.grad!, [3, 5])
    }

    func testNoGradBuildsNoGraph() {
        let w = Tensor(shape: [2, 2], data: [1, 2, 3, 4], requiresGrad: true)
        let y = withNoGrad { matmul(w, w) }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(y.parents.isEmpty)
        XCTAssertEqual(y.data, [7, 10, 15, 22])
    }
}
