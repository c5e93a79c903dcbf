import XCTest
@testable import Engine
import TestSupport
import Core

/// Forward values against naive loops written independently here (in Double).
final class ForwardReferenceTests: XCTestCase {
    func naiveConv(_ x: Tensor, _ w: Tensor, _ b: [Float]?, stride: Int, padding: Int) -> [Double] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oc, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let oh = (h + 2 * padding - kh) / stride + 1, ow = (wd + 2 * padding - kw) / stride + 1
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for i in 0..<n { for o in 0..<oc { for y in 0..<oh { for xx in 0..<ow {
            var s = Double(b?[o] ?? 0)
            for ci in 0..<c { for dy in 0..<kh { for dx in 0..<kw {
                let iy = y * stride - padding + dy, ix = xx * stride - padding + dx
                if iy >= 0 && iy < h && ix >= 0 && ix < wd {
                    s += Double(x.data[((i * c + ci) * h + iy) * wd + ix]) * Double(w.data[((o * c + ci) * kh + dy) * kw + dx])
                }
            } } }
            out[((i * oc + o) * oh + y) * ow + xx] = s
        } } } }
        return out
    }

    /// Transposed convolution by its definition: every input pixel scatters a weighted kernel.
    func naiveConvTranspose(_ x: Tensor, _ w: Tensor, stride: Int, padding: Int) -> [Double] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oc, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
        let oh = (h - 1) * stride - 2 * padding + kh, ow = (wd - 1) * stride - 2 * padding + kw
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for i in 0..<n { for ci in 0..<c { for y in 0..<h { for xx in 0..<wd {
            let v = Double(x.data[((i * c + ci) * h + y) * wd + xx])
            for o in 0..<oc { for dy in 0..<kh { for dx in 0..<kw {
                let oy = y * stride - padding + dy, ox = xx * stride - padding + dx
                if oy >= 0 && oy < oh && ox >= 0 && ox < ow {
                    out[((i * oc + o) * oh + oy) * ow + ox] += v * Double(w.data[((ci * oc + o) * kh + dy) * kw + dx])
                }
            } } }
        } } } }
        return out
    }

    func testMinibatchStdAppendsTheMeanAcrossBatchStd() {
        // Two samples of 1×1×2: positions (1, 3) and (2, 6) have population std 1 and 2, mean 1.5.
        let x = Tensor(shape: [2, 1, 1, 2], data: [1, 2, 3, 6])
        let y = appendMinibatchStd(x)
        XCTAssertEqual(y.shape, [2, 2, 1, 2])
        for (got, want) in zip(y.data, [1, 2, 1.5, 1.5, 3, 6, 1.5, 1.5] as [Float]) { XCTAssertEqual(got, want, accuracy: 1e-6) }
        // A batch of identical images has no spread: only √ε is left.
        let same = Tensor(shape: [3, 2, 2, 2], data: (0..<24).map { Float($0 % 8) - 3 })
        XCTAssert(appendMinibatchStd(same).data.enumerated().filter { ($0.offset / 4) % 3 == 2 }.allSatisfy { abs($0.element - 1e-4) < 1e-6 })
    }

    func testBilinearUpsamplingMatchesPyTorch() {
        // torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        // in float64, x[i] = sin(0.7 i) + 0.1 i for i in 0..<12 as 1×1×3×4 (torch 2.15).
        let x = Tensor(shape: [1, 1, 3, 4], data: (0..<12).map { Float(sin(0.7 * Double($0)) + 0.1 * Double($0)) })
        let expected: [Float] = [
            0.000000, 0.186054, 0.558163, 0.854526, 1.075142, 1.179890, 1.168769, 1.163209,
            0.183747, 0.286677, 0.492537, 0.651899, 0.764762, 0.816343, 0.806644, 0.801794,
            0.551241, 0.487923, 0.361286, 0.246645, 0.144002, 0.089251, 0.082392, 0.078963,
            0.593424, 0.530347, 0.404193, 0.308478, 0.243203, 0.235474, 0.285293, 0.310203,
            0.310297, 0.413951, 0.621260, 0.837397, 1.062363, 1.255013, 1.415346, 1.495513,
            0.168733, 0.355753, 0.729794, 1.101857, 1.471943, 1.764782, 1.980373, 2.088168]
        let y = upsampleBilinear2x(x)
        XCTAssertEqual(y.shape, [1, 1, 6, 8])
        for (got, want) in zip(y.data, expected) { XCTAssertEqual(got, want, accuracy: 2e-6) }
        // Planes are independent, and a constant plane stays constant up to its border.
        let planes = Tensor(shape: [2, 2, 3, 4], data: (0..<48).map { $0 < 12 ? x.data[$0] : 0.5 })
        let yp = upsampleBilinear2x(planes)
        XCTAssertEqual(Array(yp.data[0..<48]), y.data)
        XCTAssert(yp.data[48...].allSatisfy { abs($0 - 0.5) < 1e-7 })
    }

    func testConvOnCountingInput() {
        // (0..<n) input through a 2x2 all-ones kernel: each output is the sum of a 2x2 window.
        let x = Tensor(shape: [1, 1, 3, 3], data: (0..<9).map(Float.init))
        let w = Tensor(filled: 1, shape: [1, 1, 2, 2])
        XCTAssertEqual(conv2d(x, weight: w).data, [8, 12, 20, 24])
    }

    func testConv2dMatchesNaive() {
        for (k, s, p, n, side) in [(3, 1, 1, 3, 9), (4, 2, 1, 2, 9), (1, 1, 0, 2, 9), (4, 1, 0, 40, 9), (3, 2, 1, 1, 9), (3, 1, 1, 5, 40), (1, 1, 0, 3, 20), (4, 2, 1, 2, 40)] {
            let x = randomTensor([n, 3, side, side - 1], seed: 1), w = randomTensor([5, 3, k, k], seed: 2), b = randomTensor([5], seed: 3)
            let y = conv2d(x, weight: w, bias: b, stride: s, padding: p)
            assertClose(y.data, naiveConv(x, w, b.data, stride: s, padding: p), 1e-4, "conv2d k\(k) s\(s) p\(p) n\(n)")
        }
    }

    func testConvTransposeMatchesNaive() {
        for (k, s, p, h) in [(4, 2, 1, 4), (4, 1, 0, 1), (3, 1, 1, 5), (3, 2, 0, 3)] {
            let x = randomTensor([3, 4, h, h], seed: 4), w = randomTensor([4, 2, k, k], seed: 5)
            let y = convTranspose2d(x, weight: w, stride: s, padding: p)
            assertClose(y.data, naiveConvTranspose(x, w, stride: s, padding: p), 1e-4, "convTranspose2d k\(k) s\(s) p\(p)")
        }
    }

    func testGroupNormMatchesDefinition() {
        let x = randomTensor([2, 4, 3, 3], seed: 6, scale: 3), gamma = randomTensor([4], seed: 7), beta = randomTensor([4], seed: 8)
        let y = groupNorm(x, groups: 2, gamma: gamma, beta: beta)
        var expected = [Double](repeating: 0, count: x.count)
        for n in 0..<2 { for g in 0..<2 {
            let idx = (0..<2).flatMap { k in (0..<9).map { ((n * 4 + g * 2 + k) * 9) + $0 } }
            let vals = idx.map { Double(x.data[$0]) }
            let mu = vals.reduce(0, +) / 18, variance = vals.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 18
            for i in idx { let c = (i / 9) % 4; expected[i] = (Double(x.data[i]) - mu) / (variance + 1e-5).squareRoot() * Double(gamma.data[c]) + Double(beta.data[c]) }
        } }
        assertClose(y.data, expected, 1e-4, "groupNorm")
        let fused = groupNorm(x, groups: 2, gamma: gamma, beta: beta, fusedSiLU: true)
        assertClose(fused.data, expected.map { $0 / (1 + Foundation.exp(-$0)) }, 1e-4, "groupNorm+silu")
    }

    func testBatchNormTrainingStatisticsAndRunningAverages() {
        let x = randomTensor([3, 2, 2, 2], seed: 9, scale: 2)
        let rm = Tensor(zeros: [2]), rv = Tensor(filled: 1, shape: [2])
        let y = batchNorm(x, gamma: Tensor(filled: 1, shape: [2]), beta: Tensor(zeros: [2]), runningMean: rm, runningVar: rv, training: true)
        for c in 0..<2 {
            let idx = (0..<3).flatMap { n in (0..<4).map { (n * 2 + c) * 4 + $0 } }
            let vals = idx.map { Double(x.data[$0]) }
            let mu = vals.reduce(0, +) / 12, biased = vals.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 12
            assertClose(idx.map { y.data[$0] }, vals.map { ($0 - mu) / (biased + 1e-5).squareRoot() }, 1e-4, "batchNorm channel \(c)")
            XCTAssertEqual(Double(rm.data[c]), 0.1 * mu, accuracy: 1e-5)
            XCTAssertEqual(Double(rv.data[c]), 0.9 + 0.1 * biased * 12 / 11, accuracy: 1e-5)
        }
        // Eval mode uses the running averages.
        let e = batchNorm(x, gamma: Tensor(filled: 2, shape: [2]), beta: Tensor(filled: 1, shape: [2]), runningMean: rm, runningVar: rv, training: false)
        XCTAssertEqual(e.data[0], (x.data[0] - rm.data[0]) / (rv.data[0] + 1e-5).squareRoot() * 2 + 1, accuracy: 1e-5)
    }

    func testAttentionMatchesDefinition() {
        let n = 2, c = 3, p = 4
        let qkv = randomTensor([n, 3 * c, 2, 2], seed: 10)
        let y = spatialSelfAttention(qkv: qkv)
        var expected = [Double](repeating: 0, count: n * c * p)
        for img in 0..<n {
            func at(_ part: Int, _ ch: Int, _ pos: Int) -> Double { Double(qkv.data[((img * 3 + part) * c + ch) * p + pos]) }
            for i in 0..<p {
                let scores = (0..<p).map { j in (0..<c).map { at(0, $0, i) * at(1, $0, j) }.reduce(0, +) / Double(c).squareRoot() }
                let mx = scores.max()!, e = scores.map { Foundation.exp($0 - mx) }, z = e.reduce(0, +)
                for ch in 0..<c { expected[(img * c + ch) * p + i] = (0..<p).map { at(2, ch, $0) * e[$0] / z }.reduce(0, +) }
            }
        }
        assertClose(y.data, expected, 1e-5, "attention")
    }
}
