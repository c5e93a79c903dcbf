import CBLAS
import Foundation

// MARK: - Winograd convolution for 3×3 stride-1 layers
//
// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), eq. (7)/(8):
// an m×m output tile is Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A with d the (m+2)×(m+2) input tile.
// Summed over input channels, the ⊙ becomes, for each of the α² = (m+2)² transform points p,
// a GEMM over channels:  M[p] (OC×tiles) = U[p] (OC×C) · V[p] (C×tiles)  (their eq. (12)).
// F(2×2,3×3) does 16 products per 4 outputs instead of 36 (2.25× fewer), F(4×4,3×3) 36 per 16
// (4× fewer). F(6×6,3×3) (5.06×) is not implemented yet: a float32 numpy model of it
// (points 0, ±1, ±2, ±½) gave a relative error of 4.5e-6 against float64, so it would qualify.
//
// Measured float32 error (WinogradTests, post-SiLU activations, He-initialised weights, relative L2
// against a float64 direct convolution): F(2×2) 1.2–2.5e-7, F(4×4) 5–15e-7, im2col 0.9–2.8e-7;
// input and weight gradients against im2col: F(2×2) ≤ 4.3e-7, F(4×4) ≤ 1.5e-6.
//
// The weight gradient is the adjoint of the same linear maps (Lavin & Gray §4.3):
//   dU[p] = Σ_tiles (A dY Aᵀ)[p] · V[p]ᵀ,   dg = Gᵀ dU G.
// The input gradient of a stride-1 convolution is itself a 3×3 convolution of dY with the flipped,
// transposed kernel (Convolution.swift), so it takes this path too.
//
// Work is split into tasks of whole tile rows whose boundaries depend on the layer shape only;
// every output tile is one GEMM column and weight gradients go through fixed lanes summed in lane
// order, so results do not depend on the number of threads.

/// The algorithms a 3×3 stride-1 convolution can run with.
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    case im2col, winograd2, winograd4

    /// Output tile side m of F(m×m, 3×3), or nil for im2col.
    var tile: Int? {
        switch self {
        case .im2col: return nil
        case .winograd2: return 2
        case .winograd4: return 4
        }
    }
}

/// Which algorithm each convolution uses. `forced` (or MEDSYNTH_CONV_ALGO=im2col|winograd2|winograd4)
/// overrides the per-shape rule; benchmarks and tests use it to compare algorithms back to back.
public enum ConvAlgorithmSelection {
    nonisolated(unsafe) public static var forced: ConvAlgorithm? =
        ProcessInfo.processInfo.environment["MEDSYNTH_CONV_ALGO"].flatMap(ConvAlgorithm.init(rawValue:))

    /// Overrides the rule for weight gradients only (MEDSYNTH_CONV_ALGO_DW), for measuring.
    nonisolated(unsafe) public static var forcedWeightGradient: ConvAlgorithm? =
        ProcessInfo.processInfo.environment["MEDSYNTH_CONV_ALGO_DW"].flatMap(ConvAlgorithm.init(rawValue:))

    /// The direction a choice is made for.
    public enum Pass: Sendable { case forward, weightGradient }

    /// True when the geometry is a 3×3 stride-1 convolution Winograd can compute.
    static func eligible(_ g: ConvGeometry) -> Bool {
        g.kernelH == 3 && g.kernelW == 3 && g.stride == 1 && g.padding <= 2 && g.outHeight > 0 && g.outWidth > 0
    }

