import Foundation

// MARK: - Masked Poisson solver

/// Solves the discrete Poisson equation of Pérez, Gangnet & Blake (2003, "Poisson image editing",
/// eq. 7) on an arbitrary domain Ω inside a small grid:
///
///     4 f_p − Σ_{q ∈ N_p ∩ Ω} f_q = b_p      for p ∈ Ω,
///
/// i.e. the 5-point Laplacian with Dirichlet values already folded into `b`. The matrix is
/// symmetric positive definite, so it is solved by conjugate gradients preconditioned with the
/// modified incomplete Cholesky factorisation MIC(0) (Gustafsson 1978; the form in Bridson,
/// "Fluid Simulation for Computer Graphics", §5.3), which needs O(n^¼) iterations on an n-pixel
/// domain. Everything runs in Double on a padded grid so the stencil needs no bounds checks.
struct MaskedPoissonSolver {
    /// Grid width and height; the outermost ring of cells is never in Ω.
    let width: Int
    let height: Int
    /// 1 for cells of Ω, 0 elsewhere.
    let inside: [Double]
    /// MIC(0) factor: inverse square root of the pivot (0 outside Ω).
    let pivot: [Double]
    /// Off-diagonal factor entries towards the west and north neighbour: A_{q,p} · pivot_q.
    let west: [Double]
    let north: [Double]
    /// Smallest eigenvalue bound for the stopping rule (the Dirichlet Laplacian of Ω's bounding box).
    let lambdaMin: Double
    let unknowns: Int

    /// - Parameter domain: row-major 0/1 of `width * height`; cells on the outer ring must be 0.
    init(domain: [UInt8], width: Int, height: Int) {
        precondition(domain.count == width * height && width >= 3 && height >= 3)
        self.width = width
        self.height = height
        var inside = [Double](repeating: 0, count: width * height)
        var x0 = width, x1 = -1, y0 = height, y1 = -1, n = 0
        for y in 0..<height {
            for x in 0..<width where domain[y * width + x] != 0 {
                precondition(x > 0 && y > 0 && x < width - 1 && y < height - 1, "Poisson domain touches the grid edge")
                inside[y * width + x] = 1
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
                n += 1
            }
        }
        self.inside = inside
        self.unknowns = n
        // λ_min of the Dirichlet Laplacian on a bw × bh rectangle; Ω's matrix is a principal
        // submatrix of it, so by Cauchy interlacing its own λ_min is at least this.
        let bw = Double(max(1, x1 - x0 + 1)), bh = Double(max(1, y1 - y0 + 1))
        let sx = sin(Double.pi / (2 * (bw + 1))), sy = sin(Double.pi / (2 * (bh + 1)))
        lambdaMin = 4 * (sx * sx + sy * sy)

        // MIC(0) with τ = 0.97 and the safety σ = 0.25 (Bridson, Figure 5.7).
        let tau = 0.97, sigma = 0.25
        var pivot = [Double](repeating: 0, count: width * height)
        var west = [Double](repeating: 0, count: width * height)
        var north = [Double](repeating: 0, count: width * height)
        for c in (width + 1)..<(width * (height - 1) - 1) where inside[c] != 0 {
            // Links to the west (c−1) and north (c−W) neighbours: A entry −1 when both are in Ω.
            let aw = -inside[c - 1], an = -inside[c - width]
            let pw = pivot[c - 1], pn = pivot[c - width]
            // Entries of the west cell's east-south links and the north cell's south-east links.
            let westDown = -inside[c - 1 + width] * inside[c - 1]
            let northRight = -inside[c - width + 1] * inside[c - width]
            var e = 4 - (aw * pw) * (aw * pw) - (an * pn) * (an * pn)
                - tau * (aw * westDown * pw * pw + an * northRight * pn * pn)
            if e < sigma * 4 { e = 4 }
            pivot[c] = 1 / e.squareRoot()
            west[c] = aw * pw
            north[c] = an * pn
        }
        self.pivot = pivot
        self.west = west
        self.north = north
    }

    /// Solves A x = b on Ω, starting from `x` (values outside Ω are ignored and left alone).
    /// Stops when ‖r‖₂ ≤ `tolerance` · λ_min, which bounds every pixel's error by `tolerance`.
    /// Returns the number of iterations. (Solving several channels in one interleaved sweep was
    /// measured slower than one channel at a time: the single-channel loops vectorise.)
    @discardableResult
    func solve(b: [Double], x: inout [Double], tolerance: Double, maxIterations: Int? = nil) -> Int {
        let count = width * height, w = width
        precondition(b.count == count && x.count == count, "MaskedPoissonSolver.solve: sizes")
        let lo = w + 1, hi = w * (height - 1) - 1
        var r = [Double](repeating: 0, count: count)
        var z = [Double](repeating: 0, count: count)
        var p = [Double](repeating: 0, count: count)
        var ap = [Double](repeating: 0, count: count)
        let limit = maxIterations ?? max(50, 2 * unknowns)
        let threshold = tolerance * lambdaMin
        var iterations = 0
        inside.withUnsafeBufferPointer { m in
        pivot.withUnsafeBufferPointer { pc in
        west.withUnsafeBufferPointer { aw in
        north.withUnsafeBufferPointer { an in
        b.withUnsafeBufferPointer { b in
        x.withUnsafeMutableBufferPointer { x in
        r.withUnsafeMutableBufferPointer { r in
        z.withUnsafeMutableBufferPointer { z in
        p.withUnsafeMutableBufferPointer { p in
        ap.withUnsafeMutableBufferPointer { ap in
            // r = b − A x on Ω (x outside Ω takes no part: its values are already in b).
            var rr = 0.0
            for c in lo..<hi {
                let ax = 4 * m[c] * x[c] - m[c - 1] * x[c - 1] - m[c + 1] * x[c + 1] - m[c - w] * x[c - w] - m[c + w] * x[c + w]
                r[c] = m[c] * (b[c] - ax)
                rr += r[c] * r[c]
            }
            if rr.squareRoot() <= threshold { return }
            // z = M⁻¹ r by the two triangular sweeps of MIC(0); returns r·z.
            func applyPreconditioner() -> Double {
                for c in lo..<hi { z[c] = (r[c] - aw[c] * z[c - 1] - an[c] * z[c - w]) * pc[c] }
                var c = hi - 1
                while c >= lo {
                    z[c] = (z[c] - aw[c + 1] * z[c + 1] - an[c + w] * z[c + w]) * pc[c]
                    c -= 1
                }
                var rz = 0.0
                for c in lo..<hi { rz += r[c] * z[c] }
                return rz
            }
            var rz = applyPreconditioner()
            for c in lo..<hi { p[c] = z[c] }
            while iterations < limit {
                iterations += 1
                // The search direction p is zero outside Ω, so A p needs no mask on neighbours.
                var pAp = 0.0
                for c in lo..<hi {
                    let v = m[c] * (4 * p[c] - p[c - 1] - p[c + 1] - p[c - w] - p[c + w])
                    ap[c] = v
                    pAp += p[c] * v
                }
                if pAp <= 0 { break }
                let alpha = rz / pAp
                rr = 0
                for c in lo..<hi {
                    x[c] += alpha * p[c]
                    r[c] -= alpha * ap[c]
                    rr += r[c] * r[c]
                }
                if rr.squareRoot() <= threshold { break }
                let rzNext = applyPreconditioner()
                let beta = rzNext / rz
                rz = rzNext
                for c in lo..<hi { p[c] = z[c] + beta * p[c] }
            }
        }}}}}}}}}}
        return iterations
    }
}
