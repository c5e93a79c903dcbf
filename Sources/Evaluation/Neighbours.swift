import CBLAS
import Dispatch
import Core
import Engine

// MARK: - Blocked Euclidean distances and k nearest neighbours
//
// 10,000 × 10,000 distances are 800 MB in Float64, and the metrics only need a few numbers per
// row (the k nearest, a count, a minimum). So distances are made a block of rows at a time,
// ‖a‖² + ‖b‖² − 2 a·b with the dot products from cblas_dgemm, handed to a visitor and dropped.
// Blocks run on `Parallel.workers` threads, each driving a single-threaded OpenBLAS.

/// Squared Euclidean norm of every row.
func rowSquaredNorms(_ m: Matrix) -> [Double] {
    var out = [Double](repeating: 0, count: m.rows)
    m.values.withUnsafeBufferPointer { v in
        for r in 0..<m.rows {
            var s = 0.0
            for c in 0..<m.columns { let x = v[r * m.columns + c]; s += x * x }
            out[r] = s
        }
    }
    return out
}

/// Calls `visit(worker, i, distances)` once for every row i of `a`, where `distances[j]` is the
/// Euclidean distance from row i of `a` to row j of `b` (`b.rows` values, valid only during the
/// call). Rows are visited concurrently, by `worker` in 0..<`workerCount(a.rows)`, each row once;
/// the visitor must only write to state owned by row i or by `worker`.
func forEachDistanceRow(_ a: Matrix, _ b: Matrix, blockRows: Int = 128,
                        _ visit: (_ worker: Int, _ i: Int, _ distances: UnsafeBufferPointer<Double>) -> Void) {
    precondition(a.columns == b.columns, "forEachDistanceRow: \(a.columns) vs \(b.columns) columns")
    guard a.rows > 0, b.rows > 0 else { return }
    Parallel.configureBLAS()
    let na = rowSquaredNorms(a), nb = rowSquaredNorms(b)
    let d = a.columns, nbRows = b.rows
    let blocks = (a.rows + blockRows - 1) / blockRows
    let workers = distanceWorkers(a.rows, blockRows: blockRows)
    a.values.withUnsafeBufferPointer { ap in
        b.values.withUnsafeBufferPointer { bp in
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var block = [Double](repeating: 0, count: blockRows * nbRows)
                block.withUnsafeMutableBufferPointer { out in
                    var blockIndex = worker
                    while blockIndex < blocks {
                        let r0 = blockIndex * blockRows, rows = min(blockRows, a.rows - r0)
                        // out[i, j] = a_i · b_j for the rows of this block.
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(nbRows), Int32(d), 1,
                                    ap.baseAddress! + r0 * d, Int32(d), bp.baseAddress!, Int32(d), 0, out.baseAddress!, Int32(nbRows))
                        for i in 0..<rows {
                            let row = out.baseAddress! + i * nbRows, ni = na[r0 + i]
                            // Rounding can make the expansion slightly negative for (near-)equal rows.
                            for j in 0..<nbRows { row[j] = max(ni + nb[j] - 2 * row[j], 0).squareRoot() }
                            visit(worker, r0 + i, UnsafeBufferPointer(start: row, count: nbRows))
                        }
                        blockIndex += workers
                    }
                }
            }
        }
    }
}

/// Worker count `forEachDistanceRow` uses for `rows` rows (size per-worker accumulators with it).
func distanceWorkers(_ rows: Int, blockRows: Int = 128) -> Int {
    max(1, min(Parallel.workers, (rows + blockRows - 1) / blockRows))
}

/// The k nearest rows of `b` for every row of `a`, nearest first.
public struct NearestNeighbours {
    public let k: Int
    /// rows(a) × k distances, ascending within each row.
    public var distances: [Double]
    /// rows(a) × k row indices into `b`, matching `distances`.
    public var indices: [Int]

    /// Distance from row i to its j-th nearest neighbour (j = 0 is the nearest).
    public func distance(_ i: Int, _ j: Int = 0) -> Double { distances[i * k + j] }
    public func index(_ i: Int, _ j: Int = 0) -> Int { indices[i * k + j] }
    /// The distance to the k-th neighbour of every row: the radius of its k-NN ball.
    public var radii: [Double] { stride(from: k - 1, to: distances.count, by: k).map { distances[$0] } }
}

/// k nearest neighbours of each row of `a` among the rows of `b` (Euclidean). With
/// `excludingSelf` (a and b the same set), row i is not its own neighbour; duplicates are.
/// `k` is reduced to the number of candidates when there are fewer; ties keep the lower index.
public func nearestNeighbours(_ a: Matrix, in b: Matrix, k: Int, excludingSelf: Bool = false) -> NearestNeighbours {
    let kk = max(1, min(k, b.rows - (excludingSelf ? 1 : 0)))
    var distances = [Double](repeating: .infinity, count: a.rows * kk)
    var indices = [Int](repeating: -1, count: a.rows * kk)
    distances.withUnsafeMutableBufferPointer { dist in
        indices.withUnsafeMutableBufferPointer { idx in
            forEachDistanceRow(a, b) { _, i, row in
                let dRow = dist.baseAddress! + i * kk, iRow = idx.baseAddress! + i * kk
                // Insertion into a sorted list of kk: O(n·k) per row, no sort of the full row.
                for j in 0..<row.count where !(excludingSelf && j == i) {
                    let v = row[j]
                    if v >= dRow[kk - 1] { continue }
                    var p = kk - 1
                    while p > 0 && dRow[p - 1] > v { dRow[p] = dRow[p - 1]; iRow[p] = iRow[p - 1]; p -= 1 }
                    dRow[p] = v; iRow[p] = j
                }
            }
        }
    }
    return NearestNeighbours(k: kk, distances: distances, indices: indices)
}

/// Euclidean distances between every row of `a` and every row of `b`, as a full matrix (for
/// small sets and tests; the metrics use the blocked visitor).
public func pairwiseDistances(_ a: Matrix, _ b: Matrix) -> Matrix {
    var out = Matrix(rows: a.rows, columns: b.rows)
    out.values.withUnsafeMutableBufferPointer { o in
        forEachDistanceRow(a, b) { _, i, row in
            (o.baseAddress! + i * b.rows).update(from: row.baseAddress!, count: b.rows)
        }
    }
    return out
}
