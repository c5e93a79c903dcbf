import XCTest
import TestSupport
@testable import Engine

/// 4×4 stride-2 padding-1 convolutions and transposed convolutions by Winograd F(m×m, 2×2) on the
/// polyphase / sub-pixel decomposition (Winograd.swift, (A)–(C)), for m = 2, 3, 4: against a
/// float64 direct convolution, against the im2col path, by finite differences, and for
/// independence from the thread count.
final class StrideTwoWinogradTests: XCTestCase {
    static let tiles: [ConvAlgorithm] = [.winograd2, .winograd3, .winograd4]

    override func setUp() { GradMode.isEnabled = true }
    override func tearDown() { ConvAlgorithmSelection.forced = nil; Parallel.setThreads(ProcessInfoCores.count) }

    /// Batch-normalised, LeakyReLU(0.2) activations, as between the DCGAN's layers.
    func realisticInput(_ shape: [Int], seed: UInt64) -> Tensor {
        let t = randomTensor(shape, seed: seed)
        return Tensor(shape: shape, data: t.data.map { $0 > 0 ? $0 : 0.2 * $0 })
    }

    /// DCGAN initialisation, N(0, 0.02).
    func dcganWeight(_ shape: [Int], seed: UInt64) -> Tensor { randomTensor(shape, seed: seed, scale: 0.02) }

