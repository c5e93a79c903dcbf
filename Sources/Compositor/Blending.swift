import Core
import Engine

// MARK: - Modes

/// How a lesion patch is merged into the background.
public enum BlendMode: String, Sendable, CaseIterable, Codable {
    /// Alpha blending with the mask feathered inwards by a distance transform.
    case alpha
    /// Seamless cloning: the patch's gradients inside the mask, the background's values on its
    /// boundary (Pérez et al. 2003, guidance field of eq. 11).
    case poisson
    /// Poisson blending with mixed gradients: per edge, the stronger of the patch's and the
    /// background's gradient (Pérez et al. 2003, eq. 13).
    case mixed
}

/// A patch ready to blend: colour planes in the target's native units and a binary mask of the
/// same size, with the patch's top-left corner at `(x, y)` in the target (may hang over the edge).
public struct PlacedPatch: Sendable {
    public var planes: [Plane]
    public var mask: BinaryMask
    public var x: Int
    public var y: Int

    public init(planes: [Plane], mask: BinaryMask, x: Int, y: Int) {
        precondition(planesFit(planes, mask), "PlacedPatch: planes and mask must share one size")
        self.planes = planes
        self.mask = mask
        self.x = x
        self.y = y
    }
}

/// Blend settings shared by every lesion of a run.
public struct BlendSettings: Sendable {
    public var mode: BlendMode
    /// Transition width in pixels. Alpha: the mask ramps from 0 to 1 over this width inside its
    /// edge (0 = hard). Poisson modes: the blend domain is the mask dilated by this much, so the
    /// lesion's own rim (which straddles its mask edge) is carried over whole.
    public var feather: Float
    /// Poisson modes: OpenCV `seamlessClone(..., NORMAL_CLONE)` behaviour (see `openCVPoissonBlend`;
    /// the caller also truncates, rather than rounds, when writing integers). `mixed` is ignored.
    public var openCVCompatible: Bool
    /// Poisson modes: stop when every pixel is provably within this many gray levels of the exact solution.
    public var tolerance: Double

    public init(mode: BlendMode = .poisson, feather: Float = 2, openCVCompatible: Bool = false, tolerance: Double = 0.01) {
        self.mode = mode
        self.feather = feather
        self.openCVCompatible = openCVCompatible
        self.tolerance = tolerance
    }
}

/// What a blend changed: the target pixels (row-major indices) that form the lesion's recorded
/// mask, and the solver's iteration count (0 for alpha).
public struct BlendOutcome: Sendable {
    public var pixels: [Int]
    public var iterations: Int
}

/// Blends `patch` into `target` (one plane per colour channel, all the target's size).
/// The returned pixels are exactly the ones the blend may change: the mask for alpha (the feather
/// stays inside it), the domain Ω for the Poisson modes (the mask dilated by `feather`, minus the
/// image's outermost ring, whose outside neighbours do not exist).
public func blend(_ patch: PlacedPatch, into target: inout [Plane], settings: BlendSettings) -> BlendOutcome {
    precondition(patch.planes.count == target.count, "blend: patch has \(patch.planes.count) channels, target \(target.count)")
    switch settings.mode {
    case .alpha:
        return alphaBlend(patch, into: &target, feather: settings.feather)
    case .poisson, .mixed:
        var mask = dilate(patch.mask, radius: settings.feather)
        if settings.openCVCompatible {
            // seamlessClone zeroes the mask's 1-pixel border before taking its bounding box.
            for x in 0..<mask.width { mask[x, 0] = false; mask[x, mask.height - 1] = false }
            for y in 0..<mask.height { mask[0, y] = false; mask[mask.width - 1, y] = false }
            return openCVPoissonBlend(PlacedPatch(planes: patch.planes, mask: mask, x: patch.x, y: patch.y),
                                      into: &target, tolerance: settings.tolerance)
        }
        return poissonBlend(PlacedPatch(planes: patch.planes, mask: mask, x: patch.x, y: patch.y),
                            into: &target, mixed: settings.mode == .mixed, tolerance: settings.tolerance)
    }
}

// MARK: - Alpha

