import CBLAS
import Core
import Engine

// MARK: - Dense Float64 linear algebra for feature statistics (row-major n×d matrices)

/// A row-major matrix of Doubles.
public struct Matrix: Equatable {
    public let rows: Int, columns: Int
    public var values: [Double]
    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(values.count == rows * columns, "Matrix: \(values.count) values for \(rows)×\(columns)")
        self.rows = rows; self.columns = columns; self.values = values
    }
    public init(rows: Int, columns: Int) { self.init(rows: rows, columns: columns, values: [Double](repeating: 0, count: rows * columns)) }
    public subscript(r: Int, c: Int) -> Double {
        get { values[r * columns + c] }
        set { values[r * columns + c] = newValue }
    }
    public func row(_ r: Int) -> ArraySlice<Double> { values[r * columns..<(r + 1) * columns] }
}

/// Column means and the unbiased covariance (divisor n − 1, as numpy.cov in pytorch-fid).
public func meanAndCovariance(_ x: Matrix) -> (mean: [Double], covariance: Matrix) {
    let n = x.rows, d = x.columns
    var mean = [Double](repeating: 0, count: d)
    for r in 0..<n { for c in 0..<d { mean[c] += x[r, c] } }
    for c in 0..<d { mean[c] /= Double(n) }
    var centered = x.values
    for r in 0..<n { for c in 0..<d { centered[r * d + c] -= mean[c] } }
    var cov = [Double](repeating: 0, count: d * d)
    // C = Xcᵀ Xc / (n − 1) through BLAS.
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(n), 1 / Double(max(n - 1, 1)),
                centered, Int32(d), centered, Int32(d), 0, &cov, Int32(d))
    return (mean, Matrix(rows: d, columns: d, values: cov))
}

/// Eigenvalues (ascending) and eigenvectors (columns of a row-major matrix: V[i, k] is
/// component i of vector k) of a symmetric matrix, by LAPACK's dsyevd.
public func symmetricEigen(_ a: Matrix) throws -> (values: [Double], vectors: Matrix) {
    precondition(a.rows == a.columns, "symmetricEigen: matrix is \(a.rows)×\(a.columns)")
    // LAPACK's behaviour on NaN/infinity is undefined; features from a diverged encoder end here.
    guard a.values.allSatisfy(\.isFinite) else { throw MedSynthError("eigen-decomposition: the matrix has NaN or infinite entries (non-finite features?)") }
    var n = Int32(a.rows), lda = n, info: Int32 = 0
    // LAPACK is column-major; a symmetric matrix is its own transpose.
    var work = a.values
    var w = [Double](repeating: 0, count: a.rows)
    var lwork: Int32 = -1, liwork: Int32 = -1
    var workQuery = 0.0, iworkQuery: Int32 = 0
    var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "U"))
    dsyevd_(&jobz, &uplo, &n, &work, &lda, &w, &workQuery, &lwork, &iworkQuery, &liwork, &info)
    lwork = Int32(workQuery); liwork = iworkQuery
    var scratch = [Double](repeating: 0, count: Int(lwork)), iscratch = [Int32](repeating: 0, count: Int(liwork))
    dsyevd_(&jobz, &uplo, &n, &work, &lda, &w, &scratch, &lwork, &iscratch, &liwork, &info)
    guard info == 0 else { throw MedSynthError("eigen-decomposition failed (LAPACK dsyevd info \(info))") }
    // Column-major output: eigenvector k is work[k·n ..< (k+1)·n]; transpose into row-major V.
    let d = a.rows
    var v = [Double](repeating: 0, count: d * d)
    for k in 0..<d { for i in 0..<d { v[i * d + k] = work[k * d + i] } }
    return (w, Matrix(rows: d, columns: d, values: v))
}

func multiply(_ a: Matrix, _ b: Matrix) -> Matrix {
    var c = [Double](repeating: 0, count: a.rows * b.columns)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(a.rows), Int32(b.columns), Int32(a.columns), 1,
                a.values, Int32(a.columns), b.values, Int32(b.columns), 0, &c, Int32(b.columns))
    return Matrix(rows: a.rows, columns: b.columns, values: c)
}

/// tr(√(Σ₁Σ₂)) for symmetric PSD Σ₁, Σ₂, computed stably as Σ√μᵢ over the eigenvalues μ of the
/// symmetric PSD matrix √Σ₁ Σ₂ √Σ₁, which has the same spectrum as Σ₁Σ₂ (tiny negative
/// eigenvalues from rounding are clamped to 0).
public func traceSqrtProduct(_ s1: Matrix, _ s2: Matrix) throws -> Double {
    let (l1, v1) = try symmetricEigen(s1)
    let d = s1.rows
    var scaled = v1
    for i in 0..<d { for k in 0..<d { scaled[i, k] *= max(l1[k], 0).squareRoot() } }
    var vt = Matrix(rows: d, columns: d)
    for i in 0..<d { for k in 0..<d { vt[k, i] = v1[i, k] } }
    let sqrt1 = multiply(scaled, vt)
    var m = multiply(multiply(sqrt1, s2), sqrt1)
    // Symmetrise against rounding before the symmetric solver.
    for i in 0..<d { for j in i + 1..<d { let avg = 0.5 * (m[i, j] + m[j, i]); m[i, j] = avg; m[j, i] = avg } }
    let (mu, _) = try symmetricEigen(m)
    return mu.reduce(0) { $0 + max($1, 0).squareRoot() }
}
