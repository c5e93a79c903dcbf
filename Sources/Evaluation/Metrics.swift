import Foundation
import Engine

// MARK: - Distribution metrics on feature matrices (rows = images)

/// Fréchet distance between Gaussian fits (Heusel et al. 2017, the FID formula):
/// ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂).
public func frechetDistance(_ a: Matrix, _ b: Matrix) throws -> Double {
    let (m1, s1) = meanAndCovariance(a), (m2, s2) = meanAndCovariance(b)
    return try frechetDistance(mean1: m1, cov1: s1, mean2: m2, cov2: s2)
}

public func frechetDistance(mean1: [Double], cov1: Matrix, mean2: [Double], cov2: Matrix) throws -> Double {
    var meanTerm = 0.0
    for i in mean1.indices { meanTerm += (mean1[i] - mean2[i]) * (mean1[i] - mean2[i]) }
    var traces = 0.0
    for i in 0..<cov1.rows { traces += cov1[i, i] + cov2[i, i] }
    return max(0, meanTerm + traces - 2 * (try traceSqrtProduct(cov1, cov2)))
}

/// Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with k(x, y) = (x·y/d + 1)³,
/// averaged over random subsets; returns mean and standard deviation over subsets.
public func kernelInceptionDistance(_ a: Matrix, _ b: Matrix, subsets: Int = 100, subsetSize: Int? = nil, seed: UInt64 = 0) -> (mean: Double, std: Double) {
    let d = Double(a.columns)
    let m = min(subsetSize ?? 1000, a.rows, b.rows)
    guard m >= 2 else { return (.nan, .nan) }
    var stream = RandomStream(seed: seed).split(0x41D)
    func kernel(_ x: ArraySlice<Double>, _ y: ArraySlice<Double>) -> Double {
        var dot = 0.0
        for (p, q) in zip(x, y) { dot += p * q }
        let v = dot / d + 1
        return v * v * v
    }
    var values: [Double] = []
    for _ in 0..<subsets {
        let ia = Array(stream.permutation(a.rows).prefix(m)), ib = Array(stream.permutation(b.rows).prefix(m))
        var kxx = 0.0, kyy = 0.0, kxy = 0.0
        for i in 0..<m {
            for j in 0..<m {
                if i != j {
                    kxx += kernel(a.row(ia[i]), a.row(ia[j]))
                    kyy += kernel(b.row(ib[i]), b.row(ib[j]))
                }
                kxy += kernel(a.row(ia[i]), b.row(ib[j]))
            }
        }
        let mm = Double(m)
        values.append(kxx / (mm * (mm - 1)) + kyy / (mm * (mm - 1)) - 2 * kxy / (mm * mm))
    }
    let mean = values.reduce(0, +) / Double(values.count)
    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(values.count - 1, 1))
    return (mean, variance.squareRoot())
}

/// Euclidean distances between every row of a and every row of b.
public func pairwiseDistances(_ a: Matrix, _ b: Matrix) -> Matrix {
    var out = Matrix(rows: a.rows, columns: b.rows)
    let na = (0..<a.rows).map { r in a.row(r).reduce(0) { $0 + $1 * $1 } }
    let nb = (0..<b.rows).map { r in b.row(r).reduce(0) { $0 + $1 * $1 } }
    var dots = [Double](repeating: 0, count: a.rows * b.rows)
    if a.rows > 0 && b.rows > 0 {
        cblas_dgemm_rowmajor(a, b, &dots)
    }
    for i in 0..<a.rows { for j in 0..<b.rows { out[i, j] = max(na[i] + nb[j] - 2 * dots[i * b.rows + j], 0).squareRoot() } }
    return out
}

/// Distance from each row to its k-th nearest other row of the same set.
func kthNeighbourRadii(_ distances: Matrix, k: Int) -> [Double] {
    (0..<distances.rows).map { i in
        var row = Array(distances.row(i))
        row.remove(at: i)
        row.sort()
        return row[min(k, row.count) - 1]
    }
}

/// Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020),
/// with k-nearest-neighbour balls.
public struct PRDC: Codable, Equatable {
    public var precision, recall, density, coverage: Double
    public var k: Int
}

public func precisionRecallDensityCoverage(real: Matrix, fake: Matrix, k: Int = 5) -> PRDC {
    let rr = pairwiseDistances(real, real), ff = pairwiseDistances(fake, fake), rf = pairwiseDistances(real, fake)
    let kk = max(1, min(k, real.rows - 1, fake.rows - 1))
    let realRadii = kthNeighbourRadii(rr, k: kk), fakeRadii = kthNeighbourRadii(ff, k: kk)
    var precisionCount = 0, densitySum = 0
    for j in 0..<fake.rows {
        var inside = 0
        for i in 0..<real.rows where rf[i, j] <= realRadii[i] { inside += 1 }
        if inside > 0 { precisionCount += 1 }
        densitySum += inside
    }
    var recallCount = 0, coverageCount = 0
    for i in 0..<real.rows {
        var nearest = Double.infinity, covered = false
        for j in 0..<fake.rows {
            if rf[i, j] <= fakeRadii[j] { covered = true }
            nearest = min(nearest, rf[i, j])
        }
        if covered { recallCount += 1 }
        if nearest <= realRadii[i] { coverageCount += 1 }
    }
    return PRDC(precision: Double(precisionCount) / Double(fake.rows), recall: Double(recallCount) / Double(real.rows),
                density: Double(densitySum) / Double(kk * fake.rows), coverage: Double(coverageCount) / Double(real.rows), k: kk)
}

/// Wasserstein-1 distance between two value distributions on [−1, 1], through 256-bin histograms:
/// Σ |CDF₁ − CDF₂| · bin width.
public func histogramWasserstein(_ a: [Float], _ b: [Float], bins: Int = 256) -> Double {
    let ha = histogram(a, bins: bins), hb = histogram(b, bins: bins)
    var ca = 0.0, cb = 0.0, total = 0.0
    for i in 0..<bins { ca += ha[i]; cb += hb[i]; total += abs(ca - cb) }
    return total * 2 / Double(bins)
}

/// Normalised histogram of values in [−1, 1].
public func histogram(_ values: [Float], bins: Int = 256) -> [Double] {
    var h = [Double](repeating: 0, count: bins)
    for v in values { h[min(bins - 1, max(0, Int((v + 1) / 2 * Float(bins))))] += 1 }
    let n = Double(max(values.count, 1))
    return h.map { $0 / n }
}