/// out = α·patch + (1 − α)·background with α = min(1, d / feather), d the Euclidean distance
/// from a mask pixel to the nearest pixel outside the mask (≥ 1 inside), so α > 0 exactly on the mask.
public func alphaBlend(_ patch: PlacedPatch, into target: inout [Plane], feather: Float) -> BlendOutcome {
    let tw = target[0].width, th = target[0].height
    let pw = patch.mask.width, ph = patch.mask.height
    // Pixels beyond the patch edge count as outside so the ramp also runs along a cut edge.
    var padded = BinaryMask(width: pw + 2, height: ph + 2)
    for y in 0..<ph { for x in 0..<pw where patch.mask[x, y] { padded[x + 1, y + 1] = true } }
    let d2 = feather > 0 ? squaredDistanceToOutside(padded) : []
    var pixels: [Int] = []
    for y in 0..<ph {
        let ty = patch.y + y
        if ty < 0 || ty >= th { continue }
        for x in 0..<pw where patch.mask[x, y] {
            let tx = patch.x + x
            if tx < 0 || tx >= tw { continue }
            let alpha = feather > 0 ? min(1, d2[(y + 1) * (pw + 2) + x + 1].squareRoot() / feather) : 1
            let t = ty * tw + tx, s = y * pw + x
            for c in target.indices {
                let bg = target[c].values[t]
                target[c].values[t] = bg + alpha * (patch.planes[c].values[s] - bg)
            }
            pixels.append(t)
        }
    }
    return BlendOutcome(pixels: pixels, iterations: 0)
}

// MARK: - Poisson

/// Seamless cloning (Pérez et al. 2003) of `patch` into `target` on Ω = the patch mask placed in
/// the target, minus the target's outermost ring: solves eq. 7 with Dirichlet values f* = the
/// target's own values on the pixels just outside Ω and guidance v_pq = g_p − g_q (eq. 11), or for
/// `mixed` the one of (f*_p − f*_q) and (g_p − g_q) with the larger magnitude (eq. 13).
/// Source values g beyond the patch edge repeat the edge.
public func poissonBlend(_ patch: PlacedPatch, into target: inout [Plane], mixed: Bool, tolerance: Double = 0.01) -> BlendOutcome {
    let tw = target[0].width, th = target[0].height
    let pw = patch.mask.width, ph = patch.mask.height
    // Ω in target coordinates and its bounding box.
    var x0 = Int.max, y0 = Int.max, x1 = Int.min, y1 = Int.min
    for y in 0..<ph {
        let ty = patch.y + y
        if ty < 1 || ty >= th - 1 { continue }
        for x in 0..<pw where patch.mask[x, y] {
            let tx = patch.x + x
            if tx < 1 || tx >= tw - 1 { continue }
            x0 = min(x0, tx); x1 = max(x1, tx); y0 = min(y0, ty); y1 = max(y1, ty)
        }
    }
    if x1 < x0 { return BlendOutcome(pixels: [], iterations: 0) }
    // A grid over the box plus a one-pixel ring (the Dirichlet boundary lives there).
    let gx = x0 - 1, gy = y0 - 1
    let gw = x1 - x0 + 3, gh = y1 - y0 + 3
    var domain = [UInt8](repeating: 0, count: gw * gh)
    var pixels: [Int] = []
    for y in 1..<(gh - 1) {
        for x in 1..<(gw - 1) {
            let px = gx + x - patch.x, py = gy + y - patch.y
            if px >= 0 && py >= 0 && px < pw && py < ph && patch.mask[px, py] {
                domain[y * gw + x] = 1
                pixels.append((gy + y) * tw + gx + x)
            }
        }
    }
    let solver = MaskedPoissonSolver(domain: domain, width: gw, height: gh)
    var iterations = 0
    var background = [Double](repeating: 0, count: gw * gh)
    var source = [Double](repeating: 0, count: gw * gh)
    var b = [Double](repeating: 0, count: gw * gh)
    for c in target.indices {
        // Background f* and source g over the grid (g clamped to the patch edge).
        for y in 0..<gh {
            let sy = min(max(gy + y - patch.y, 0), ph - 1)
            for x in 0..<gw {
                let sx = min(max(gx + x - patch.x, 0), pw - 1)
                background[y * gw + x] = Double(target[c].values[(gy + y) * tw + gx + x])
                source[y * gw + x] = Double(patch.planes[c].values[sy * pw + sx])
            }
        }
        // Right-hand side of eq. 7: Σ_q v_pq plus f*_q for neighbours outside Ω.
        for y in 1..<(gh - 1) {
            for x in 1..<(gw - 1) {
                let p = y * gw + x
                if domain[p] == 0 { b[p] = 0; continue }
                // The four edges of p's stencil, written out so the loop allocates nothing.
                var sum = 0.0
                for q in 0..<4 {
                    let n = q == 0 ? p - 1 : q == 1 ? p + 1 : q == 2 ? p - gw : p + gw
                    var v = source[p] - source[n]
                    if mixed {
                        let dStar = background[p] - background[n]
                        if abs(dStar) > abs(v) { v = dStar }
                    }
                    sum += v
                    if domain[n] == 0 { sum += background[n] }
                }
                b[p] = sum
            }
        }
        // Start from the background: the answer differs from it only by the lesion.
        var x = background
        iterations = max(iterations, solver.solve(b: b, x: &x, tolerance: tolerance))
        for y in 1..<(gh - 1) {
            for xx in 1..<(gw - 1) where domain[y * gw + xx] != 0 {
                target[c].values[(gy + y) * tw + gx + xx] = Float(x[y * gw + xx])
            }
        }
    }
    return BlendOutcome(pixels: pixels, iterations: iterations)
}