    /// The algorithm for a layer shape. The rule depends on the shape only (never on batch size,
    /// timing or threads) so a model gives the same bits for any batch or machine load.
    /// It comes from back-to-back runs of `medsynth bench kernels --compare-algorithms` (and
    /// MEDSYNTH_CONV_ALGO_DW=… for the weight gradient) on the U-Net's layers: F(4×4) forward
    /// beat im2col and F(2×2) on every layer with at least 32 channels on both sides, from 8×8 to
    /// 64×64; for weight gradients F(2×2) was at least as fast as F(4×4) and has a third of its
    /// error. With one channel on a side (the U-Net's first and last conv) the transforms dominate
    /// and im2col wins by 3–10×.
    public static func algorithm(_ g: ConvGeometry, outChannels oc: Int, pass: Pass) -> ConvAlgorithm {
        guard eligible(g) else { return .im2col }
        if pass == .weightGradient, let forcedWeightGradient { return forcedWeightGradient }
        if let forced { return forced }
        let c = g.channels
        let smaller = min(c, oc)
        switch pass {
        case .forward:
            if smaller < 16 { return .im2col }
            if g.outHeight < 8 || g.outWidth < 8 { return .winograd2 }
            return .winograd4
        case .weightGradient:
            if smaller < 16 { return .im2col }
            return .winograd2
        }
    }
}

// MARK: 1-D transforms on 8 tiles at once (each SIMD8 lane is one tile or one filter)

typealias V8 = SIMD8<Float>

/// The five 1-D transforms of F(m×m, 3×3), applied in place along a line of a α×α block.
protocol WinogradKernel {
    static var m: Int { get }
    /// Bᵀ: α → α (input tiles).
    static func inputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int)
    /// Aᵀ: α → m (output tiles).
    static func outputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int)
    /// G: 3 → α (filters).
    static func filterLine(_ p: UnsafeMutablePointer<V8>, _ s: Int)
    /// A: m → α (output gradients, the adjoint of Aᵀ).
    static func outputGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int)
    /// Gᵀ: α → 3 (filter gradients, the adjoint of G).
    static func filterGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int)
}

/// F(2×2, 3×3), Lavin & Gray eq. (8)'s matrices.
enum WinogradF2: WinogradKernel {
    static var m: Int { 2 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s]
        p[0] = d0 - d2; p[s] = d1 + d2; p[2 * s] = d2 - d1; p[3 * s] = d1 - d3
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s]
        p[0] = m0 + m1 + m2; p[s] = m1 - m2 - m3
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let g0 = p[0], g1 = p[s], g2 = p[2 * s]
        let half = V8(repeating: 0.5)
        p[0] = g0; p[s] = (g0 + g1 + g2) * half; p[2 * s] = (g0 - g1 + g2) * half; p[3 * s] = g2
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let y0 = p[0], y1 = p[s]
        p[0] = y0; p[s] = y0 + y1; p[2 * s] = y0 - y1; p[3 * s] = -y1
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s]
        let half = V8(repeating: 0.5)
        p[0] = u0 + (u1 + u2) * half; p[s] = (u1 - u2) * half; p[2 * s] = (u1 + u2) * half + u3
    }
}

/// F(4×4, 3×3) with interpolation points 0, ±1, ±2, ∞ (Lavin & Gray §5).
enum WinogradF4: WinogradKernel {
    static var m: Int { 4 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s], d4 = p[4 * s], d5 = p[5 * s]
        let four = V8(repeating: 4), five = V8(repeating: 5), two = V8(repeating: 2)
        p[0] = four * d0 - five * d2 + d4
        p[s] = d3 + d4 - four * (d1 + d2)
        p[2 * s] = d4 - d3 + four * (d1 - d2)
        p[3 * s] = d4 - d2 + two * (d3 - d1)
        p[4 * s] = d4 - d2 + two * (d1 - d3)
        p[5 * s] = four * d1 - five * d3 + d5
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s], m4 = p[4 * s], m5 = p[5 * s]
        let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
        p[0] = m0 + a + c
        p[s] = b + 2 * d
        p[2 * s] = a + 4 * c
        p[3 * s] = b + 8 * d + m5
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let g0 = p[0], g1 = p[s], g2 = p[2 * s]
        let outer = g0 + g2, sixth: Float = 1.0 / 6.0
        p[0] = g0 * 0.25
        p[s] = -(outer + g1) * sixth
        p[2 * s] = -(outer - g1) * sixth
        let q = g0 * (1.0 / 24.0) + g2 * sixth, r = g1 * (1.0 / 12.0)
        p[3 * s] = q + r
        p[4 * s] = q - r
        p[5 * s] = g2
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let y0 = p[0], y1 = p[s], y2 = p[2 * s], y3 = p[3 * s]
        let even = y0 + y2, odd = y1 + y3, even4 = y0 + 4 * y2, odd8 = 2 * y1 + 8 * y3
        p[0] = y0
        p[s] = even + odd
        p[2 * s] = even - odd
        p[3 * s] = even4 + odd8
        p[4 * s] = even4 - odd8
        p[5 * s] = y3
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<V8>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s], u4 = p[4 * s], u5 = p[5 * s]
        let sixth: Float = 1.0 / 6.0
        let sum12 = u1 + u2, sum34 = u3 + u4
        p[0] = u0 * 0.25 - sum12 * sixth + sum34 * (1.0 / 24.0)
        p[s] = (u2 - u1) * sixth + (u3 - u4) * (1.0 / 12.0)
        p[2 * s] = (sum34 - sum12) * sixth + u5
    }
}

