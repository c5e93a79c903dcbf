import XCTest
import TestSupport
@testable import Engine

/// Winograd F(2×2,3×3) and F(4×4,3×3) against a float64 direct convolution and against the
/// im2col path, plus finite-difference gradients and thread/batch independence.
final class WinogradTests: XCTestCase {
    override func setUp() { GradMode.isEnabled = true }
    override func tearDown() { ConvAlgorithmSelection.forced = nil; Parallel.setThreads(ProcessInfoCores.count) }

    /// Post-norm, post-SiLU-like activations and He-initialised weights, as in the U-Net.
    func realisticInput(_ shape: [Int], seed: UInt64) -> Tensor {
        let t = randomTensor(shape, seed: seed)
        return Tensor(shape: shape, data: t.data.map { $0 / (1 + exp(-$0)) })
    }

    func realisticWeight(outChannels: Int, channels: Int, seed: UInt64) -> Tensor {
        randomTensor([outChannels, channels, 3, 3], seed: seed, scale: (2 / Float(9 * channels)).squareRoot())
    }

    /// Float64 direct cross-correlation, stride 1.
    func directConv(_ x: Tensor, _ w: Tensor, padding p: Int) -> [Double] {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], oc = w.shape[0]
        let oh = h + 2 * p - 2, ow = wd + 2 * p - 2
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for img in 0..<n { for o in 0..<oc { for i in 0..<oh { for j in 0..<ow {
            var s = 0.0
            for ci in 0..<c { for a in 0..<3 { for b in 0..<3 {
                let ih = i - p + a, iw = j - p + b
                if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
                s += Double(x.data[((img * c + ci) * h + ih) * wd + iw]) * Double(w.data[((o * c + ci) * 3 + a) * 3 + b])
            } } }
            out[((img * oc + o) * oh + i) * ow + j] = s
        } } } }
        return out
    }

    func testForwardMatchesDirectConvolutionForEveryTile() {
        // Sizes that are and are not multiples of the tiles, paddings 0–2, tasks spanning images.
        let cases: [(n: Int, c: Int, oc: Int, h: Int, w: Int, p: Int)] = [
            (2, 64, 32, 16, 16, 1), (3, 24, 20, 11, 9, 1), (2, 16, 8, 8, 13, 0), (1, 8, 5, 5, 6, 2), (5, 32, 32, 8, 8, 1),
            // Rows of 8 and 16 tiles take the phase-split input copy (whole and partial tiles).
            (2, 16, 12, 7, 30, 1), (1, 8, 8, 6, 34, 0), (1, 12, 8, 5, 64, 1),
        ]
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            for shape in cases {
                let x = realisticInput([shape.n, shape.c, shape.h, shape.w], seed: 10)
                let w = realisticWeight(outChannels: shape.oc, channels: shape.c, seed: 11)
                let reference = directConv(x, w, padding: shape.p)
                ConvAlgorithmSelection.forced = algorithm
                let y = withNoGrad { conv2d(x, weight: w, padding: shape.p) }
                ConvAlgorithmSelection.forced = .im2col
                let y0 = withNoGrad { conv2d(x, weight: w, padding: shape.p) }
                let error = relativeError(y.data, reference), baseline = relativeError(y0.data, reference)
                print(String(format: "winograd forward %@ %@: relative error %.2e (im2col %.2e)", algorithm.rawValue, "\(shape)", error, baseline))
                XCTAssertLessThan(error, 1e-4, "\(algorithm) \(shape): relative error \(error) (im2col \(baseline))")
                XCTAssertEqual(y.shape, y0.shape)
            }
        }
    }

    /// The input transform that reads the NCHW input directly (zero padding by masks, rows of 8
    /// or 16 tiles) gives exactly the values of the padded copy it replaces: forward, input and
    /// weight gradients, bit for bit, at image edges, with padding 0–2, partial tiles and at the
    /// tensor's first and last floats.
    func testDirectInputTransformMatchesPaddedCopy() {
        defer { WinogradPlan.directInputEnabled = true }
        let cases: [(n: Int, c: Int, oc: Int, h: Int, w: Int, p: Int)] = [
            (2, 16, 12, 7, 30, 1), (1, 8, 8, 6, 34, 0), (1, 12, 8, 5, 64, 1), (3, 5, 4, 9, 32, 1), (2, 3, 4, 4, 29, 2),
            (1, 4, 4, 66, 66, 0), (2, 6, 4, 12, 64, 1), (1, 2, 3, 3, 16, 1),
        ]
        var directShapes = 0
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            ConvAlgorithmSelection.forced = algorithm
            for shape in cases {
                let g = ConvGeometry(channels: shape.c, height: shape.h, width: shape.w, kernelH: 3, kernelW: 3, stride: 1, padding: shape.p)
                if WinogradPlan(g, batch: shape.n, outChannels: shape.oc, m: algorithm.tile!).directInput { directShapes += 1 }
                let x = realisticInput([shape.n, shape.c, shape.h, shape.w], seed: 40)
                let weight = realisticWeight(outChannels: shape.oc, channels: shape.c, seed: 41)
                let r = randomTensor([shape.n, shape.oc, g.outHeight, g.outWidth], seed: 42)
                func run(direct: Bool) -> ([Float], [Float], [Float]) {
                    WinogradPlan.directInputEnabled = direct
                    let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                    let wv = Tensor(shape: weight.shape, data: weight.data, requiresGrad: true)
                    let y = conv2d(xv, weight: wv, padding: shape.p)
                    sum(mul(y, r)).backward()
                    return (y.data, xv.grad!, wv.grad!)
                }
                let copied = run(direct: false), direct = run(direct: true)
                XCTAssertEqual(direct.0, copied.0, "\(algorithm) \(shape) forward")
                XCTAssertEqual(direct.1, copied.1, "\(algorithm) \(shape) input gradient")
                XCTAssertEqual(direct.2, copied.2, "\(algorithm) \(shape) weight gradient")
            }
        }
        XCTAssertGreaterThan(directShapes, 8, "the cases must take the direct path")
    }

    /// Input and weight gradients through Winograd against the im2col path.
    func testGradientsMatchIm2col() {
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            for (n, c, oc, h, w) in [(2, 32, 48, 16, 16), (3, 20, 24, 10, 7), (2, 16, 16, 6, 32)] {
                let x = realisticInput([n, c, h, w], seed: 20)
                let weight = realisticWeight(outChannels: oc, channels: c, seed: 21)
                let r = randomTensor([n, oc, h, w], seed: 22)
                func gradients(_ choice: ConvAlgorithm) -> ([Float], [Float]) {
                    ConvAlgorithmSelection.forced = choice
                    let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                    let wv = Tensor(shape: weight.shape, data: weight.data, requiresGrad: true)
                    sum(mul(conv2d(xv, weight: wv, padding: 1), r)).backward()
                    return (xv.grad!, wv.grad!)
                }
                let (dx, dw) = gradients(algorithm)
                let (dx0, dw0) = gradients(.im2col)
                let ex = relativeError(dx, dx0), ew = relativeError(dw, dw0)
                print(String(format: "winograd gradients %@ %@: input %.2e weight %.2e (vs im2col)", algorithm.rawValue, "\([n, c, oc, h, w])", ex, ew))
                XCTAssertLessThan(ex, 1e-4, "\(algorithm) input gradient relative error \(ex)")
                XCTAssertLessThan(ew, 1e-4, "\(algorithm) weight gradient relative error \(ew)")
            }
        }
    }

    func testFiniteDifferenceGradients() {
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            ConvAlgorithmSelection.forced = algorithm
            for p in [0, 1, 2] {
                checkGradients("winograd \(algorithm) p\(p)", inputs: [randomTensor([2, 3, 7, 6], seed: 30), randomTensor([4, 3, 3, 3], seed: 31, scale: 0.3), randomTensor([4], seed: 32)]) {
                    conv2d($0[0], weight: $0[1], bias: $0[2], padding: p)
                }
            }
            checkGradients("winograd \(algorithm) convTranspose k3 s1 p1", inputs: [randomTensor([2, 3, 5, 5], seed: 33), randomTensor([3, 2, 3, 3], seed: 34, scale: 0.3)]) {
                convTranspose2d($0[0], weight: $0[1], stride: 1, padding: 1)
            }
        }
    }

    func testResultsIndependentOfThreadsAndBatch() {
        let x = realisticInput([4, 32, 16, 16], seed: 40)
        let w = realisticWeight(outChannels: 32, channels: 32, seed: 41)
        let r = randomTensor([4, 32, 16, 16], seed: 42)
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            ConvAlgorithmSelection.forced = algorithm
            func run(threads: Int) -> ([Float], [Float], [Float]) {
                Parallel.setThreads(threads)
                let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                let wv = Tensor(shape: w.shape, data: w.data, requiresGrad: true)
                let y = conv2d(xv, weight: wv, padding: 1)
                sum(mul(y, r)).backward()
                return (y.data, xv.grad!, wv.grad!)
            }
            let one = run(threads: 1), three = run(threads: 3)
            XCTAssert(one.0 == three.0, "\(algorithm) forward depends on the thread count")
            XCTAssert(one.1 == three.1, "\(algorithm) input gradient depends on the thread count")
            XCTAssert(one.2 == three.2, "\(algorithm) weight gradient depends on the thread count")
            XCTAssert(run(threads: 1).0 == one.0, "\(algorithm) forward is not deterministic")
            // Image i alone agrees with image i in a batch up to float rounding: OpenBLAS's sgemm
            // rounds a column differently depending on its position and the matrix width (as the
            // im2col path, which also batches images into one GEMM), so bits may differ.
            let slice = (2 * 32 * 256)..<(3 * 32 * 256)
            let single = Tensor(shape: [1, 32, 16, 16], data: Array(x.data[slice]))
            let alone = withNoGrad { conv2d(single, weight: w, padding: 1) }
            let error = relativeError(alone.data, Array(one.0[slice]))
            XCTAssertLessThan(error, 1e-6, "\(algorithm) image alone vs in a batch")
        }
    }

    func testBiasAddedInsideOutputTransform() {
        let x = realisticInput([2, 16, 9, 12], seed: 50)
        let w = realisticWeight(outChannels: 24, channels: 16, seed: 51)
        let bias = randomTensor([24], seed: 52)
        ConvAlgorithmSelection.forced = .im2col
        let reference = withNoGrad { conv2d(x, weight: w, bias: bias, padding: 1) }
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            ConvAlgorithmSelection.forced = algorithm
            let y = withNoGrad { conv2d(x, weight: w, bias: bias, padding: 1) }
            XCTAssertLessThan(relativeError(y.data, reference.data), 1e-5, "\(algorithm) with bias")
        }
    }

    /// conv2d(…, residual: r) is conv2d(…) + r to the bit on every path (the add is done in
    /// Winograd's output stores: full quads, partial tiles, both input transforms; after the GEMM
    /// otherwise), and r receives dy unchanged.
    func testResidualAddedInsideOutputTransform() {
        defer { WinogradPlan.directInputEnabled = true }
        let cases: [(x: [Int], w: [Int], stride: Int, padding: Int)] = [
            ([2, 16, 9, 12], [24, 16, 3, 3], 1, 1), ([2, 16, 16, 16], [16, 16, 3, 3], 1, 1), ([1, 16, 32, 32], [16, 16, 3, 3], 1, 1),
            ([2, 8, 8, 8], [6, 8, 4, 4], 2, 1), ([2, 12, 5, 5], [7, 12, 1, 1], 1, 0)]
        for (k, shape) in cases.enumerated() {
            let x = realisticInput(shape.x, seed: 70 + UInt64(k))
            let w = randomTensor(shape.w, seed: 80 + UInt64(k), scale: 0.2), bias = randomTensor([shape.w[0]], seed: 90)
            let out = shape.stride == 1 ? shape.x[2] + 2 * shape.padding - shape.w[2] + 1 : shape.x[2] / 2
            let outShape = [shape.x[0], shape.w[0], out, shape.stride == 1 ? shape.x[3] + 2 * shape.padding - shape.w[3] + 1 : shape.x[3] / 2]
            let residual = randomTensor(outShape, seed: 95)
            for algorithm in [ConvAlgorithm.im2col, .winograd2, .winograd4] {
                for direct in [true, false] {
                    ConvAlgorithmSelection.forced = algorithm
                    WinogradPlan.directInputEnabled = direct
                    let plain = withNoGrad { conv2d(x, weight: w, bias: bias, stride: shape.stride, padding: shape.padding) }
                    let r = Tensor(shape: outShape, data: residual.data, requiresGrad: true)
                    let fused = conv2d(x, weight: w, bias: bias, stride: shape.stride, padding: shape.padding, residual: r)
                    XCTAssertEqual(fused.data, zip(plain.data, residual.data).map { $0 + $1 }, "\(shape) \(algorithm) direct \(direct)")
                    let upstream = randomTensor(outShape, seed: 96)
                    sum(mul(fused, upstream)).backward()
                    XCTAssertEqual(r.grad!, upstream.data, "\(shape) \(algorithm): residual gradient")
                }
            }
        }
        ConvAlgorithmSelection.forced = .winograd4
        checkGradients("winograd4 with residual", inputs: [randomTensor([2, 3, 7, 6], seed: 97), randomTensor([4, 3, 3, 3], seed: 98, scale: 0.3),
                                                           randomTensor([4], seed: 99), randomTensor([2, 4, 7, 6], seed: 100)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1, residual: $0[3])
        }
    }

    func testTransformedFiltersReusedOnlyForUnchangedWeights() {
        let cache = WinogradFilterCache.shared
        cache.removeAll()
        let x = realisticInput([2, 16, 12, 12], seed: 60)
        let w = realisticWeight(outChannels: 16, channels: 16, seed: 61)
        for algorithm in [ConvAlgorithm.winograd2, .winograd4] {
            ConvAlgorithmSelection.forced = algorithm
            let first = withNoGrad { conv2d(x, weight: w, padding: 1) }
            let hits = cache.hits
            let again = withNoGrad { conv2d(x, weight: w, padding: 1) }
            XCTAssertEqual(cache.hits, hits + 1, "\(algorithm): unchanged weights reuse their transformed filters")
            XCTAssert(again.data == first.data, "\(algorithm): reused filters give the same bits")
            // One weight changed in place, as an optimiser step does: the next call must use it.
            w.data[5] += 0.5
            let entries = cache.entryCount
            let changed = withNoGrad { conv2d(x, weight: w, padding: 1) }
            XCTAssertEqual(cache.entryCount, entries, "\(algorithm): changed weights overwrite their layer's entry")
            ConvAlgorithmSelection.forced = .im2col
            let reference = withNoGrad { conv2d(x, weight: w, padding: 1) }
            XCTAssertLessThan(relativeError(changed.data, reference.data), 1e-5, "\(algorithm) after a weight changed")
            w.data[5] -= 0.5
        }
        // 4×4 stride 2: the polyphase forward and the sub-pixel transposed convolution of the same
        // weights are different filters; each must match im2col when both are cached.
        let xs = realisticInput([2, 16, 8, 8], seed: 62)
        let ws = randomTensor([16, 16, 4, 4], seed: 63, scale: 0.05)
        ConvAlgorithmSelection.forced = .im2col
        let down = withNoGrad { conv2d(xs, weight: ws, stride: 2, padding: 1) }
        let up = withNoGrad { convTranspose2d(xs, weight: ws, stride: 2, padding: 1) }
        ConvAlgorithmSelection.forced = .winograd4
        for _ in 0..<2 {
            XCTAssertLessThan(relativeError(withNoGrad { conv2d(xs, weight: ws, stride: 2, padding: 1) }.data, down.data), 1e-5)
            XCTAssertLessThan(relativeError(withNoGrad { convTranspose2d(xs, weight: ws, stride: 2, padding: 1) }.data, up.data), 1e-5)
        }
        // Over capacity: the least recently used entries go, results stay right.
        let saved = WinogradFilterCache.capacity
        defer { WinogradFilterCache.capacity = saved }
        WinogradFilterCache.capacity = 16 * 16 * 36 + 16 * 16 * 9
        ConvAlgorithmSelection.forced = .winograd4
        XCTAssertLessThan(relativeError(withNoGrad { conv2d(xs, weight: ws, stride: 2, padding: 1) }.data, down.data), 1e-5)
        XCTAssertLessThan(relativeError(withNoGrad { conv2d(x, weight: w, padding: 1) }.data, im2colConvolution(x, w)), 1e-5)
        cache.removeAll()
    }

    /// The im2col result of the 3×3 padding-1 convolution.
    private func im2colConvolution(_ x: Tensor, _ w: Tensor) -> [Float] {
        let saved = ConvAlgorithmSelection.forced
        defer { ConvAlgorithmSelection.forced = saved }
        ConvAlgorithmSelection.forced = .im2col
        return withNoGrad { conv2d(x, weight: w, padding: 1) }.data
    }

    func testSelectionRuleDependsOnShapeOnly() {
        ConvAlgorithmSelection.forced = nil
        let small = ConvGeometry(channels: 1, height: 64, width: 64, kernelH: 3, kernelW: 3, stride: 1, padding: 1)
        XCTAssertEqual(ConvAlgorithmSelection.algorithm(small, outChannels: 32, pass: .forward), .im2col)
        let strided = ConvGeometry(channels: 64, height: 64, width: 64, kernelH: 3, kernelW: 3, stride: 2, padding: 1)
        XCTAssertEqual(ConvAlgorithmSelection.algorithm(strided, outChannels: 64, pass: .forward), .im2col)
        let fourByFour = ConvGeometry(channels: 64, height: 64, width: 64, kernelH: 4, kernelW: 4, stride: 1, padding: 1)
        XCTAssertEqual(ConvAlgorithmSelection.algorithm(fourByFour, outChannels: 64, pass: .forward), .im2col)
    }
}
