import CBLAS
import Dispatch
import Foundation
import Core
import Engine

// MARK: - Distribution metrics on feature matrices (rows = images)

/// Fréchet distance between Gaussian fits (Heusel et al. 2017, the FID formula):
/// ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂).
public func frechetDistance(_ a: Matrix, _ b: Matrix) throws -> Double {
    let (m1, s1) = meanAndCovariance(a), (m2, s2) = meanAndCovariance(b)
    return try frechetDistance(mean1: m1, cov1: s1, mean2: m2, cov2: s2)
}

/// The Fréchet distance from means and covariances (d-vectors, d×d symmetric PSD matrices).
/// Rounding can leave a tiny negative value for equal inputs; the result is clamped at 0.
public func frechetDistance(mean1: [Double], cov1: Matrix, mean2: [Double], cov2: Matrix) throws -> Double {
    precondition(mean1.count == mean2.count && cov1.rows == mean1.count && cov2.rows == mean1.count, "frechetDistance: dimensions differ")
    var meanTerm = 0.0
    for i in mean1.indices { meanTerm += (mean1[i] - mean2[i]) * (mean1[i] - mean2[i]) }
    var traces = 0.0
    for i in 0..<cov1.rows { traces += cov1[i, i] + cov2[i, i] }
    return max(0, meanTerm + traces - 2 * (try traceSqrtProduct(cov1, cov2)))
}

/// Where a Fréchet distance comes from, and how the synthetic set spreads compared with the real
/// one: a shift of the whole set (mean term) or a mismatch of the spreads (covariance term), and
/// along which directions. The real set's main directions are its principal axes, the fewest that
/// hold `principalVarianceShare` of its variance. Less synthetic variance along them than real
/// means less varied images (a ratio below 1: fewer kinds of image, or averaged ones); more outside
/// them means variation the real images do not have (above 1: texture, noise, artefacts).
public struct FrechetBreakdown: Codable, Equatable {
    /// ‖μ_real − μ_synthetic‖².
    public var mean_term: Double
    /// The rest of the distance: tr Σ_real + tr Σ_synthetic − 2 tr √(Σ_real Σ_synthetic).
    public var covariance_term: Double
    /// How many of the real set's principal directions are its main ones.
    public var principal_directions: Int
    /// Synthetic ÷ real variance along the main directions; nil when the real variance there is 0.
    public var spread_ratio_principal: Double?
    /// Synthetic ÷ real variance outside the main directions; nil when the real set has none there
    /// (fewer images than directions needed).
    public var spread_ratio_outside: Double?

    public static let principalVarianceShare = 0.8
}

/// The breakdown of `fid` (computed from the same means and covariances, real first).
public func frechetBreakdown(realMean: [Double], realCovariance: Matrix, syntheticMean: [Double], syntheticCovariance: Matrix,
                             fid: Double) throws -> FrechetBreakdown {
    var meanTerm = 0.0
    for i in realMean.indices { meanTerm += (realMean[i] - syntheticMean[i]) * (realMean[i] - syntheticMean[i]) }
    let d = realCovariance.rows
    let (values, vectors) = try symmetricEigen(realCovariance)
    var realTotal = 0.0, syntheticTotal = 0.0
    for i in 0..<d { realTotal += realCovariance[i, i]; syntheticTotal += syntheticCovariance[i, i] }
    // Largest eigenvalues first until the share is reached.
    var kept = 0, realPrincipal = 0.0
    for k in stride(from: d - 1, through: 0, by: -1) where realPrincipal < FrechetBreakdown.principalVarianceShare * realTotal {
        realPrincipal += max(values[k], 0); kept += 1
    }
    kept = max(kept, 1)
    var syntheticPrincipal = 0.0
    for k in (d - kept)..<d {
        // vᵀ Σ_synthetic v for eigenvector k.
        var quadratic = 0.0
        for i in 0..<d {
            var row = 0.0
            for j in 0..<d { row += syntheticCovariance[i, j] * vectors[j, k] }
            quadratic += vectors[i, k] * row
        }
        syntheticPrincipal += quadratic
    }
    let realOutside = realTotal - realPrincipal, syntheticOutside = syntheticTotal - syntheticPrincipal
    // Rounding leaves a tiny remainder where the real set has no variance left outside.
    let outsideMeasurable = realOutside > 1e-9 * max(realTotal, 1e-300)
    return FrechetBreakdown(mean_term: meanTerm, covariance_term: max(0, fid - meanTerm), principal_directions: kept,
                            spread_ratio_principal: realPrincipal > 0 ? syntheticPrincipal / realPrincipal : nil,
                            spread_ratio_outside: outsideMeasurable ? max(0, syntheticOutside) / realOutside : nil)
}

/// Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", Eq. 4 with the
/// kernel of Section 4): the unbiased estimate of MMD² with k(x, y) = (x·y/d + 1)³, on `subsets`
/// random subsets of `subsetSize` rows of each set (default min(1000, n), drawn without
/// replacement); returns the mean and standard deviation over subsets. Subset s draws from
/// `RandomStream(seed:).split(s)`, so the result does not depend on the number of threads.
/// When both sets have no more rows than the subset size, every "subset" is the whole of both
/// sets: the estimate is computed once and its std is NaN (there is no spread to report, and
/// 0 would read as a perfectly certain number); callers print it as "n/a (one subset)".
/// Dot products come from float32 GEMMs (half the time of float64; about 1e-6 relative error
/// per product, which averages out over the m² kernel values); kernels and sums are float64.
public func kernelInceptionDistance(_ a: Matrix, _ b: Matrix, subsets: Int = 100, subsetSize: Int? = nil, seed: UInt64 = 0) -> (mean: Double, std: Double) {
    precondition(a.columns == b.columns, "kernelInceptionDistance: \(a.columns) vs \(b.columns) feature columns")
    let m = min(subsetSize ?? 1000, a.rows, b.rows), d = a.columns
    guard m >= 2, subsets >= 1 else { return (.nan, .nan) }
    let root = RandomStream(seed: seed).split(.kidSubsets)
    let onlyOneSubset = a.rows == m && b.rows == m
    let subsets = onlyOneSubset ? 1 : subsets
    var values = [Double](repeating: 0, count: subsets)
    Parallel.configureBLAS()
    let workers = max(1, min(Parallel.workers, subsets))
    values.withUnsafeMutableBufferPointer { out in
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var xs = [Float](repeating: 0, count: m * d), ys = xs
            var gram = [Float](repeating: 0, count: m * m)
            var s = worker
            while s < subsets {
                var stream = root.split(UInt64(s))
                let ia = stream.permutation(a.rows).prefix(m), ib = stream.permutation(b.rows).prefix(m)
                for (r, i) in ia.enumerated() { for c in 0..<d { xs[r * d + c] = Float(a.values[i * d + c]) } }
                for (r, i) in ib.enumerated() { for c in 0..<d { ys[r * d + c] = Float(b.values[i * d + c]) } }
                let kxx = cubicKernelSum(xs, xs, m: m, d: d, gram: &gram, offDiagonal: true)
                let kyy = cubicKernelSum(ys, ys, m: m, d: d, gram: &gram, offDiagonal: true)
                let kxy = cubicKernelSum(xs, ys, m: m, d: d, gram: &gram, offDiagonal: false)
                let mm = Double(m)
                out[s] = (kxx + kyy) / (mm * (mm - 1)) - 2 * kxy / (mm * mm)
                s += workers
            }
        }
    }
    let mean = values.reduce(0, +) / Double(values.count)
    if onlyOneSubset { return (mean, .nan) }
    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(values.count - 1, 1))
    return (mean, variance.squareRoot())
}

/// Σ (x_i·y_j/d + 1)³ over all i, j (or over i ≠ j when x and y are the same subset), with the
/// dot products from one GEMM (SYRK for the symmetric case: the upper triangle, doubled).
private func cubicKernelSum(_ x: [Float], _ y: [Float], m: Int, d: Int, gram: inout [Float], offDiagonal: Bool) -> Double {
    var total = 0.0
    let scale = 1 / Double(d)
    gram.withUnsafeMutableBufferPointer { g in
        if offDiagonal {
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(m), Int32(d), 1, x, Int32(d), 0, g.baseAddress!, Int32(m))
            for i in 0..<m {
                var row = 0.0
                for j in i + 1..<m { let v = Double(g[i * m + j]) * scale + 1; row += v * v * v }
                total += 2 * row
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(m), Int32(d), 1,
                        x, Int32(d), y, Int32(d), 0, g.baseAddress!, Int32(m))
            for i in 0..<m * m { let v = Double(g[i]) * scale + 1; total += v * v * v }
        }
    }
    return total
}

/// Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
/// Assessing Generative Models", Eq. 1–2) and density and coverage (Naeem et al. 2020,
/// "Reliable Fidelity and Diversity Metrics for Generative Models", Eq. 1–2), on k-NN balls:
/// a sample is inside a set's manifold when its distance to some member is at most that
/// member's distance to its own k-th nearest neighbour (self excluded).
public struct PRDC: Codable, Equatable {
    public var precision, recall, density, coverage: Double
    /// The k used (reduced when a set has k or fewer images).
    public var k: Int
}

/// PRDC of `fake` against `real` with k nearest neighbours; both sets need at least 2 rows.
/// `realNeighbours` may pass the real set's own neighbours (computed with the same k) to reuse them.
public func precisionRecallDensityCoverage(real: Matrix, fake: Matrix, k: Int = 5, realNeighbours: NearestNeighbours? = nil) -> PRDC {
    prdcWithNearestReal(real: real, fake: fake, k: k, realNeighbours: realNeighbours).prdc
}