// MARK: - Tiling plan

/// How a layer is cut into tiles and tasks: depends on the shape only.
struct WinogradPlan {
    let m, alpha, points: Int
    let g: ConvGeometry
    let batch, outChannels: Int
    let tilesH, tilesW: Int
    /// Padded row length of the per-task input copy: tilesW·m + 2.
    let paddedWidth: Int
    /// When tile rows hold whole groups of 8 tiles, each padded row is stored as m phase rows
    /// (phase q holds columns q, q + m, q + 2m, …) so 8 neighbouring tiles' pixels are 8
    /// contiguous floats and the input transform loads vectors instead of gathering lanes.
    let phaseSplit: Bool
    /// Floats per padded row in the per-task copy.
    let rowStride: Int
    let rowsPerTask, tasks: Int

    init(_ g: ConvGeometry, batch: Int, outChannels: Int, m: Int) {
        self.m = m; alpha = m + 2; points = (m + 2) * (m + 2)
        self.g = g; self.batch = batch; self.outChannels = outChannels
        tilesH = (g.outHeight + m - 1) / m
        tilesW = (g.outWidth + m - 1) / m
        paddedWidth = tilesW * m + 2
        phaseSplit = tilesW % 8 == 0
        rowStride = phaseSplit ? m * (tilesW + 1) : paddedWidth
        // Enough tiles per task for the GEMMs to reach their rate, while the task's transformed
        // input and output (α²·(C + OC) floats per tile) stay within about 2 MB.
        let perTile = points * (g.channels + outChannels)
        let wantedTiles = max(64, min(512, (1 << 19) / max(1, perTile)))
        rowsPerTask = max(1, min(batch * tilesH, wantedTiles / tilesW))
        tasks = (batch * tilesH + rowsPerTask - 1) / rowsPerTask
    }

    func tileRows(task: Int) -> Range<Int> {
        let lo = task * rowsPerTask
        return lo..<min(batch * tilesH, lo + rowsPerTask)
    }

    /// Tiles in a task rounded up to whole SIMD8 groups: the row stride of V and M.
    static func paddedTiles(_ tiles: Int) -> Int { (tiles + 7) / 8 * 8 }
    var maxTilesPerTask: Int { WinogradPlan.paddedTiles(rowsPerTask * tilesW) }
}

// MARK: - Filter transforms

