import XCTest
import Foundation
@testable import Engine
@testable import Layers
@testable import Imaging
@testable import Evaluation
import TestSupport
import Core

/// Hand-checkable cases and invariants of the metrics, the neighbour search and the .npy files.
final class MetricPropertyTests: XCTestCase {
    func testFrechetDistanceOfNonCommutingGaussiansHasTheClosedForm() throws {
        // For 2×2 PSD M: tr √M = √(tr M + 2√det M). Σ₁Σ₂ = [[2, 3], [1, 6]]: tr 8, det 9.
        let s1 = Matrix(rows: 2, columns: 2, values: [2, 1, 1, 2]), s2 = Matrix(rows: 2, columns: 2, values: [1, 0, 0, 3])
        let fd = try frechetDistance(mean1: [1, 2], cov1: s1, mean2: [0, 0], cov2: s2)
        XCTAssertEqual(fd, 5 + 4 + 4 - 2 * (14.0).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(try frechetDistance(mean1: [1, 2], cov1: s1, mean2: [1, 2], cov2: s1), 0, accuracy: 1e-12)
    }

    func testFrechetBreakdownHasTheClosedFormOnDiagonalGaussians() throws {
        // Real variances 4, 2, 1, 0.5, 0.5 (total 8): the largest three hold 7/8 ≥ 80 %, two hold 6/8.
        let real = Matrix(rows: 5, columns: 5, values: (0..<25).map { [0, 6, 12, 18, 24].contains($0) ? [4.0, 2, 1, 0.5, 0.5][$0 / 6] : 0 })
        // Synthetic: half the variance along the main directions, three times as much outside, means 1 apart.
        let synthetic = Matrix(rows: 5, columns: 5, values: (0..<25).map { [0, 6, 12, 18, 24].contains($0) ? [2.0, 1, 0.5, 1.5, 1.5][$0 / 6] : 0 })
        let realMean = [Double](repeating: 0, count: 5), syntheticMean = [1.0, 0, 0, 0, 0]
        let fid = try frechetDistance(mean1: realMean, cov1: real, mean2: syntheticMean, cov2: synthetic)
        let b = try frechetBreakdown(realMean: realMean, realCovariance: real, syntheticMean: syntheticMean, syntheticCovariance: synthetic, fid: fid)
        XCTAssertEqual(b.principal_directions, 3)
        XCTAssertEqual(b.mean_term, 1, accuracy: 1e-12)
        XCTAssertEqual(b.mean_term + b.covariance_term, fid, accuracy: 1e-12)
        // Diagonal: Σ (√a − √b)² over the axes.
        let expected = zip([4.0, 2, 1, 0.5, 0.5], [2.0, 1, 0.5, 1.5, 1.5]).reduce(0) { $0 + ($1.0.squareRoot() - $1.1.squareRoot()) * ($1.0.squareRoot() - $1.1.squareRoot()) }
        XCTAssertEqual(b.covariance_term, expected, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(b.spread_ratio_principal), 0.5, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(b.spread_ratio_outside), 3, accuracy: 1e-9)
    }

    func testIntensityQuantilesMatchSortedOrderStatistics() {
        var stream = RandomStream(seed: 12)
        // A skewed mix: a dark background spike and a spread of tissue values, as in a scan.
        let values = (0..<20_000).map { i -> Float in i % 3 == 0 ? -1 : max(-1, min(1, 0.4 + 0.3 * stream.normal())) }
        let sorted = values.sorted()
        let levels = [0.01, 0.25, 0.5, 0.75, 0.9, 0.99]
        let quantiles = intensityQuantiles(values, levels: levels)
        for (level, q) in zip(levels, quantiles) {
            let exact = Double(sorted[Int((level * Double(values.count)).rounded(.up)) - 1])
            XCTAssertEqual(q, exact, accuracy: 1.0 / 2048 + 1e-9, "level \(level)")
        }
        XCTAssertEqual(intensityQuantiles([0.5, 0.5], levels: [0.5])[0], 0.5, accuracy: 1.0 / 2048)
    }

    func testFrechetBreakdownOfSampledSets() throws {
        let real = gaussianMatrix(rows: 400, columns: 6, mean: [Double](repeating: 0, count: 6), std: [3, 2, 0.3, 0.3, 0.3, 0.3], seed: 31)
        func metrics(_ synthetic: Matrix) throws -> FrechetBreakdown {
            let (m1, c1) = meanAndCovariance(real), (m2, c2) = meanAndCovariance(synthetic)
            let fid = try frechetDistance(mean1: m1, cov1: c1, mean2: m2, cov2: c2)
            let b = try frechetBreakdown(realMean: m1, realCovariance: c1, syntheticMean: m2, syntheticCovariance: c2, fid: fid)
            XCTAssertEqual(b.mean_term + b.covariance_term, fid, accuracy: 1e-9 * max(fid, 1))
            return b
        }
        let same = try metrics(real)
        XCTAssertEqual(same.mean_term, 0, accuracy: 1e-12)
        XCTAssertEqual(same.covariance_term, 0, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(same.spread_ratio_principal), 1, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(same.spread_ratio_outside), 1, accuracy: 1e-9)
        // Shifted by (1, 1, …): only the mean term moves.
        var shifted = real
        for i in shifted.values.indices { shifted.values[i] += 1 }
        let shift = try metrics(shifted)
        XCTAssertEqual(shift.mean_term, 6, accuracy: 1e-9)
        XCTAssertEqual(shift.covariance_term, 0, accuracy: 1e-6)
        // Shrunk to 0.6× about the mean: both spreads scale by 0.36.
        let (mean, _) = meanAndCovariance(real)
        var shrunk = real
        for r in 0..<real.rows { for c in 0..<real.columns { shrunk[r, c] = mean[c] + 0.6 * (real[r, c] - mean[c]) } }
        let shrink = try metrics(shrunk)
        XCTAssertEqual(try XCTUnwrap(shrink.spread_ratio_principal), 0.36, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(shrink.spread_ratio_outside), 0.36, accuracy: 1e-9)
        // Noise in the four weak directions only (texture the real set lacks): outside grows about
        // fivefold ((0.09 + 0.36) / 0.09), the main directions (variances 9 and 4 of 13.36) stay.
        let noise = gaussianMatrix(rows: 400, columns: 6, mean: [Double](repeating: 0, count: 6), std: [0, 0, 0.6, 0.6, 0.6, 0.6], seed: 32)
        var noisy = real
        for i in noisy.values.indices { noisy.values[i] += noise.values[i] }
        let textured = try metrics(noisy)
        XCTAssertEqual(textured.principal_directions, 2)
        XCTAssertEqual(try XCTUnwrap(textured.spread_ratio_principal), 1, accuracy: 0.01)
        XCTAssertGreaterThan(try XCTUnwrap(textured.spread_ratio_outside), 3)
        // Two real images: one direction holds all their variance, nothing is left outside.
        let pair = Matrix(rows: 2, columns: 3, values: [0, 0, 0, 1, 2, 3])
        let (pm, pc) = meanAndCovariance(pair)
        let single = try frechetBreakdown(realMean: pm, realCovariance: pc, syntheticMean: pm, syntheticCovariance: pc, fid: 0)
        XCTAssertEqual(single.principal_directions, 1)
        XCTAssertNil(single.spread_ratio_outside)
    }

    func testNearestNeighboursMatchBruteForce() {
        let a = gaussianMatrix(rows: 300, columns: 5, mean: [Double](repeating: 0, count: 5), std: [Double](repeating: 1, count: 5), seed: 11)
        let b = gaussianMatrix(rows: 170, columns: 5, mean: [Double](repeating: 0.3, count: 5), std: [Double](repeating: 1, count: 5), seed: 12)
        func brute(_ x: ArraySlice<Double>, _ y: ArraySlice<Double>) -> Double { zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() }
        let cross = nearestNeighbours(a, in: b, k: 3)
        let within = nearestNeighbours(a, in: a, k: 4, excludingSelf: true)
        for i in 0..<a.rows {
            let expected = (0..<b.rows).map { (brute(a.row(i), b.row($0)), $0) }.sorted { $0.0 < $1.0 }
            for j in 0..<3 {
                XCTAssertEqual(cross.distance(i, j), expected[j].0, accuracy: 1e-9)
                XCTAssertEqual(cross.index(i, j), expected[j].1)
            }
            let own = (0..<a.rows).filter { $0 != i }.map { brute(a.row(i), a.row($0)) }.sorted()
            XCTAssertEqual(within.radii[i], own[3], accuracy: 1e-9)
        }
        // The PRDC pass finds each fake row's nearest real row on the way.
        let viaPRDC = prdcWithNearestReal(real: a, fake: b, k: 3, realNeighbours: nil).nearestReal
        let direct = nearestNeighbours(b, in: a, k: 1)
        XCTAssertEqual(viaPRDC.indices, direct.indices)
        for j in 0..<b.rows { XCTAssertEqual(viaPRDC.distance(j), direct.distance(j), accuracy: 1e-12) }
        let d = pairwiseDistances(Matrix(rows: 2, columns: 2, values: [0, 0, 3, 4]), Matrix(rows: 1, columns: 2, values: [0, 0]))
        XCTAssertEqual(d.values, [0, 5])
    }

    func testPRDCOnAHandCheckableLine() {
        // Real 0,1,2,3 (1-NN radius 1 each); fake 0.5 and 10 (radius 9.5 each), k = 1.
        let real = Matrix(rows: 4, columns: 1, values: [0, 1, 2, 3]), fake = Matrix(rows: 2, columns: 1, values: [0.5, 10])
        let r = precisionRecallDensityCoverage(real: real, fake: fake, k: 1)
        XCTAssertEqual(r.precision, 0.5)  // only 0.5 lies in a real ball
        XCTAssertEqual(r.recall, 1)       // 0.5's ball (radius 9.5) holds every real point
        XCTAssertEqual(r.density, 1)      // 0.5 is in 2 real balls, 10 in none: 2 / (k · 2)
        XCTAssertEqual(r.coverage, 0.5)   // 0 and 1 have a fake within radius 1; 2 and 3 do not
    }

    func testKIDDependsOnlyOnTheSeed() {
        let a = gaussianMatrix(rows: 120, columns: 6, mean: [Double](repeating: 0, count: 6), std: [Double](repeating: 1, count: 6), seed: 21)
        let b = gaussianMatrix(rows: 100, columns: 6, mean: [Double](repeating: 0.2, count: 6), std: [Double](repeating: 1, count: 6), seed: 22)
        let saved = Parallel.workers
        defer { Parallel.setThreads(saved) }
        Parallel.setThreads(1)
        let one = kernelInceptionDistance(a, b, subsets: 7, subsetSize: 50, seed: 3)
        Parallel.setThreads(2)
        let two = kernelInceptionDistance(a, b, subsets: 7, subsetSize: 50, seed: 3)
        XCTAssertEqual(one.mean, two.mean); XCTAssertEqual(one.std, two.std)
        XCTAssertNotEqual(kernelInceptionDistance(a, b, subsets: 7, subsetSize: 50, seed: 4).mean, one.mean)
        // Brute force for one subset covering both sets entirely (every permutation gives the same MMD²).
        let x = Matrix(rows: 4, columns: 2, values: [0, 1, 1, 0, 1, 1, 2, 0]), y = Matrix(rows: 4, columns: 2, values: [1, 2, 0, 0, 2, 2, 1, 1])
        func k(_ p: ArraySlice<Double>, _ q: ArraySlice<Double>) -> Double { let v = zip(p, q).map(*).reduce(0, +) / 2 + 1; return v * v * v }
        var kxx = 0.0, kyy = 0.0, kxy = 0.0
        for i in 0..<4 { for j in 0..<4 {
            if i != j { kxx += k(x.row(i), x.row(j)); kyy += k(y.row(i), y.row(j)) }
            kxy += k(x.row(i), y.row(j))
        } }
        XCTAssertEqual(kernelInceptionDistance(x, y, subsets: 3).mean, (kxx + kyy) / 12 - 2 * kxy / 16, accuracy: 1e-9)
    }

    func testIntensityWassersteinOfAShiftIsTheShift() {
        let a = [Float](repeating: -0.5, count: 100), b = [Float](repeating: 0.5, count: 80)
        XCTAssertEqual(histogramWasserstein(a, b), 1, accuracy: 1e-12)
        XCTAssertEqual(histogramWasserstein(a, a), 0)
    }

    func testNPYFloat32AndFloat64RoundTripWithAlignedHeaders() throws {
        let dir = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: dir) }
        let m = Matrix(rows: 3, columns: 2, values: [1, -2.5, 3, 0.125, 1e-3, 6])
        for type in [NPYType.float32, .float64] {
            let url = dir.appendingPathComponent("m-\(type).npy")
            try writeNPY(m, to: url, as: type)
            let back = try readNPY(at: url)
            for (x, y) in zip(back.values, m.values) { XCTAssertEqual(x, Double(type == .float32 ? Double(Float(y)) : y)) }
            let bytes = [UInt8](try Data(contentsOf: url))
            let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            XCTAssertEqual((10 + headerLength) % 64, 0)
            XCTAssertEqual(bytes.count, 10 + headerLength + 6 * (type == .float32 ? 4 : 8))
            XCTAssertEqual(bytes[10 + headerLength - 1], UInt8(ascii: "\n"))
        }
        try Data("not numpy".utf8).write(to: dir.appendingPathComponent("bad.npy"))
        XCTAssertThrowsError(try readNPY(at: dir.appendingPathComponent("bad.npy"))) { XCTAssert("\($0)".contains("bad.npy")) }
    }

    func testHistogramChartDrawsBarsAxesAndMarker() {
        let chart = histogramChart([ChartSeries(values: [0, 1, 0, 0], colour: (255, 0, 0))], width: 130, height: 60, marker: 0.75)
        XCTAssertEqual(chart.width, 130); XCTAssertEqual(chart.height, 60); XCTAssertEqual(chart.channels, 3)
        // Plot area x 30..<122, y 8..<40; bin 1 covers x 53..<76 and reaches the top.
        func px(_ x: Int, _ y: Int) -> [UInt16] { (0..<3).map { chart[x, y, $0] } }
        XCTAssertEqual(px(60, 30)[0], 255); XCTAssertLessThan(px(60, 30)[1], 200)   // inside the bar: red tint
        XCTAssertEqual(px(60, 8), [255, 0, 0])                                         // the bar's outline
        XCTAssertEqual(px(40, 30), [255, 255, 255])                                    // empty bin
        XCTAssertEqual(px(80, 40), [0, 0, 0])                                          // x axis
        XCTAssertEqual(px(99, 9), [214, 39, 40])                                       // dashed marker at 3/4
    }
}