    /// Float64 conv 4×4, stride 2, padding 1.
    func directConv(_ x: Tensor, _ w: Tensor) -> [Double] {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], oc = w.shape[0]
        let oh = (h + 2 - 4) / 2 + 1, ow = (wd + 2 - 4) / 2 + 1
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for img in 0..<n { for o in 0..<oc { for i in 0..<oh { for j in 0..<ow {
            var s = 0.0
            for ci in 0..<c { for a in 0..<4 { for b in 0..<4 {
                let ih = 2 * i - 1 + a, iw = 2 * j - 1 + b
                if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
                s += Double(x.data[((img * c + ci) * h + ih) * wd + iw]) * Double(w.data[((o * c + ci) * 4 + a) * 4 + b])
            } } }
            out[((img * oc + o) * oh + i) * ow + j] = s
        } } } }
        return out
    }

    /// Float64 transposed conv 4×4, stride 2, padding 1, by its definition (every input pixel scatters the kernel).
    func directTransposed(_ x: Tensor, _ w: Tensor) -> [Double] {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], oc = w.shape[1]
        let oh = 2 * h, ow = 2 * wd
        var out = [Double](repeating: 0, count: n * oc * oh * ow)
        for img in 0..<n { for ci in 0..<c { for i in 0..<h { for j in 0..<wd {
            let v = Double(x.data[((img * c + ci) * h + i) * wd + j])
            for o in 0..<oc { for a in 0..<4 { for b in 0..<4 {
                let y = 2 * i - 1 + a, z = 2 * j - 1 + b
                if y < 0 || y >= oh || z < 0 || z >= ow { continue }
                out[((img * oc + o) * oh + y) * ow + z] += v * Double(w.data[((ci * oc + o) * 4 + a) * 4 + b])
            } } }
        } } } }
        return out
    }

    // Shapes (n, c, oc, h, w): whole and partial tiles, a 1×1 output, rows of 8 tiles (the
    // phase-split input copy) for m = 2, 3 and 4, and tasks spanning images.
    static let convShapes: [(Int, Int, Int, Int, Int)] = [
        (2, 8, 6, 16, 16), (3, 5, 7, 10, 14), (1, 4, 3, 2, 2), (2, 6, 5, 8, 32), (1, 3, 4, 12, 48), (1, 5, 4, 8, 64), (9, 16, 24, 8, 8),
    ]

    func testConvForwardMatchesDirectConvolutionForEveryTile() {
        for algorithm in Self.tiles {
            for (n, c, oc, h, w) in Self.convShapes {
                let x = realisticInput([n, c, h, w], seed: 10)
                let weight = dcganWeight([oc, c, 4, 4], seed: 11)
                let reference = directConv(x, weight)
                ConvAlgorithmSelection.forced = algorithm
                let y = withNoGrad { conv2d(x, weight: weight, stride: 2, padding: 1) }
                ConvAlgorithmSelection.forced = .im2col
                let y0 = withNoGrad { conv2d(x, weight: weight, stride: 2, padding: 1) }
                XCTAssertEqual(y.shape, [n, oc, h / 2, w / 2])
                let error = relativeError(y.data, reference), baseline = relativeError(y0.data, reference)
                let versusIm2col = relativeError(y.data, y0.data)
                print(String(format: "stride-2 forward %@ %@: relative error %.2e vs float64 (im2col %.2e), %.2e vs im2col",
                             algorithm.rawValue, "\([n, c, oc, h, w])", error, baseline, versusIm2col))
                XCTAssertLessThan(error, 1e-4, "\(algorithm) \([n, c, oc, h, w])")
                XCTAssertLessThan(versusIm2col, 1e-4, "\(algorithm) \([n, c, oc, h, w]) vs im2col")
                // im2col itself, 2×2 inputs included (their last kernel column lies outside the image).
                XCTAssertLessThan(baseline, 1e-5, "im2col \([n, c, oc, h, w])")
            }
        }
    }

    func testTransposedForwardMatchesDefinitionForEveryTile() {
        // (n, c_in, oc, h, w) of the transposed conv: output 2h × 2w.
        let shapes: [(Int, Int, Int, Int, Int)] = [(2, 8, 6, 8, 8), (1, 5, 3, 3, 5), (2, 6, 4, 16, 16), (1, 3, 2, 1, 1), (1, 4, 5, 4, 24), (9, 24, 16, 4, 4)]
        for algorithm in Self.tiles {
            for (n, c, oc, h, w) in shapes {
                let x = realisticInput([n, c, h, w], seed: 12)
                let weight = dcganWeight([c, oc, 4, 4], seed: 13)
                let reference = directTransposed(x, weight)
                ConvAlgorithmSelection.forced = algorithm
                let y = withNoGrad { convTranspose2d(x, weight: weight, stride: 2, padding: 1) }
                ConvAlgorithmSelection.forced = .im2col
                let y0 = withNoGrad { convTranspose2d(x, weight: weight, stride: 2, padding: 1) }
                XCTAssertEqual(y.shape, [n, oc, 2 * h, 2 * w])
                let error = relativeError(y.data, reference), versusIm2col = relativeError(y.data, y0.data)
                print(String(format: "stride-2 transposed forward %@ %@: relative error %.2e vs float64 (im2col %.2e), %.2e vs im2col",
                             algorithm.rawValue, "\([n, c, oc, h, w])", error, relativeError(y0.data, reference), versusIm2col))
                XCTAssertLessThan(error, 1e-4, "\(algorithm) \([n, c, oc, h, w])")
                XCTAssertLessThan(versusIm2col, 1e-4, "\(algorithm) \([n, c, oc, h, w]) vs im2col")
                XCTAssertLessThan(relativeError(y0.data, reference), 1e-5, "col2im \([n, c, oc, h, w])")
            }
        }
    }

    /// Input and weight gradients of conv2d and convTranspose2d through Winograd against im2col.
    func testGradientsMatchIm2col() {
        for algorithm in Self.tiles {
            for (n, c, oc, h, w) in [(2, 16, 12, 16, 16), (3, 6, 10, 10, 6), (2, 8, 8, 16, 64), (5, 32, 16, 4, 4)] {
                let x = realisticInput([n, c, h, w], seed: 20)
                let weight = dcganWeight([oc, c, 4, 4], seed: 21)
                let r = randomTensor([n, oc, h / 2, w / 2], seed: 22)
                let xt = realisticInput([n, oc, h / 2, w / 2], seed: 23)
                let rt = randomTensor([n, c, h, w], seed: 24)
                func gradients(_ choice: ConvAlgorithm) -> [[Float]] {
                    ConvAlgorithmSelection.forced = choice
                    let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                    let wv = Tensor(shape: weight.shape, data: weight.data, requiresGrad: true)
                    sum(mul(conv2d(xv, weight: wv, stride: 2, padding: 1), r)).backward()
                    // The transposed conv with the same weight (C_in = oc) maps oc×h/2 back to c×h.
                    let xtv = Tensor(shape: xt.shape, data: xt.data, requiresGrad: true)
                    let wtv = Tensor(shape: weight.shape, data: weight.data, requiresGrad: true)
                    sum(mul(convTranspose2d(xtv, weight: wtv, stride: 2, padding: 1), rt)).backward()
                    return [xv.grad!, wv.grad!, xtv.grad!, wtv.grad!]
                }
                let fast = gradients(algorithm), reference = gradients(.im2col)
                let names = ["conv input", "conv weight", "transposed input", "transposed weight"]
                for k in 0..<4 {
                    let error = relativeError(fast[k], reference[k])
                    print(String(format: "stride-2 gradient %@ %@ %@: %.2e vs im2col", algorithm.rawValue, "\([n, c, oc, h, w])", names[k], error))
                    XCTAssertLessThan(error, 1e-4, "\(algorithm) \([n, c, oc, h, w]) \(names[k])")
                }
            }
        }
    }

    func testFiniteDifferenceGradients() {
        for algorithm in Self.tiles {
            ConvAlgorithmSelection.forced = algorithm
            checkGradients("stride-2 conv \(algorithm)", inputs: [randomTensor([2, 3, 6, 8], seed: 30), randomTensor([4, 3, 4, 4], seed: 31, scale: 0.3),
                                                              randomTensor([4], seed: 32)]) {
                conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
            }
            checkGradients("stride-2 transposed conv \(algorithm)", inputs: [randomTensor([2, 3, 3, 5], seed: 33), randomTensor([3, 2, 4, 4], seed: 34, scale: 0.3),
                                                                         randomTensor([2], seed: 35)]) {
                convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
            }
        }
    }

    func testOddSizesFallBackToIm2col() {
        let odd = ConvGeometry(channels: 32, height: 15, width: 16, kernelH: 4, kernelW: 4, stride: 2, padding: 1)
        XCTAssertFalse(ConvAlgorithmSelection.strideTwoEligible(odd))
        ConvAlgorithmSelection.forced = .winograd4
        XCTAssertEqual(ConvAlgorithmSelection.algorithm(odd, outChannels: 32, pass: .forward), .im2col)
        let x = realisticInput([2, 3, 7, 9], seed: 40), w = dcganWeight([5, 3, 4, 4], seed: 41)
        let y = withNoGrad { conv2d(x, weight: w, stride: 2, padding: 1) }
        XCTAssertEqual(y.shape, [2, 5, 3, 4])
        XCTAssertLessThan(relativeError(y.data, directConv(x, w)), 1e-5)
        checkGradients("odd-sized stride-2 conv", inputs: [randomTensor([1, 2, 5, 7], seed: 42), randomTensor([3, 2, 4, 4], seed: 43, scale: 0.3)]) {
            conv2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
        // F(3×3, 3×3) does not exist: a 3×3 layer forced to winograd3 keeps its rule.
        let threeByThree = ConvGeometry(channels: 64, height: 16, width: 16, kernelH: 3, kernelW: 3, stride: 1, padding: 1)
        ConvAlgorithmSelection.forced = .winograd3
        XCTAssertEqual(ConvAlgorithmSelection.algorithm(threeByThree, outChannels: 64, pass: .forward), .winograd4)
    }

    func testSelectionRuleForTheDCGANLayers() {
        ConvAlgorithmSelection.forced = nil
        ConvAlgorithmSelection.forcedWeightGradient = nil
        // (C, OC, H) of the discriminator's convolutions; a generator layer is its convolution's transpose.
        for (c, oc, h) in [(64, 128, 32), (128, 256, 16), (256, 512, 8)] {
            let g = ConvGeometry(channels: c, height: h, width: h, kernelH: 4, kernelW: 4, stride: 2, padding: 1)
            for pass in ConvAlgorithmSelection.Pass.allCases {
                XCTAssertEqual(ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: pass), .winograd4, "\([c, oc, h]) \(pass)")
            }
        }
        // D1 (1 → 64) and G5 (64 → 1, the convolution 1 → 64): one channel keeps im2col.
        let oneChannel = ConvGeometry(channels: 1, height: 64, width: 64, kernelH: 4, kernelW: 4, stride: 2, padding: 1)
        for pass in ConvAlgorithmSelection.Pass.allCases {
            XCTAssertEqual(ConvAlgorithmSelection.algorithm(oneChannel, outChannels: 64, pass: pass), .im2col)
        }
    }

    func testResultsIndependentOfThreads() {
        // Two to four tasks for every tile size (WinogradPlan): task-parallel on 1 worker, task by
        // task with split stages on 3; the weight gradient uses as many lanes as tasks.
        let x = realisticInput([10, 64, 16, 32], seed: 50)
        let w = dcganWeight([64, 64, 4, 4], seed: 51)
        let r = randomTensor([10, 64, 8, 16], seed: 52)
        for m in [2, 3, 4] {
            let g = ConvGeometry(channels: 64, height: 16, width: 32, kernelH: 4, kernelW: 4, stride: 2, padding: 1)
            let tasks = WinogradPlan(.polyphase(g, outChannels: 64), batch: 10, outChannels: 64, m: m, r: 2).tasks
            XCTAssert((2...4).contains(tasks), "m = \(m): \(tasks) tasks")
        }
        for algorithm in Self.tiles {
            ConvAlgorithmSelection.forced = algorithm
            func run(threads: Int) -> [[Float]] {
                Parallel.setThreads(threads)
                let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                let wv = Tensor(shape: w.shape, data: w.data, requiresGrad: true)
                let y = conv2d(xv, weight: wv, stride: 2, padding: 1)
                sum(mul(y, r)).backward()
                let t = convTranspose2d(Tensor(shape: r.shape, data: r.data), weight: w, stride: 2, padding: 1)
                return [y.data, xv.grad!, wv.grad!, t.data]
            }
            let one = run(threads: 1), two = run(threads: 2), three = run(threads: 3)
            for (k, name) in ["forward", "input gradient", "weight gradient", "transposed forward"].enumerated() {
                XCTAssert(one[k] == two[k] && one[k] == three[k], "\(algorithm) \(name) depends on the thread count")
            }
        }
    }

    func testDCGANLayerErrorsAtFullSize() {
        // The discriminator's D2 and the generator's G3 at batch 2, every tile size, every pass.
        let x = realisticInput([2, 64, 32, 32], seed: 60), w = dcganWeight([128, 64, 4, 4], seed: 61)
        let r = randomTensor([2, 128, 16, 16], seed: 62)
        for algorithm in Self.tiles {
            func passes(_ choice: ConvAlgorithm) -> [[Float]] {
                ConvAlgorithmSelection.forced = choice
                let xv = Tensor(shape: x.shape, data: x.data, requiresGrad: true)
                let wv = Tensor(shape: w.shape, data: w.data, requiresGrad: true)
                let y = conv2d(xv, weight: wv, stride: 2, padding: 1)
                sum(mul(y, r)).backward()
                return [y.data, xv.grad!, wv.grad!]
            }
            let fast = passes(algorithm), reference = passes(.im2col)
            for (k, name) in ["forward", "input gradient", "weight gradient"].enumerated() {
                let error = relativeError(fast[k], reference[k])
                print(String(format: "stride-2 D2 64→128 @32 %@ %@: %.2e vs im2col", algorithm.rawValue, name, error))
                XCTAssertLessThan(error, 1e-4, "\(algorithm) \(name)")
            }
        }
    }
}