/// PRDC, plus each fake row's nearest real row, found in the same pass over the real-fake
/// distances (the memorisation check needs exactly that when the training set is the real set).
func prdcWithNearestReal(real: Matrix, fake: Matrix, k: Int, realNeighbours: NearestNeighbours?) -> (prdc: PRDC, nearestReal: NearestNeighbours) {
    precondition(real.rows >= 2 && fake.rows >= 2, "PRDC needs at least 2 real and 2 fake rows, got \(real.rows) and \(fake.rows)")
    let kk = max(1, min(k, real.rows - 1, fake.rows - 1))
    let realNN = realNeighbours.flatMap { $0.k == kk ? $0 : nil } ?? nearestNeighbours(real, in: real, k: kk, excludingSelf: true)
    let realRadii = realNN.radii
    let fakeRadii = nearestNeighbours(fake, in: fake, k: kk, excludingSelf: true).radii
    let workers = distanceWorkers(real.rows), nf = fake.rows
    // Per worker, for each fake j: how many real balls contain it, and its nearest real row so far
    // (merged after the pass).
    var inside = [[Int]](repeating: [Int](repeating: 0, count: nf), count: workers)
    var nearestDistance = [[Double]](repeating: [Double](repeating: .infinity, count: nf), count: workers)
    var nearestIndex = [[Int]](repeating: [Int](repeating: -1, count: nf), count: workers)
    var recalled = [Bool](repeating: false, count: real.rows), covered = recalled
    inside.withUnsafeMutableBufferPointer { inside in
    nearestDistance.withUnsafeMutableBufferPointer { nearestDistance in
    nearestIndex.withUnsafeMutableBufferPointer { nearestIndex in
    recalled.withUnsafeMutableBufferPointer { recalled in
    covered.withUnsafeMutableBufferPointer { covered in
        forEachDistanceRow(real, fake) { worker, i, row in
            let radius = realRadii[i]
            var nearest = Double.infinity, inFakeManifold = false
            inside[worker].withUnsafeMutableBufferPointer { counts in
            nearestDistance[worker].withUnsafeMutableBufferPointer { best in
            nearestIndex[worker].withUnsafeMutableBufferPointer { bestIndex in
                for j in 0..<nf {
                    let dist = row[j]
                    if dist <= radius { counts[j] += 1 }
                    if dist <= fakeRadii[j] { inFakeManifold = true }
                    if dist < best[j] { best[j] = dist; bestIndex[j] = i }
                    nearest = min(nearest, dist)
                }
            } } }
            recalled[i] = inFakeManifold
            covered[i] = nearest <= radius
        }
    } } } } }
    var precisionCount = 0, densitySum = 0
    var nearestReal = NearestNeighbours(k: 1, distances: [Double](repeating: .infinity, count: nf), indices: [Int](repeating: -1, count: nf))
    for j in 0..<nf {
        var c = 0
        for w in 0..<workers {
            c += inside[w][j]
            let d = nearestDistance[w][j], idx = nearestIndex[w][j]
            // Ties go to the lower real index, as in `nearestNeighbours`.
            if d < nearestReal.distances[j] || (d == nearestReal.distances[j] && idx < nearestReal.indices[j]) {
                nearestReal.distances[j] = d; nearestReal.indices[j] = idx
            }
        }
        if c > 0 { precisionCount += 1 }
        densitySum += c
    }
    let nr = Double(real.rows), nff = Double(nf)
    let prdc = PRDC(precision: Double(precisionCount) / nff, recall: Double(recalled.filter { $0 }.count) / nr,
                    density: Double(densitySum) / (Double(kk) * nff), coverage: Double(covered.filter { $0 }.count) / nr, k: kk)
    return (prdc, nearestReal)
}

/// Wasserstein-1 distance between two value distributions on [−1, 1], through 256-bin histograms:
/// Σ |CDF₁ − CDF₂| · bin width.
public func histogramWasserstein(_ a: [Float], _ b: [Float], bins: Int = 256) -> Double {
    let ha = histogram(a, bins: bins), hb = histogram(b, bins: bins)
    var ca = 0.0, cb = 0.0, total = 0.0
    for i in 0..<bins { ca += ha[i]; cb += hb[i]; total += abs(ca - cb) }
    return total * 2 / Double(bins)
}

/// Values of `values` (in [−1, 1]) at the cumulative fractions `levels`, from a 2,048-bin histogram
/// (bin centres, so within 1/2048 of the exact order statistic) without copying or sorting the pixels.
public func intensityQuantiles(_ values: [Float], levels: [Double]) -> [Double] {
    let bins = 2048, fractions = histogram(values, bins: bins)
    return levels.map { level in
        var running = 0.0
        for (i, f) in fractions.enumerated() {
            running += f
            // A hair below the level, so rounding in the running sum cannot skip the bin that reaches it.
            if running >= level - 1e-12 { return -1 + (Double(i) + 0.5) * 2 / Double(bins) }
        }
        return 1
    }
}

/// Normalised histogram of values in [−1, 1].
public func histogram(_ values: [Float], bins: Int = 256) -> [Double] {
    var h = [Double](repeating: 0, count: bins)
    for v in values { h[min(bins - 1, max(0, Int((v + 1) / 2 * Float(bins))))] += 1 }
    let n = Double(max(values.count, 1))
    return h.map { $0 / n }
}