/// The feature network: fixed, batch-independent, loadable from safetensors.
final class FeatureNetworkTests: XCTestCase {
    func blobs(_ count: Int, seed: UInt64, blur: Int = 0, noise: Float = 0.1) -> [Float] {
        var s = RandomStream(seed: seed)
        var out: [Float] = []
        for _ in 0..<count {
            let cx = s.uniform(16, 48), cy = s.uniform(16, 48), r = s.uniform(5, 14)
            var v = [Float](repeating: 0, count: 64 * 64)
            for y in 0..<64 { for x in 0..<64 {
                let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                v[y * 64 + x] = (d < r ? 0.7 : -0.8) + noise * s.normal()
            } }
            out += boxBlur(v, radius: blur)
        }
        return out
    }

    /// Separable box blur of a 64×64 image with clamped edges.
    func boxBlur(_ v: [Float], radius: Int) -> [Float] {
        guard radius > 0 else { return v }
        var h = v, out = v
        for y in 0..<64 { for x in 0..<64 {
            var s: Float = 0
            for d in -radius...radius { s += v[y * 64 + min(63, max(0, x + d))] }
            h[y * 64 + x] = s / Float(2 * radius + 1)
        } }
        for y in 0..<64 { for x in 0..<64 {
            var s: Float = 0
            for d in -radius...radius { s += h[min(63, max(0, y + d)) * 64 + x] }
            out[y * 64 + x] = s / Float(2 * radius + 1)
        } }
        return out
    }