/// U[p][oc·C + c] = (G w[oc, c] Gᵀ)[p]: the α² matrices of OC×C the GEMMs multiply.
func winogradFilterTransform<K: WinogradKernel>(_ kernel: K.Type, _ w: UnsafePointer<Float>, filters: Int,
                                                 _ u: UnsafeMutablePointer<Float>) {
    let alpha = K.m + 2, points = alpha * alpha
    let groups = (filters + 7) / 8
    Parallel.forRanges(groups, cost: 8 * 200) { range in
        let block = UnsafeMutablePointer<V8>.allocate(capacity: points)
        defer { block.deallocate() }
        for group in range {
            let f0 = group * 8, lanes = min(8, filters - f0)
            let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
            for i in 0..<3 { for j in 0..<3 {
                block[i * alpha + j] = V8(repeating: 0)
                for l in 0..<lanes { lanesOf[(i * alpha + j) * 8 + l] = w[(f0 + l) * 9 + i * 3 + j] }
            } }
            for j in 0..<3 { K.filterLine(block + j, alpha) }
            for i in 0..<alpha { K.filterLine(block + i * alpha, 1) }
            for p in 0..<points {
                let v = block[p], dst = u + p * filters + f0
                if lanes == 8 { UnsafeMutableRawPointer(dst).storeBytes(of: v, as: V8.self) } else { for l in 0..<lanes { dst[l] = v[l] } }
            }
        }
    }
}

/// dw[f] += (Gᵀ dU[·][f] G) for every filter f (the adjoint of the filter transform).
func winogradFilterGradientTransform<K: WinogradKernel>(_ kernel: K.Type, _ du: UnsafePointer<Float>, filters: Int,
                                                         _ dw: UnsafeMutablePointer<Float>) {
    let alpha = K.m + 2, points = alpha * alpha
    let groups = (filters + 7) / 8
    Parallel.forRanges(groups, cost: 8 * 200) { range in
        let block = UnsafeMutablePointer<V8>.allocate(capacity: points)
        defer { block.deallocate() }
        for group in range {
            let f0 = group * 8, lanes = min(8, filters - f0)
            let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
            for p in 0..<points {
                block[p] = V8(repeating: 0)
                for l in 0..<lanes { lanesOf[p * 8 + l] = du[p * filters + f0 + l] }
            }
            for j in 0..<alpha { K.filterGradientLine(block + j, alpha) }
            for i in 0..<3 { K.filterGradientLine(block + i * alpha, 1) }
            for i in 0..<3 { for j in 0..<3 {
                for l in 0..<lanes { dw[(f0 + l) * 9 + i * 3 + j] += lanesOf[(i * alpha + j) * 8 + l] }
            } }
        }
    }
}

// MARK: - Input and output tiles

/// Copies the input rows the task's tile rows read into `padded` ([C][tile row][α][paddedWidth],
/// zero outside the image) and returns nothing; tile (row r, column j) of channel c starts at
/// padded + (c·rows + r)·α·paddedWidth + j·m.
@inline(__always)
func winogradGatherInput(_ x: UnsafePointer<Float>, _ plan: WinogradPlan, rows: Range<Int>, _ padded: UnsafeMutablePointer<Float>) {
    let g = plan.g, alpha = plan.alpha, wp = plan.paddedWidth
    let rowCount = rows.count
    for c in 0..<g.channels {
        for (ri, r) in rows.enumerated() {
            let img = r / plan.tilesH, ti = r % plan.tilesH
            let src = x + (img * g.channels + c) * g.inPlane
            let dstBase = padded + ((c * rowCount + ri) * alpha) * plan.rowStride
            for a in 0..<alpha {
                let ih = ti * plan.m - g.padding + a
                let dst = dstBase + a * plan.rowStride
                if plan.phaseSplit {
                    // Padded column q goes to phase q mod m, slot q / m.
                    let m = plan.m, phase = plan.tilesW + 1
                    if ih < 0 || ih >= g.height { dst.update(repeating: 0, count: plan.rowStride); continue }
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: phase * m) { line in
                        let l = line.baseAddress!
                        let lo = min(wp, g.padding), hi = min(wp, g.padding + g.width)
                        l.update(repeating: 0, count: phase * m)
                        (l + lo).update(from: src + ih * g.width + (lo - g.padding), count: hi - lo)
                        for q in 0..<m {
                            let d = dst + q * phase
                            var j = 0, from = q
                            while j < phase { d[j] = l[from]; j += 1; from += m }
                        }
                    }
                    continue
                }
                if ih < 0 || ih >= g.height { dst.update(repeating: 0, count: wp); continue }
                // Padded column q holds input column q − padding.
                let lo = min(wp, g.padding), hi = min(wp, g.padding + g.width)
                if lo > 0 { dst.update(repeating: 0, count: lo) }
                (dst + lo).update(from: src + ih * g.width + (lo - g.padding), count: hi - lo)
                if hi < wp { (dst + hi).update(repeating: 0, count: wp - hi) }
            }
        }
    }
}