// MARK: - OpenCV-compatible Poisson

/// The discretisation of OpenCV's `seamlessClone(..., NORMAL_CLONE)` (modules/photo,
/// `Cloning::normalClone`), solved with the same solver: the unknowns are the whole interior of
/// the mask's bounding box, whose outer ring keeps the background; the mask M is eroded by three
/// 3×3 steps; the guidance is the forward difference G(a) = M(a) ? g(a+1) − g(a) : f*(a+1) − f*(a)
/// per pixel a (x and y), and the equation is Δf = div G with backward differences. So an edge takes
/// the source's gradient when the pixel on its left/upper side is in M.
public func openCVPoissonBlend(_ patch: PlacedPatch, into target: inout [Plane], tolerance: Double = 0.01) -> BlendOutcome {
    let tw = target[0].width, th = target[0].height
    let pw = patch.mask.width, ph = patch.mask.height
    guard let box = patch.mask.boundingBox else { return BlendOutcome(pixels: [], iterations: 0) }
    let eroded = erodeSquare(patch.mask, iterations: 3)
    // The grid is the box in target coordinates, cut to the image.
    let gx = max(0, patch.x + box.x), gy = max(0, patch.y + box.y)
    let gw = min(tw, patch.x + box.x + box.width) - gx, gh = min(th, patch.y + box.y + box.height) - gy
    if gw < 3 || gh < 3 { return BlendOutcome(pixels: [], iterations: 0) }
    var domain = [UInt8](repeating: 0, count: gw * gh)
    var pixels: [Int] = []
    for y in 1..<(gh - 1) {
        for x in 1..<(gw - 1) { domain[y * gw + x] = 1; pixels.append((gy + y) * tw + gx + x) }
    }
    var inM = [Bool](repeating: false, count: gw * gh)
    for y in 0..<gh {
        for x in 0..<gw {
            let px = gx + x - patch.x, py = gy + y - patch.y
            inM[y * gw + x] = px >= 0 && py >= 0 && px < pw && py < ph && eroded[px, py]
        }
    }
    let solver = MaskedPoissonSolver(domain: domain, width: gw, height: gh)
    var iterations = 0
    var background = [Double](repeating: 0, count: gw * gh)
    var source = [Double](repeating: 0, count: gw * gh)
    var gradX = [Double](repeating: 0, count: gw * gh)
    var gradY = [Double](repeating: 0, count: gw * gh)
    var b = [Double](repeating: 0, count: gw * gh)
    for c in target.indices {
        for y in 0..<gh {
            for x in 0..<gw {
                let px = gx + x - patch.x, py = gy + y - patch.y
                background[y * gw + x] = Double(target[c].values[(gy + y) * tw + gx + x])
                // seamlessClone copies the source through the (uneroded) mask: zero outside it.
                let inside = px >= 0 && py >= 0 && px < pw && py < ph && patch.mask[px, py]
                source[y * gw + x] = inside ? Double(patch.planes[c].values[py * pw + px]) : 0
            }
        }
        for y in 0..<gh {
            for x in 0..<gw {
                let a = y * gw + x
                if inM[a] {
                    gradX[a] = x + 1 < gw ? source[a + 1] - source[a] : 0
                    gradY[a] = y + 1 < gh ? source[a + gw] - source[a] : 0
                } else {
                    gradX[a] = x + 1 < gw ? background[a + 1] - background[a] : 0
                    gradY[a] = y + 1 < gh ? background[a + gw] - background[a] : 0
                }
            }
        }
        for y in 1..<(gh - 1) {
            for x in 1..<(gw - 1) {
                let p = y * gw + x
                // 4 f_p − Σ f_q = −div G, plus the fixed ring values.
                var sum = -(gradX[p] - gradX[p - 1] + gradY[p] - gradY[p - gw])
                if x == 1 { sum += background[p - 1] }
                if x == gw - 2 { sum += background[p + 1] }
                if y == 1 { sum += background[p - gw] }
                if y == gh - 2 { sum += background[p + gw] }
                b[p] = sum
            }
        }
        var x = background
        iterations = max(iterations, solver.solve(b: b, x: &x, tolerance: tolerance))
        for y in 1..<(gh - 1) {
            for xx in 1..<(gw - 1) { target[c].values[(gy + y) * tw + gx + xx] = Float(x[y * gw + xx]) }
        }
    }
    return BlendOutcome(pixels: pixels, iterations: iterations)
}