    func features(_ net: FeatureNetwork, _ pixels: [Float]) -> Matrix {
        let n = pixels.count / 4096
        return Matrix(rows: n, columns: net.dimension, values: net.features(Tensor(shape: [n, 1, 64, 64], data: pixels)))
    }

    func testNetworkIsFixedAndBatchIndependent() {
        let a = FeatureNetwork(), b = FeatureNetwork()
        XCTAssertEqual(a.dimension, 512)
        for (x, y) in zip(a.namedTensors(), b.namedTensors()) { XCTAssertEqual(x.tensor.data, y.tensor.data, x.name) }
        // He-normal scale: the first layer's weights have variance ≈ 2/9.
        let w = a.namedTensors().first { $0.name == "conv0.weight" }!.tensor.data
        let variance = w.map { Double($0 * $0) }.reduce(0, +) / Double(w.count)
        XCTAssertEqual(variance, 2.0 / 9, accuracy: 0.06)
        let pixels = blobs(5, seed: 1)
        let batch = features(a, pixels)
        let single = features(a, Array(pixels[3 * 4096..<4 * 4096]))
        for c in 0..<512 { XCTAssertEqual(batch[3, c], single[0, c], accuracy: 1e-5 * max(1, abs(single[0, c]))) }
    }

    func testFrechetDistanceGrowsWithBlur() throws {
        let net = FeatureNetwork()
        // The same 48 images, blurred more and more: at radius 0 the distance is 0, and no
        // between-sample bias (large at 48 images in 512 dimensions) hides the trend.
        let real = features(net, blobs(48, seed: 2))
        var previous = -1.0
        for radius in [0, 1, 2, 4, 8] {
            let fd = try frechetDistance(real, features(net, blobs(48, seed: 2, blur: radius)))
            if radius == 0 { XCTAssertEqual(fd, 0, accuracy: 1e-6) }
            XCTAssertGreaterThan(fd, previous, "blur radius \(radius)")
            previous = fd
        }
    }