/// Where each tile of a task lives, computed once per task so the per-channel loops do no
/// divisions: `input[t]` is the tile's offset in the padded copy, `output[t]` its top-left
/// pixel in an N×OC×OH×OW tensor for output channel 0 (add o·OH·OW for channel o), `full[t]`
/// whether all m×m of its pixels are inside the output. Entries past the last tile repeat it.
struct WinogradTileIndex {
    let input, output: UnsafeMutablePointer<Int>
    let full: UnsafeMutablePointer<Bool>

    init(capacity: Int) {
        input = .allocate(capacity: capacity); output = .allocate(capacity: capacity); full = .allocate(capacity: capacity)
    }

    func deallocate() { input.deallocate(); output.deallocate(); full.deallocate() }

    func fill(_ plan: WinogradPlan, rows: Range<Int>) {
        let g = plan.g, m = plan.m
        let tiles = rows.count * plan.tilesW
        for t in 0..<WinogradPlan.paddedTiles(tiles) {
            let tt = min(t, tiles - 1)
            let ri = tt / plan.tilesW, tj = tt % plan.tilesW
            let r = rows.lowerBound + ri
            let img = r / plan.tilesH, ti = r % plan.tilesH
            input[t] = ri * plan.alpha * plan.paddedWidth + tj * m
            output[t] = img * plan.outChannels * g.outPlane + ti * m * g.outWidth + tj * m
            full[t] = ti * m + m <= g.outHeight && tj * m + m <= g.outWidth
        }
    }

    /// Rows and columns of tile t inside the output.
    @inline(__always) func extent(_ t: Int, _ plan: WinogradPlan) -> (Int, Int) {
        if full[t] { return (plan.m, plan.m) }
        let offset = output[t] % plan.g.outPlane
        return (min(plan.m, plan.g.outHeight - offset / plan.g.outWidth), min(plan.m, plan.g.outWidth - offset % plan.g.outWidth))
    }
}

/// V[p][c][t] = (Bᵀ d Bᵀᵀ)[p] for the task's tiles, 8 tiles per SIMD step.
@inline(__always)
func winogradInputTransform<K: WinogradKernel>(_ kernel: K.Type, _ padded: UnsafePointer<Float>, _ plan: WinogradPlan,
                                                rowCount: Int, channels: Int, _ v: UnsafeMutablePointer<Float>, ld: Int,
                                                index: WinogradTileIndex, block: UnsafeMutablePointer<V8>) {
    let alpha = K.m + 2, wp = plan.paddedWidth, points = alpha * alpha
    let tiles = rowCount * plan.tilesW
    let channelStride = rowCount * alpha * plan.rowStride
    if plan.phaseSplit {
        let m = K.m, stride = plan.rowStride, phase = plan.tilesW + 1
        for c in 0..<channels {
            for ri in 0..<rowCount {
                let rowBase = padded + (c * rowCount + ri) * alpha * stride
                var j0 = 0
                while j0 < plan.tilesW {
                    for a in 0..<alpha {
                        let row = rowBase + a * stride + j0
                        for b in 0..<alpha {
                            block[a * alpha + b] = UnsafeRawPointer(row + (b % m) * phase + b / m).loadUnaligned(as: V8.self)
                        }
                    }
                    for b in 0..<alpha { K.inputLine(block + b, alpha) }
                    for a in 0..<alpha { K.inputLine(block + a * alpha, 1) }
                    let t0 = ri * plan.tilesW + j0
                    for p in 0..<points {
                        UnsafeMutableRawPointer(v + (p * channels + c) * ld + t0).storeBytes(of: block[p], as: V8.self)
                    }
                    j0 += 8
                }
            }
        }
        return
    }
    for c in 0..<channels {
        let base = padded + c * channelStride
        var t0 = 0
        while t0 < tiles {
            let o = index.input + t0
            let (o0, o1, o2, o3, o4, o5, o6, o7) = (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7])
            for a in 0..<alpha {
                let row = base + a * wp
                for b in 0..<alpha {
                    let q = row + b
                    block[a * alpha + b] = V8(q[o0], q[o1], q[o2], q[o3], q[o4], q[o5], q[o6], q[o7])
                }
            }
            for b in 0..<alpha { K.inputLine(block + b, alpha) }
            for a in 0..<alpha { K.inputLine(block + a * alpha, 1) }
            for p in 0..<points {
                UnsafeMutableRawPointer(v + (p * channels + c) * ld + t0).storeBytes(of: block[p], as: V8.self)
            }
            t0 += 8
        }
    }
}

