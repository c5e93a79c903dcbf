import XCTest
import TestSupport
@testable import Engine

/// Convolutions on maps of at most 2×2 pixels as one dense matrix, against a float64 direct
/// convolution (forward, input and weight gradients) and by finite differences.
final class SmallMapConvolutionTests: XCTestCase {
    override func setUp() { GradMode.isEnabled = true }
    override func tearDown() { ConvAlgorithmSelection.forced = nil; Parallel.setThreads(ProcessInfoCores.count) }

    /// Float64 direct cross-correlation y = conv(x, w) and, for a loss Σ y·r, dL/dx and dL/dw.
    func direct(_ x: Tensor, _ w: Tensor, _ r: Tensor, stride s: Int, padding p: Int) -> (y: [Double], dx: [Double], dw: [Double]) {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
        let oc = w.shape[0], kh = w.shape[2], kw = w.shape[3]
        let oh = (h + 2 * p - kh) / s + 1, ow = (wd + 2 * p - kw) / s + 1
        var y = [Double](repeating: 0, count: n * oc * oh * ow)
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
        for img in 0..<n { for o in 0..<oc { for i in 0..<oh { for j in 0..<ow {
            let out = ((img * oc + o) * oh + i) * ow + j
            for ci in 0..<c { for a in 0..<kh { for b in 0..<kw {
                let ih = i * s - p + a, iw = j * s - p + b
                if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
                let xi = ((img * c + ci) * h + ih) * wd + iw, wi = ((o * c + ci) * kh + a) * kw + b
                y[out] += Double(x.data[xi]) * Double(w.data[wi])
                dx[xi] += Double(r.data[out]) * Double(w.data[wi])
                dw[wi] += Double(r.data[out]) * Double(x.data[xi])
            } } }
        } } } }
        return (y, dx, dw)
    }

    func testEveryPassMatchesTheDirectConvolution() {
        // (n, c, oc, h, w, kernel, stride, padding): the latent U-Net's 2×2 levels and its stride-2
        // step to 1×1, one-row and one-column maps, a 5×5 kernel, and padding 2.
        let cases: [(n: Int, c: Int, oc: Int, h: Int, w: Int, k: Int, s: Int, p: Int)] = [
            (4, 24, 16, 2, 2, 3, 1, 1), (3, 16, 20, 2, 2, 3, 2, 1), (2, 8, 12, 1, 2, 3, 1, 1), (2, 12, 8, 2, 1, 3, 1, 1),
            (5, 6, 7, 2, 2, 5, 1, 2), (2, 9, 5, 2, 2, 3, 1, 2), (3, 10, 6, 1, 1, 3, 2, 1),
        ]
        for (index, shape) in cases.enumerated() {
            let seed = UInt64(10 * index)
            let g = ConvGeometry(channels: shape.c, height: shape.h, width: shape.w, kernelH: shape.k, kernelW: shape.k, stride: shape.s, padding: shape.p)
            XCTAssertEqual(ConvAlgorithmSelection.algorithm(g, outChannels: shape.oc, pass: .forward), .dense, "\(shape)")
            XCTAssertEqual(ConvAlgorithmSelection.algorithm(g, outChannels: shape.oc, pass: .weightGradient), .dense, "\(shape)")
            let x = randomTensor([shape.n, shape.c, shape.h, shape.w], seed: seed + 1)
            let w = randomTensor([shape.oc, shape.c, shape.k, shape.k], seed: seed + 2, scale: 0.3)
            x.requiresGrad = true; w.requiresGrad = true
            let y = conv2d(x, weight: w, stride: shape.s, padding: shape.p)
            let r = randomTensor(y.shape, seed: seed + 3)
            sum(mul(y, r)).backward()
            let reference = direct(x, w, r, stride: shape.s, padding: shape.p)
            XCTAssertLessThan(relativeError(y.data, reference.y), 1e-6, "forward \(shape)")
            XCTAssertLessThan(relativeError(x.grad!, reference.dx), 1e-6, "input gradient \(shape)")
            XCTAssertLessThan(relativeError(w.grad!, reference.dw), 1e-6, "weight gradient \(shape)")
        }
    }

    func testGradientsByFiniteDifferencesWithBiasAndResidual() {
        checkGradients("dense 2x2 s1", inputs: [randomTensor([2, 3, 2, 2], seed: 1), randomTensor([4, 3, 3, 3], seed: 2, scale: 0.3),
                                                 randomTensor([4], seed: 3), randomTensor([2, 4, 2, 2], seed: 4)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1, residual: $0[3])
        }
        checkGradients("dense 2x2 s2", inputs: [randomTensor([3, 2, 2, 2], seed: 5), randomTensor([3, 2, 3, 3], seed: 6, scale: 0.3)]) {
            conv2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
        // A transposed convolution whose matching convolution reads a small map (1×1 → 2×2, 4×4 stride 2)
        // runs its three passes through the same dense matrix.
        checkGradients("dense transposed 1x1 to 2x2", inputs: [randomTensor([2, 3, 1, 1], seed: 9), randomTensor([3, 2, 4, 4], seed: 10, scale: 0.3)]) {
            convTranspose2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
        // A gradient that already holds a value is added to, not overwritten.
        checkGradients("dense input used twice", inputs: [randomTensor([2, 3, 2, 2], seed: 7), randomTensor([3, 3, 3, 3], seed: 8, scale: 0.3)]) {
            add(conv2d($0[0], weight: $0[1], padding: 1), scale($0[0], 0.5))
        }
    }

    /// The dense matrix is cached with a copy of the weights: a changed weight is never served a
    /// stale matrix, and forcing im2col gives the same numbers up to rounding.
    func testChangedWeightsRebuildTheMatrixAndIm2colAgrees() {
        let x = randomTensor([3, 8, 2, 2], seed: 20)
        var w = randomTensor([6, 8, 3, 3], seed: 21, scale: 0.3)
        let first = withNoGrad { conv2d(x, weight: w, padding: 1) }
        var changed = w.data
        changed[5] += 0.25
        w = Tensor(shape: w.shape, data: changed)
        let second = withNoGrad { conv2d(x, weight: w, padding: 1) }
        ConvAlgorithmSelection.forced = .im2col
        let reference = withNoGrad { conv2d(x, weight: w, padding: 1) }
        XCTAssertNotEqual(first.data, second.data)
        XCTAssertLessThan(relativeError(second.data, reference.data), 1e-6)
    }

    func testResultsIndependentOfThreads() {
        let x = randomTensor([8, 64, 2, 2], seed: 30), w = randomTensor([48, 64, 3, 3], seed: 31, scale: 0.1)
        let r = randomTensor([8, 48, 2, 2], seed: 32)
        func run(threads: Int) -> [[Float]] {
            Parallel.setThreads(threads)
            let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true), wv = Tensor(shape: w.shape, data: w.data, requiresGrad: true)
            let y = conv2d(xv, weight: wv, padding: 1)
            sum(mul(y, r)).backward()
            return [y.data, xv.grad!, wv.grad!]
        }
        XCTAssertEqual(run(threads: 1), run(threads: 3))
    }
}