    func testWeightsLoadFromSafetensorsAndBadFilesAreNamed() throws {
        let dir = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: dir) }
        let reference = FeatureNetwork()
        // A "trained" encoder: the default weights halved (LeakyReLU is positively homogeneous, so
        // four layers scale the features by 1/16 exactly).
        let entries = reference.safetensorsEntries().map { SafetensorsEntry(name: $0.name, shape: $0.shape, values: $0.values.map { $0 / 2 }) }
        let url = dir.appendingPathComponent("encoder.safetensors")
        try writeSafetensors(entries, to: url)
        let loaded = try FeatureNetwork(weights: url)
        XCTAssertEqual(loaded.source, url.path)
        let pixels = blobs(2, seed: 4)
        let f0 = features(reference, pixels), f1 = features(loaded, pixels)
        for i in f0.values.indices { XCTAssertEqual(f1.values[i], f0.values[i] / 16, accuracy: 1e-6 * max(1, abs(f0.values[i]))) }
        let wrong = dir.appendingPathComponent("wrong.safetensors")
        try writeSafetensors(Array(entries.dropLast()), to: wrong)
        XCTAssertThrowsError(try FeatureNetwork(weights: wrong)) { XCTAssert("\($0)".contains("wrong.safetensors"), "\($0)") }
    }
}