/// y[tile] (+)= Aᵀ M A for the task's tiles.
@inline(__always)
func winogradOutputTransform<K: WinogradKernel>(_ kernel: K.Type, _ mm: UnsafePointer<Float>, ld: Int, _ plan: WinogradPlan,
                                                 tiles: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool,
                                                 bias: UnsafePointer<Float>?, index: WinogradTileIndex, block: UnsafeMutablePointer<V8>) {
    let m = K.m, alpha = K.m + 2, points = alpha * alpha, oc = plan.outChannels
    let ow = plan.g.outWidth, plane = plan.g.outPlane
    // Lane l of block[q] is the float at (q·8 + l).
    let lanesOf = UnsafeRawPointer(block).assumingMemoryBound(to: Float.self)
    for o in 0..<oc {
        let yo = y + o * plane
        var t0 = 0
        while t0 < tiles {
            let lanes = min(8, tiles - t0)
            for p in 0..<points {
                block[p] = UnsafeRawPointer(mm + (p * oc + o) * ld + t0).loadUnaligned(as: V8.self)
            }
            for b in 0..<alpha { K.outputLine(block + b, alpha) }
            for a in 0..<m { K.outputLine(block + a * alpha, 1) }
            if let bias {
                // The conv bias rides along with the output transform instead of a separate pass.
                let bv = V8(repeating: bias[o])
                for a in 0..<m { for b in 0..<m { block[a * alpha + b] += bv } }
            }
            for l in 0..<lanes {
                let t = t0 + l
                let dst = yo + index.output[t]
                if index.full[t] && !accumulate {
                    for a in 0..<m {
                        let drow = dst + a * ow, src = lanesOf + a * alpha * 8 + l
                        for b in 0..<m { drow[b] = src[b * 8] }
                    }
                    continue
                }
                let (hMax, wMax) = index.extent(t, plan)
                for a in 0..<hMax {
                    let drow = dst + a * ow, src = lanesOf + a * alpha * 8 + l
                    if accumulate {
                        for b in 0..<wMax { drow[b] += src[b * 8] }
                    } else {
                        for b in 0..<wMax { drow[b] = src[b * 8] }
                    }
                }
            }
            t0 += 8
        }
    }
}

// MARK: - Forward

/// y (N×OC×OH×OW) (+)= conv3×3(x, w) for a stride-1 geometry, by F(m×m, 3×3).
/// With `bias`, adds bias[o] to output channel o in the same pass.
func winogradForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                     batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int, accumulate: Bool = false,
                     bias: UnsafePointer<Float>? = nil) {
    if m == 4 { winogradForward(WinogradF4.self, x, w, y, batch: n, outChannels: oc, g, accumulate: accumulate, bias: bias) }
    else { winogradForward(WinogradF2.self, x, w, y, batch: n, outChannels: oc, g, accumulate: accumulate, bias: bias) }
}

func winogradForward<K: WinogradKernel>(_ kernel: K.Type, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                        _ y: UnsafeMutablePointer<Float>, batch n: Int, outChannels oc: Int,
                                        _ g: ConvGeometry, accumulate: Bool, bias: UnsafePointer<Float>?) {
    let plan = WinogradPlan(g, batch: n, outChannels: oc, m: K.m)
    let c = g.channels, points = plan.points
    let u = Workspace.shared.buffer(3, count: points * oc * c).baseAddress!
    winogradFilterTransform(K.self, w, filters: oc * c, u)
    let ld = plan.maxTilesPerTask
    Parallel.forRanges(plan.tasks, cost: 1 << 20) { tasks in
        let padded = UnsafeMutablePointer<Float>.allocate(capacity: c * plan.rowsPerTask * plan.alpha * plan.rowStride)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: points * c * ld)
        let mm = UnsafeMutablePointer<Float>.allocate(capacity: points * oc * ld)
        let block = UnsafeMutablePointer<V8>.allocate(capacity: points)
        let index = WinogradTileIndex(capacity: ld)
        defer { padded.deallocate(); v.deallocate(); mm.deallocate(); block.deallocate(); index.deallocate() }
        var stage = WinogradStageClock()
        for task in tasks {
            let rows = plan.tileRows(task: task)
            let tiles = rows.count * plan.tilesW
            index.fill(plan, rows: rows)
            winogradGatherInput(x, plan, rows: rows, padded)
            stage.lap(0)
            winogradInputTransform(K.self, padded, plan, rowCount: rows.count, channels: c, v, ld: ld, index: index, block: block)
            stage.lap(1)
            for p in 0..<points {
                sgemmSerial(m: oc, n: tiles, k: c, a: u + p * oc * c, lda: c, b: v + p * c * ld, ldb: ld,
                            c: mm + p * oc * ld, ldc: ld)
            }
            stage.lap(2)
            winogradOutputTransform(K.self, mm, ld: ld, plan, tiles: tiles, y, accumulate: accumulate, bias: bias, index: index, block: block)
            stage.lap(3)
        }
        stage.report()
    }
}

// MARK: - Weight gradient

/// dW (OC×C×3×3) += ∂L/∂w for y = conv3×3(x, w), stride 1, by F(m×m, 3×3) (Lavin & Gray §4.3).
func winogradWeightGradient(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>,
                            batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int) {
    if m == 4 { winogradWeightGradient(WinogradF4.self, dy, x, dW, batch: n, outChannels: oc, g) }
    else { winogradWeightGradient(WinogradF2.self, dy, x, dW, batch: n, outChannels: oc, g) }
}

func winogradWeightGradient<K: WinogradKernel>(_ kernel: K.Type, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                                               _ dW: UnsafeMutablePointer<Float>, batch n: Int, outChannels oc: Int,
                                               _ g: ConvGeometry) {
    let plan = WinogradPlan(g, batch: n, outChannels: oc, m: K.m)
    let c = g.channels, points = plan.points, alpha = plan.alpha, m = plan.m
    let ld = plan.maxTilesPerTask
    let lanes = weightGradientLanes
    let accumulators = UnsafeMutablePointer<Float>.allocate(capacity: lanes * points * oc * c)
    accumulators.initialize(repeating: 0, count: lanes * points * oc * c)
    defer { accumulators.deallocate() }
    // Lane l takes tasks l, l + lanes, …: a fixed assignment, whatever the number of workers.
    Parallel.forEach(lanes, cost: 1 << 20) { lane in
        let padded = UnsafeMutablePointer<Float>.allocate(capacity: c * plan.rowsPerTask * alpha * plan.rowStride)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: points * c * ld)
        let z = UnsafeMutablePointer<Float>.allocate(capacity: points * oc * ld)
        let block = UnsafeMutablePointer<V8>.allocate(capacity: points)
        let index = WinogradTileIndex(capacity: ld)
        defer { padded.deallocate(); v.deallocate(); z.deallocate(); block.deallocate(); index.deallocate() }
        let acc = accumulators + lane * points * oc * c
        for task in stride(from: lane, to: plan.tasks, by: lanes) {
            let rows = plan.tileRows(task: task)
            let tiles = rows.count * plan.tilesW
            index.fill(plan, rows: rows)
            winogradGatherInput(x, plan, rows: rows, padded)
            winogradInputTransform(K.self, padded, plan, rowCount: rows.count, channels: c, v, ld: ld, index: index, block: block)
            // Z[p][o][t] = (A dY_tile Aᵀ)[p]; dY is zero beyond the output's edge.
            for o in 0..<oc {
                var t0 = 0
                while t0 < tiles {
                    let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
                    for i in 0..<m { for j in 0..<m { block[i * alpha + j] = V8(repeating: 0) } }
                    for l in 0..<min(8, tiles - t0) {
                        let t = t0 + l
                        let src = dy + o * g.outPlane + index.output[t]
                        let (hMax, wMax) = index.extent(t, plan)
                        for i in 0..<hMax { for j in 0..<wMax { lanesOf[(i * alpha + j) * 8 + l] = src[i * g.outWidth + j] } }
                    }
                    for j in 0..<m { K.outputGradientLine(block + j, alpha) }
                    for i in 0..<alpha { K.outputGradientLine(block + i * alpha, 1) }
                    for p in 0..<points {
                        UnsafeMutableRawPointer(z + (p * oc + o) * ld + t0).storeBytes(of: block[p], as: V8.self)
                    }
                    t0 += 8
                }
            }
            for p in 0..<points {
                sgemmSerial(transB: true, m: oc, n: c, k: tiles, a: z + p * oc * ld, lda: ld, b: v + p * c * ld, ldb: ld,
                            beta: 1, c: acc + p * oc * c, ldc: c)
            }
        }
    }
    // Sum the lanes in lane order, then dW += Gᵀ dU G.
    let total = points * oc * c
    let du = Workspace.shared.buffer(3, count: total).baseAddress!
    Parallel.forRanges(total, cost: lanes) { range in
        for i in range {
            var s: Float = 0
            for lane in 0..<lanes { s += accumulators[lane * total + i] }
            du[i] = s
        }
    }
    winogradFilterGradientTransform(K.self, du, filters: oc * c, dW)
}

/// Per-stage wall time of the Winograd forward (gather, input transform, GEMMs, output transform),
/// summed over workers, for tuning: MEDSYNTH_WINOGRAD_STAGES=1 prints the totals at exit.
struct WinogradStageClock {
    static let isEnabled = ProcessInfo.processInfo.environment["MEDSYNTH_WINOGRAD_STAGES"] == "1"
    nonisolated(unsafe) static var totals = [Double](repeating: 0, count: 4)
    static let lock = NSLock()
    nonisolated(unsafe) static var registered = false
    var last = DispatchTime.now().uptimeNanoseconds
    var local = [Double](repeating: 0, count: 4)

    @inline(__always) mutating func lap(_ stage: Int) {
        guard WinogradStageClock.isEnabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        local[stage] += Double(now - last) / 1e9
        last = now
    }

    func report() {
        guard WinogradStageClock.isEnabled else { return }
        WinogradStageClock.lock.lock()
        for i in 0..<4 { WinogradStageClock.totals[i] += local[i] }
        if !WinogradStageClock.registered {
            WinogradStageClock.registered = true
            atexit {
                let t = WinogradStageClock.totals
                FileHandle.standardError.write(Data(String(format: "winograd stages: gather %.3f s, input %.3f s, gemm %.3f s, output %.3f s\n", t[0], t[1], t[2], t[3]).utf8))
            }
        }
        WinogradStageClock.lock.unlock()
    }
}
