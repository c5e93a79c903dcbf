import CBLAS
import Foundation

// MARK: - Winograd convolution: 3×3 stride-1 layers and 4×4 stride-2 layers
//
// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), eq. (7)/(8):
// an m×m output tile of an r×r stride-1 convolution is Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A with d
// the α×α input tile, α = m + r − 1. Summed over input channels, the ⊙ becomes, for each of the
// α² transform points p, a GEMM over channels:  M[p] (OC×tiles) = U[p] (OC×C) · V[p] (C×tiles)
// (their eq. (12)). F(2×2,3×3) does 16 products per 4 outputs instead of 36 (2.25× fewer),
// F(4×4,3×3) 36 per 16 (4× fewer). F(6×6,3×3) (5.06×) is not implemented yet: a float32 numpy
// model of it (points 0, ±1, ±2, ±½) gave a relative error of 4.5e-6 against float64, so it would qualify.
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
// 4×4 stride-2 padding-1 convolutions (the DCGAN's discriminator; its generator's transposed
// convolutions are the same maps run backwards) become 2×2 stride-1 convolutions:
//
// (A) Polyphase forward. y[i] = Σ_kh w[kh] x[2i − 1 + kh] (one axis shown; the other is the same).
//     Write kh = 2t + 1 − a with t, a ∈ {0, 1}: then x[2i − 1 + kh] = x[2(i + t) − a] = Q_a[i + t]
//     with the phase images Q_a[i'] = x[2i' − a] (a = 0: even rows; a = 1: odd rows shifted down
//     by one, so Q_1[0] = x[−1] is the zero padding). So y = Σ_{a,b} conv2×2(Q_ab, w_ab) with
//     w_ab[t, u] = w[2t + 1 − a, 2u + 1 − b]: ONE 2×2 stride-1 valid convolution over a 4·C-channel
//     input of (OH + 1)×(OW + 1) pixels. Direct: 16 products per output and channel pair.
// (B) Sub-pixel input gradient (= the transposed convolution's forward). dx[r] = Σ_i w[r + 1 − 2i]
//     dy[i]; for r = 2i'' + py only i = i'' + py − 1 + a, a ∈ {0, 1}, meet the kernel, at
//     kh = 3 − py − 2a: each output phase (py, px) is a 2×2 stride-1 convolution of dY padded by
//     one, read from offset (py, px), with its own 2×2 kernel (Shi et al. 2016). Four convolutions
//     share one padded copy of dY; each writes every other pixel of every other row of dX.
// (C) Weight gradient: the adjoint of (A) in the weights: the 2×2 Winograd weight gradient over
//     the 4·C phase channels, then dW[o, c, 2t + 1 − a, 2u + 1 − b] = dw_ab[o, c, t, u].
//
// With F(m×m, 2×2) (α = m + 1) each 2×2 stride-1 convolution takes α² products per m² outputs
// instead of 4m², so the 4×4 stride-2 layer takes 4α² per m² outputs instead of 16 m²:
// F(2×2,2×2) 1.78× fewer, F(3×3,2×2) 2.25×, F(4×4,2×2) 2.56×. Matrices from
// scripts/experiments/winograd_2x2_matrices.py (Toom–Cook on points 0, 1, −1, 2, ∞; its float32
// model of one tile over 256 channels gives relative errors of 3.4e-7, 3.6e-7 and 2.7e-6).
// Measured (StrideTwoWinogradTests, LeakyReLU activations, N(0, 0.02) weights): forward against
// a float64 direct convolution F(2×2) ≤ 2.8e-7, F(3×3) ≤ 2.2e-7, F(4×4) ≤ 1.1e-6 (im2col ≤ 2.6e-7);
// every pass against im2col, the DCGAN's D2 (64→128 at 32×32) included: F(2×2) ≤ 6.1e-7,
// F(3×3) ≤ 5.3e-7, F(4×4) ≤ 1.7e-6.
//
// Work is split into tasks of whole tile rows whose boundaries depend on the layer shape only;
// every output tile is one GEMM column and weight gradients go through fixed lanes summed in lane
// order, so results do not depend on the number of threads. A layer with fewer tasks than twice
// the workers (small images, many channels) runs its tasks one after another with each stage
// (gather, input transform, GEMMs by point, output transform) split across workers: the same
// GEMMs, so the same bits.

/// The algorithms a convolution can run with (Winograd for 3×3 stride-1 and 4×4 stride-2 padding-1 layers).
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    case im2col, winograd2, winograd3, winograd4
    /// Maps of at most 2×2 pixels: the convolution as one dense matrix (SmallMapConvolution.swift).
    case dense

    /// Output tile side m of F(m×m, r×r), or nil for im2col and dense.
    var tile: Int? {
        switch self {
        case .im2col, .dense: return nil
        case .winograd2: return 2
        case .winograd3: return 3
        case .winograd4: return 4
        }
    }

    /// The algorithms implemented for a geometry: F(3×3, 3×3) is not.
    public static func candidates(_ g: ConvGeometry) -> [ConvAlgorithm] {
        let dense: [ConvAlgorithm] = SmallMapConvolution.eligible(g) ? [.dense] : []
        if ConvAlgorithmSelection.strideTwoEligible(g) { return [.im2col, .winograd2, .winograd3, .winograd4] + dense }
        if ConvAlgorithmSelection.eligible(g) { return [.im2col, .winograd2, .winograd4] + dense }
        return [.im2col] + dense
    }
}

/// Which algorithm each convolution uses. `forced` (or MEDSYNTH_CONV_ALGO=im2col|winograd2|winograd3|winograd4)
/// overrides the per-shape rule wherever the forced algorithm applies to the shape; benchmarks
/// and tests use it to compare algorithms back to back.
public enum ConvAlgorithmSelection {
    nonisolated(unsafe) public static var forced: ConvAlgorithm? =
        ProcessInfo.processInfo.environment["MEDSYNTH_CONV_ALGO"].flatMap(ConvAlgorithm.init(rawValue:))

    /// Overrides the rule for weight gradients only (MEDSYNTH_CONV_ALGO_DW), for measuring.
    nonisolated(unsafe) public static var forcedWeightGradient: ConvAlgorithm? =
        ProcessInfo.processInfo.environment["MEDSYNTH_CONV_ALGO_DW"].flatMap(ConvAlgorithm.init(rawValue:))

    /// The direction a choice is made for. A 3×3 stride-1 layer's input gradient runs as a
    /// forward convolution (of dY, with the flipped kernel), so only 4×4 stride-2 layers ask for
    /// `inputGradient`; it is also the forward pass of the matching transposed convolution.
    public enum Pass: String, CaseIterable, Sendable { case forward, inputGradient, weightGradient }

    /// True when the geometry is a 3×3 stride-1 convolution Winograd can compute.
    static func eligible(_ g: ConvGeometry) -> Bool {
        g.kernelH == 3 && g.kernelW == 3 && g.stride == 1 && g.padding <= 2 && g.outHeight > 0 && g.outWidth > 0
    }

    /// True for a 4×4 stride-2 padding-1 convolution of an even-sized input (output exactly half
    /// the input; the phases then tile the input). Odd sizes keep im2col.
    public static func strideTwoEligible(_ g: ConvGeometry) -> Bool {
        g.kernelH == 4 && g.kernelW == 4 && g.stride == 2 && g.padding == 1 && g.height % 2 == 0 && g.width % 2 == 0
            && g.height >= 2 && g.width >= 2
    }

    /// The algorithm for a layer shape. The rule depends on the shape only (never on batch size,
    /// timing or threads) so a model gives the same bits for any batch or machine load.
    /// 3×3: from back-to-back runs of `medsynth bench kernels --compare-algorithms` (and
    /// MEDSYNTH_CONV_ALGO_DW=… for the weight gradient) on the U-Net's layers: F(4×4) forward
    /// beat im2col and F(2×2) on every layer with at least 32 channels on both sides, from 8×8 to
    /// 64×64. Weight gradients took F(2×2) until session 17, when on the Zen 5 EPYC (one thread,
    /// CPU clock) F(4×4) ran at 113–209 direct-convolution GFLOP/s against F(2×2)'s 82–164 on
    /// every U-Net layer from 64 to 8 pixels, and on the latent U-Net's 4-pixel layers (one 6×6
    /// tile per image) at 107–137 against 80–85, its forward at 154–226 % of sgemm against
    /// 99–137 %; F(4×4)'s error stays below 1.5e-6. With one channel on a side (the U-Net's first
    /// and last conv) the transforms dominate and im2col wins by 3–10×. Maps of at most 2×2
    /// pixels go dense (SmallMapConvolution.swift).
    public static func algorithm(_ g: ConvGeometry, outChannels oc: Int, pass: Pass) -> ConvAlgorithm {
        if SmallMapConvolution.eligible(g) {
            // Every pass of a layer runs dense or none: the backward pass computes dX and dW together.
            // Forcing another algorithm (for comparisons) applies where that algorithm can run.
            if let forced, forced != .dense, ConvAlgorithm.candidates(g).contains(forced), pass != .weightGradient || forcedWeightGradient == nil {
                return forced
            }
            if pass == .weightGradient, let forcedWeightGradient, forcedWeightGradient != .dense, ConvAlgorithm.candidates(g).contains(forcedWeightGradient) {
                return forcedWeightGradient
            }
            return .dense
        }
        if strideTwoEligible(g) { return strideTwoAlgorithm(g, outChannels: oc, pass: pass) }
        guard eligible(g) else { return .im2col }
        if pass == .weightGradient, let forcedWeightGradient, forcedWeightGradient != .winograd3, forcedWeightGradient != .dense {
            return forcedWeightGradient
        }
        if let forced, forced != .winograd3, forced != .dense { return forced }
        if min(g.channels, oc) < 16 { return .im2col }
        // Every pass alike. Maps below 8 pixels take F(4×4) only when its tiles fit them exactly.
        if g.outHeight < 8 || g.outWidth < 8 { return g.outHeight % 4 == 0 && g.outWidth % 4 == 0 ? .winograd4 : .winograd2 }
        return .winograd4
    }

    /// 4×4 stride-2 padding-1 layers (C → OC channels, H → H/2). From `MEDSYNTH_BENCH_CLOCK=cpu
    /// medsynth bench kernels --threads 1 --compare-algorithms --only dcgan` (CPU time, so the
    /// loaded machine's waiting does not count; direct-convolution GFLOP/s, sgemm 88–103): on the
    /// DCGAN's D2–D4 and G2–G4 (two runs) F(4×4) forward ran at 80–136 (median ≈ 103) against
    /// im2col's 57–82 and F(2×2)'s 75–104; input and weight gradients F(4×4) 56–140 against im2col
    /// 54–101 (D3's weight gradient and D4's input gradient within noise), F(2×2) within noise of
    /// F(4×4) on the 4×4-output D4 and mostly behind elsewhere; F(3×3) (tiles that do not divide
    /// 4, 8, 16, 32) lost everywhere. With one channel on a side (D1, G5) the transforms dominate:
    /// Winograd ran at 0.5–8 against im2col's 2–22.
    static func strideTwoAlgorithm(_ g: ConvGeometry, outChannels oc: Int, pass: Pass) -> ConvAlgorithm {
        if pass == .weightGradient, let forcedWeightGradient, forcedWeightGradient != .dense { return forcedWeightGradient }
        if let forced, forced != .dense { return forced }
        let smaller = min(g.channels, oc)
        if smaller < 16 { return .im2col }
        return .winograd4
    }
}

// MARK: 1-D transforms on 16 lanes at once
//
// A transform vector holds 8 tiles of two channels (lanes 0–7 channel c, lanes 8–15 channel c + 1)
// or 16 filters. Built for AVX-512 (Package.swift), each transform instruction does 16 lanes; on
// AVX2 the compiler splits it into two 8-lane halves, the same work as one channel at a time.
// The layouts of V, M and the padded input copy keep their 8-tile groups either way.

typealias V8 = SIMD8<Float>
/// The vector the 1-D transforms work on: two channels × 8 tiles, or 16 filters.
typealias WV = SIMD16<Float>
/// Lanes of `WV`.
let transformLanes = 16

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
@inline(__always) func store8(_ p: UnsafeMutablePointer<Float>, _ v: V8) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self) }

/// The five 1-D transforms of F(m×m, r×r), applied in place along a line of a α×α block.
protocol WinogradKernel {
    /// Output tile side.
    static var m: Int { get }
    /// Kernel side.
    static var r: Int { get }
    /// Bᵀ: α → α (input tiles).
    static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int)
    /// Aᵀ: α → m (output tiles).
    static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int)
    /// G: r → α (filters).
    static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int)
    /// A: m → α (output gradients, the adjoint of Aᵀ).
    static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int)
    /// Gᵀ: α → r (filter gradients, the adjoint of G).
    static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int)
}

extension WinogradKernel {
    /// Input tile side α = m + r − 1.
    static var alpha: Int { m + r - 1 }
    /// Transform points α², one GEMM each.
    static var points: Int { alpha * alpha }
}

/// F(2×2, 3×3), Lavin & Gray eq. (8)'s matrices.
enum WinogradF2: WinogradKernel {
    static var m: Int { 2 }
    static var r: Int { 3 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s]
        p[0] = d0 - d2; p[s] = d1 + d2; p[2 * s] = d2 - d1; p[3 * s] = d1 - d3
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s]
        p[0] = m0 + m1 + m2; p[s] = m1 - m2 - m3
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let g0 = p[0], g1 = p[s], g2 = p[2 * s]
        let half = WV(repeating: 0.5)
        p[0] = g0; p[s] = (g0 + g1 + g2) * half; p[2 * s] = (g0 - g1 + g2) * half; p[3 * s] = g2
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let y0 = p[0], y1 = p[s]
        p[0] = y0; p[s] = y0 + y1; p[2 * s] = y0 - y1; p[3 * s] = -y1
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s]
        let half = WV(repeating: 0.5)
        p[0] = u0 + (u1 + u2) * half; p[s] = (u1 - u2) * half; p[2 * s] = (u1 + u2) * half + u3
    }
}

/// F(4×4, 3×3) with interpolation points 0, ±1, ±2, ∞ (Lavin & Gray §5).
enum WinogradF4: WinogradKernel {
    static var m: Int { 4 }
    static var r: Int { 3 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s], d4 = p[4 * s], d5 = p[5 * s]
        let four = WV(repeating: 4), five = WV(repeating: 5), two = WV(repeating: 2)
        p[0] = four * d0 - five * d2 + d4
        p[s] = d3 + d4 - four * (d1 + d2)
        p[2 * s] = d4 - d3 + four * (d1 - d2)
        p[3 * s] = d4 - d2 + two * (d3 - d1)
        p[4 * s] = d4 - d2 + two * (d1 - d3)
        p[5 * s] = four * d1 - five * d3 + d5
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s], m4 = p[4 * s], m5 = p[5 * s]
        let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
        p[0] = m0 + a + c
        p[s] = b + 2 * d
        p[2 * s] = a + 4 * c
        p[3 * s] = b + 8 * d + m5
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
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
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let y0 = p[0], y1 = p[s], y2 = p[2 * s], y3 = p[3 * s]
        let even = y0 + y2, odd = y1 + y3, even4 = y0 + 4 * y2, odd8 = 2 * y1 + 8 * y3
        p[0] = y0
        p[s] = even + odd
        p[2 * s] = even - odd
        p[3 * s] = even4 + odd8
        p[4 * s] = even4 - odd8
        p[5 * s] = y3
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s], u4 = p[4 * s], u5 = p[5 * s]
        let sixth: Float = 1.0 / 6.0
        let sum12 = u1 + u2, sum34 = u3 + u4
        p[0] = u0 * 0.25 - sum12 * sixth + sum34 * (1.0 / 24.0)
        p[s] = (u2 - u1) * sixth + (u3 - u4) * (1.0 / 12.0)
        p[2 * s] = (sum34 - sum12) * sixth + u5
    }
}

/// F(2×2, 2×2) on points 0, 1, ∞: Bᵀ = [1 −1 0; 0 1 0; 0 −1 1], G = [1 0; 1 1; 0 1], Aᵀ = [1 1 0; 0 1 1].
enum WinogradF2R2: WinogradKernel {
    static var m: Int { 2 }
    static var r: Int { 2 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s]
        p[0] = d0 - d1; p[2 * s] = d2 - d1
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s]
        p[0] = m0 + m1; p[s] = m1 + m2
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let g0 = p[0], g1 = p[s]
        p[s] = g0 + g1; p[2 * s] = g1
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let y0 = p[0], y1 = p[s]
        p[s] = y0 + y1; p[2 * s] = y1
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s]
        p[0] = u0 + u1; p[s] = u1 + u2
    }
}

/// F(3×3, 2×2) on points 0, 1, −1, ∞: Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 −1 0 1],
/// G = [1 0; ½ ½; ½ −½; 0 1], Aᵀ = [1 1 1 0; 0 1 −1 0; 0 1 1 1].
enum WinogradF3R2: WinogradKernel {
    static var m: Int { 3 }
    static var r: Int { 2 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s]
        p[0] = d0 - d2; p[s] = d1 + d2; p[2 * s] = d2 - d1; p[3 * s] = d3 - d1
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s]
        p[0] = m0 + m1 + m2; p[s] = m1 - m2; p[2 * s] = m1 + m2 + m3
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let g0 = p[0], g1 = p[s]
        let half = WV(repeating: 0.5)
        p[s] = (g0 + g1) * half; p[2 * s] = (g0 - g1) * half; p[3 * s] = g1
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let y0 = p[0], y1 = p[s], y2 = p[2 * s]
        p[s] = y0 + y1 + y2; p[2 * s] = y0 - y1 + y2; p[3 * s] = y2
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s]
        let half = WV(repeating: 0.5)
        p[0] = u0 + (u1 + u2) * half; p[s] = (u1 - u2) * half + u3
    }
}

/// F(4×4, 2×2) on points 0, 1, −1, 2, ∞: Aᵀ = [1 1 1 1 0; 0 1 −1 2 0; 0 1 1 4 0; 0 1 −1 8 1],
/// G = [½ 0; −½ −½; −⅙ ⅙; ⅙ ⅓; 0 1], Bᵀ = [2 −1 −2 1 0; 0 −2 −1 1 0; 0 2 −3 1 0; 0 −1 0 1 0; 0 2 −1 −2 1].
enum WinogradF4R2: WinogradKernel {
    static var m: Int { 4 }
    static var r: Int { 2 }
    @inline(__always) static func inputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s], d4 = p[4 * s]
        let two = WV(repeating: 2), three = WV(repeating: 3)
        let d31 = d3 - d1
        p[0] = two * (d0 - d2) + d31
        p[s] = d3 - d2 - two * d1
        p[2 * s] = two * d1 - three * d2 + d3
        p[3 * s] = d31
        p[4 * s] = two * (d1 - d3) - d2 + d4
    }
    @inline(__always) static func outputLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s], m4 = p[4 * s]
        let a = m1 + m2, b = m1 - m2
        p[0] = m0 + a + m3
        p[s] = b + 2 * m3
        p[2 * s] = a + 4 * m3
        p[3 * s] = b + 8 * m3 + m4
    }
    @inline(__always) static func filterLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let g0 = p[0], g1 = p[s]
        let sixth: Float = 1.0 / 6.0
        p[0] = g0 * 0.5
        p[s] = (g0 + g1) * -0.5
        p[2 * s] = (g1 - g0) * sixth
        p[3 * s] = (g0 + 2 * g1) * sixth
        p[4 * s] = g1
    }
    @inline(__always) static func outputGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let y0 = p[0], y1 = p[s], y2 = p[2 * s], y3 = p[3 * s]
        let even = y0 + y2, odd = y1 + y3
        p[s] = even + odd
        p[2 * s] = even - odd
        p[3 * s] = y0 + 2 * y1 + 4 * y2 + 8 * y3
        p[4 * s] = y3
    }
    @inline(__always) static func filterGradientLine(_ p: UnsafeMutablePointer<WV>, _ s: Int) {
        let u0 = p[0], u1 = p[s], u2 = p[2 * s], u3 = p[3 * s], u4 = p[4 * s]
        let sixth: Float = 1.0 / 6.0
        p[0] = (u0 - u1) * 0.5 + (u3 - u2) * sixth
        p[s] = u1 * -0.5 + (u2 + 2 * u3) * sixth + u4
    }
}

// MARK: - Layout and tiling plan

/// Where a Winograd convolution reads its input and writes its output. The convolution itself is
/// always an r×r stride-1 "valid" one over a virtual input of `channels` = sourceChannels·phases
/// channels; virtual pixel (R, Q) of virtual channel c·phases + (a·2 + b) is source pixel
/// (step·R + offset − a, step·Q + offset − b) of channel c, zero outside the image.
struct WinogradLayout {
    let sourceChannels, height, width: Int
    /// 1, or 4 for the polyphase split of a stride-2 input (phase a·2 + b).
    let phases: Int
    let step: Int
    let offset: Int
    /// Output phases: 1, or 4 for the sub-pixel input gradient (phase py·2 + px reads the virtual
    /// input from (py, px) on and writes output pixels (2i + py, 2j + px)).
    let outputPhases: Int
    /// The output grid of each output phase, and where output (image, channel, i, j) of phase
    /// (py, px) lives: image·imageStride + channel·channelStride + i·rowStride + j·colStride
    /// + py·phaseRowStride + px·colStride/2.
    let outHeight, outWidth: Int
    let outImageStride, outChannelStride, outRowStride, outColStride: Int

    var channels: Int { sourceChannels * phases }

    /// A stride-1 r×r convolution with zero padding `padding`.
    static func strideOne(_ g: ConvGeometry, outChannels oc: Int) -> WinogradLayout {
        WinogradLayout(sourceChannels: g.channels, height: g.height, width: g.width, phases: 1, step: 1, offset: -g.padding,
                       outputPhases: 1, outHeight: g.outHeight, outWidth: g.outWidth,
                       outImageStride: oc * g.outPlane, outChannelStride: g.outPlane, outRowStride: g.outWidth, outColStride: 1)
    }

    /// (A): a 4×4 stride-2 padding-1 convolution as a 2×2 one over the four phase images.
    static func polyphase(_ g: ConvGeometry, outChannels oc: Int) -> WinogradLayout {
        WinogradLayout(sourceChannels: g.channels, height: g.height, width: g.width, phases: 4, step: 2, offset: 0,
                       outputPhases: 1, outHeight: g.outHeight, outWidth: g.outWidth,
                       outImageStride: oc * g.outPlane, outChannelStride: g.outPlane, outRowStride: g.outWidth, outColStride: 1)
    }

    /// (B): the input gradient of that convolution (dY, OC×OH×OW → dX, C×H×W) as four 2×2 ones.
    static func subPixel(_ g: ConvGeometry, outChannels oc: Int) -> WinogradLayout {
        WinogradLayout(sourceChannels: oc, height: g.outHeight, width: g.outWidth, phases: 1, step: 1, offset: -1,
                       outputPhases: 4, outHeight: g.outHeight, outWidth: g.outWidth,
                       outImageStride: g.channels * g.inPlane, outChannelStride: g.inPlane, outRowStride: 2 * g.width, outColStride: 2)
    }

    /// Offset of output phase q's first pixel.
    func outputOrigin(phase q: Int) -> Int { outputPhases == 1 ? 0 : (q / 2) * (outRowStride / 2) + (q % 2) * (outColStride / 2) }
}

/// How a layer is cut into tiles and tasks: depends on the shape only.
struct WinogradPlan {
    let m, r, alpha, points: Int
    let layout: WinogradLayout
    /// Virtual input channels and output channels of the r×r convolution.
    let channels, outChannels: Int
    let batch: Int
    let tilesH, tilesW: Int
    /// Rows of the per-task input copy per tile row: α, plus one when output phases read it shifted.
    let gatherRows: Int
    /// Padded row length of the per-task input copy: tilesW·m + α − m (+ 1 with output phases).
    let paddedWidth: Int
    /// When tile rows hold whole groups of 8 tiles, each padded row is stored as m phase rows
    /// (phase q holds columns q, q + m, q + 2m, …) so 8 neighbouring tiles' pixels are 8
    /// contiguous floats and the input transform loads vectors instead of gathering lanes.
    let phaseSplit: Bool
    /// Floats per phase row (phase split) and per padded row in the per-task copy.
    let phaseLength, rowStride: Int
    let rowsPerTask, tasks: Int

    init(_ layout: WinogradLayout, batch: Int, outChannels: Int, m: Int, r: Int, minimumTiles: Int = 64) {
        self.m = m; self.r = r; alpha = m + r - 1; points = alpha * alpha
        self.layout = layout; self.batch = batch; self.outChannels = outChannels
        channels = layout.channels
        let shift = layout.outputPhases == 1 ? 0 : 1
        tilesH = (layout.outHeight + m - 1) / m
        tilesW = (layout.outWidth + m - 1) / m
        gatherRows = alpha + shift
        paddedWidth = tilesW * m + r - 1 + shift
        phaseSplit = tilesW % 8 == 0
        phaseLength = (paddedWidth + m - 1) / m
        rowStride = phaseSplit ? m * phaseLength : paddedWidth
        // Enough tiles per task for the GEMMs to reach their rate, while the task's transformed
        // input and output (α²·(C + OC) floats per tile) stay within about 1 MB, one core's L2 on
        // the Zen 5 EPYC (2 MB before: U-Net forward, 1 thread, CPU clock, 4 alternating pairs,
        // 44.8/44.8/44.8/45.6 against 44.5/40.6/41.5/43.7 images/s; DCGAN within noise).
        let perTile = points * (channels + outChannels)
        let wantedTiles = max(minimumTiles, min(max(512, minimumTiles), WinogradPlan.taskFloats / max(1, perTile)))
        rowsPerTask = max(1, min(batch * tilesH, wantedTiles / tilesW))
        tasks = (batch * tilesH + rowsPerTask - 1) / rowsPerTask
    }

    init(_ g: ConvGeometry, batch: Int, outChannels: Int, m: Int, minimumTiles: Int = 64) {
        self.init(.strideOne(g, outChannels: outChannels), batch: batch, outChannels: outChannels, m: m, r: 3, minimumTiles: minimumTiles)
    }

    /// Tiles per task at least, for weight gradients (MEDSYNTH_WINOGRAD_DW_TILES, for tuning): their
    /// GEMMs sum over tiles into α²·OC·C accumulators that every task reads and writes again, so
    /// they want deeper products than the forward. 256 against 64, `bench kernels`, 1 thread, CPU
    /// clock, 3 alternating rounds, backward GFLOP/s: DCGAN D3 111–117 vs 86–108, D2/D4 equal or
    /// better; U-Net 32 px 64→64 106–117 vs 91–101, 128→64 131–140 vs 110–132, 16/8 px within noise.
    static let weightGradientTiles = ProcessInfo.processInfo.environment["MEDSYNTH_WINOGRAD_DW_TILES"].flatMap { Int($0) } ?? 256

    /// Floats of transformed input and output (V and M) one task aims for (MEDSYNTH_WINOGRAD_TASK_FLOATS, for tuning).
    static let taskFloats = ProcessInfo.processInfo.environment["MEDSYNTH_WINOGRAD_TASK_FLOATS"].flatMap { Int($0) } ?? (1 << 18)

    func tileRows(task: Int) -> Range<Int> {
        let lo = task * rowsPerTask
        return lo..<min(batch * tilesH, lo + rowsPerTask)
    }

    /// Tiles in a task rounded up to whole SIMD8 groups: the row stride of V and M.
    static func paddedTiles(_ tiles: Int) -> Int { (tiles + 7) / 8 * 8 }
    var maxTilesPerTask: Int { WinogradPlan.paddedTiles(rowsPerTask * tilesW) }
    /// Floats from one transform point's block of V (C rows of `maxTilesPerTask`) or M (OC rows) to
    /// the next: one cache line more than the rows, so the α² blocks do not all start at the same
    /// offset modulo 4 KB. Without it (C·ld·4 bytes is a multiple of 4 KB for most layers) the
    /// transforms' 36 stores or loads per tile group compete for one L1 set: the U-Net forward's
    /// input transforms took 0.58–0.63 s instead of 0.40–0.43 (one thread, OpenBLAS's own kernels).
    func pointStride(rows: Int) -> Int { rows * maxTilesPerTask + 16 }
    /// Floats of the per-task input copy.
    var gatherCount: Int { directInput ? 0 : channels * rowsPerTask * gatherRows * rowStride }
    /// Stride-1 layouts whose tile rows hold whole groups of 8 tiles (m = 2 or 4): the input
    /// transform reads the NCHW input itself, with the zero padding applied in registers
    /// (`winogradInputTransformDirect`), instead of a padded, phase-split copy.
    var directInput: Bool {
        WinogradPlan.directInputEnabled && phaseSplit && (m == 2 || m == 4) && layout.phases == 1 && layout.step == 1
            && layout.outputPhases == 1
    }
    /// MEDSYNTH_WINOGRAD_DIRECT_INPUT=0 keeps the padded copy everywhere (for measuring; tests compare both).
    nonisolated(unsafe) static var directInputEnabled = ProcessInfo.processInfo.environment["MEDSYNTH_WINOGRAD_DIRECT_INPUT"] != "0"
    /// Few tasks: run them one by one with every stage split across workers instead.
    var splitsStages: Bool { tasks < 2 * Parallel.workers }
}

/// Runs `body` over 0..<count: split across workers when `parallel`, else in one call.
@inline(__always)
func winogradStage(_ count: Int, parallel: Bool, cost: Int, _ body: (Range<Int>) -> Void) {
    if parallel { Parallel.forRanges(count, cost: cost, body) } else if count > 0 { body(0..<count) }
}

// MARK: - Filter transforms

/// U[p][f] = (G w[f] Gᵀ)[p] for r×r filters f (row-major r·r floats each): the α² matrices
/// of OC×C the GEMMs multiply (filter f = oc·C + c).
func winogradFilterTransform<K: WinogradKernel>(_ kernel: K.Type, _ w: UnsafePointer<Float>, filters: Int,
                                                 _ u: UnsafeMutablePointer<Float>) {
    let alpha = K.alpha, points = K.points, r = K.r, width = transformLanes
    let groups = (filters + width - 1) / width
    Parallel.forRanges(groups, cost: width * 200) { range in
        withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { buffer in
            let block = buffer.baseAddress!
            let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
            for group in range {
                let f0 = group * width, lanes = min(width, filters - f0)
                for i in 0..<r { for j in 0..<r {
                    block[i * alpha + j] = WV(repeating: 0)
                    for l in 0..<lanes { lanesOf[(i * alpha + j) * width + l] = w[(f0 + l) * r * r + i * r + j] }
                } }
                for j in 0..<r { K.filterLine(block + j, alpha) }
                for i in 0..<alpha { K.filterLine(block + i * alpha, 1) }
                for p in 0..<points {
                    let v = block[p], dst = u + p * filters + f0
                    if lanes == width { UnsafeMutableRawPointer(dst).storeBytes(of: v, as: WV.self) } else { for l in 0..<lanes { dst[l] = v[l] } }
                }
            }
        }
    }
}

/// dw[f] += (Gᵀ dU[·][f] G) for every r×r filter f (the adjoint of the filter transform).
func winogradFilterGradientTransform<K: WinogradKernel>(_ kernel: K.Type, _ du: UnsafePointer<Float>, filters: Int,
                                                         _ dw: UnsafeMutablePointer<Float>) {
    let alpha = K.alpha, points = K.points, r = K.r, width = transformLanes
    let groups = (filters + width - 1) / width
    Parallel.forRanges(groups, cost: width * 200) { range in
        withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { buffer in
            let block = buffer.baseAddress!
            let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
            for group in range {
                let f0 = group * width, lanes = min(width, filters - f0)
                for p in 0..<points {
                    if lanes == width {
                        block[p] = UnsafeRawPointer(du + p * filters + f0).loadUnaligned(as: WV.self)
                    } else {
                        block[p] = WV(repeating: 0)
                        for l in 0..<lanes { lanesOf[p * width + l] = du[p * filters + f0 + l] }
                    }
                }
                for j in 0..<alpha { K.filterGradientLine(block + j, alpha) }
                for i in 0..<r { K.filterGradientLine(block + i * alpha, 1) }
                for i in 0..<r { for j in 0..<r {
                    for l in 0..<lanes { dw[(f0 + l) * r * r + i * r + j] += lanesOf[(i * alpha + j) * width + l] }
                } }
            }
        }
    }
}

// MARK: - 4×4 stride-2 kernels as 2×2 kernels

/// (A): w (OC×C×4×4) → the 2×2 kernels of the 4·C phase channels, w2[o, c·4 + a·2 + b, t, u] = w[o, c, 2t + 1 − a, 2u + 1 − b].
func polyphaseKernels(_ w: UnsafePointer<Float>, outChannels oc: Int, channels c: Int) -> [Float] {
    var out = [Float](repeating: 0, count: oc * c * 16)
    for o in 0..<oc { for ci in 0..<c { for a in 0..<2 { for b in 0..<2 { for t in 0..<2 { for u in 0..<2 {
        out[(((o * c + ci) * 4 + a * 2 + b) * 2 + t) * 2 + u] = w[((o * c + ci) * 4 + 2 * t + 1 - a) * 4 + 2 * u + 1 - b]
    } } } } } }
    return out
}

/// The adjoint of `polyphaseKernels`: dW[o, c, 2t + 1 − a, 2u + 1 − b] += dw2[o, c·4 + a·2 + b, t, u].
func addPolyphaseKernelGradient(_ dw2: UnsafePointer<Float>, outChannels oc: Int, channels c: Int, _ dW: UnsafeMutablePointer<Float>) {
    for o in 0..<oc { for ci in 0..<c { for a in 0..<2 { for b in 0..<2 { for t in 0..<2 { for u in 0..<2 {
        dW[((o * c + ci) * 4 + 2 * t + 1 - a) * 4 + 2 * u + 1 - b] += dw2[(((o * c + ci) * 4 + a * 2 + b) * 2 + t) * 2 + u]
    } } } } } }
}

/// (B): the 2×2 kernel of output phase (py, px) for each (c, o): w_p[c, o, a, b] = w[o, c, 3 − py − 2a, 3 − px − 2b],
/// the four phases one after another (C×OC filters each).
func subPixelKernels(_ w: UnsafePointer<Float>, outChannels oc: Int, channels c: Int) -> [Float] {
    var out = [Float](repeating: 0, count: 4 * c * oc * 4)
    for q in 0..<4 {
        let py = q / 2, px = q % 2
        for ci in 0..<c { for o in 0..<oc { for a in 0..<2 { for b in 0..<2 {
            out[(((q * c + ci) * oc + o) * 2 + a) * 2 + b] = w[((o * c + ci) * 4 + 3 - py - 2 * a) * 4 + 3 - px - 2 * b]
        } } } }
    }
    return out
}

// MARK: - Input and output tiles

/// Copies the virtual input rows that the task's tile rows read into `padded`
/// ([virtual channel][tile row][gatherRows][rowStride], zero outside the image) for the virtual
/// channels `channels`. Tile row r's padded row a is virtual row (r mod tilesH)·m + a.
@inline(__always)
func winogradGatherInput(_ x: UnsafePointer<Float>, _ plan: WinogradPlan, rows: Range<Int>, channels: Range<Int>,
                         _ padded: UnsafeMutablePointer<Float>) {
    let layout = plan.layout, wp = plan.paddedWidth, rowCount = rows.count, step = layout.step
    let lineLength = plan.phaseSplit ? plan.rowStride : wp
    for vc in channels {
        let c = vc / layout.phases, phase = vc % layout.phases
        let rowOffset = layout.offset - phase / 2, colOffset = layout.offset - phase % 2
        // Virtual columns [lo, hi) read source columns step·q + colOffset inside the image.
        let lo = min(lineLength, max(0, (-colOffset + step - 1) / step))
        let hi = max(lo, min(lineLength, (layout.width - 1 - colOffset) / step + 1))
        for (ri, r) in rows.enumerated() {
            let img = r / plan.tilesH, ti = r % plan.tilesH
            let src = x + (img * layout.sourceChannels + c) * layout.height * layout.width
            let dstBase = padded + ((vc * rowCount + ri) * plan.gatherRows) * plan.rowStride
            for a in 0..<plan.gatherRows {
                let ih = step * (ti * plan.m + a) + rowOffset
                let dst = dstBase + a * plan.rowStride
                if ih < 0 || ih >= layout.height { dst.update(repeating: 0, count: plan.rowStride); continue }
                let srow = src + ih * layout.width + colOffset
                func fill(_ line: UnsafeMutablePointer<Float>) {
                    if lo > 0 { line.update(repeating: 0, count: lo) }
                    if step == 1 {
                        (line + lo).update(from: srow + lo, count: hi - lo)
                    } else {
                        // Every other column (a polyphase image): 8 at a time from 16 loaded, while
                        // the 16 stay inside the row (q + 8 < hi keeps srow[2q + 15] in range).
                        var q = lo
                        if step == 2 {
                            while q + 8 < hi {
                                store8(line + q, UnsafeRawPointer(srow + 2 * q).loadUnaligned(as: SIMD16<Float>.self).evenHalf)
                                q += 8
                            }
                        }
                        while q < hi { line[q] = srow[step * q]; q += 1 }
                    }
                    if hi < lineLength { (line + hi).update(repeating: 0, count: lineLength - hi) }
                }
                if plan.phaseSplit {
                    // Padded column q goes to phase q mod m, slot q / m.
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: lineLength) { line in
                        let l = line.baseAddress!
                        fill(l)
                        splitPhases(l, dst, m: plan.m, length: plan.phaseLength)
                    }
                } else {
                    fill(dst)
                }
            }
        }
    }
}

/// d[q·length + j] = line[j·m + q] for q < m, j < length: a stride-m deinterleave, 8 slots of
/// every phase per step for m = 2 and 4 (one two-source permute each under AVX-512).
@inline(__always)
func splitPhases(_ line: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, m: Int, length: Int) {
    var j = 0
    if m == 4 {
        while j + 8 <= length {
            let a = UnsafeRawPointer(line + 4 * j).loadUnaligned(as: SIMD16<Float>.self)
            let b = UnsafeRawPointer(line + 4 * j + 16).loadUnaligned(as: SIMD16<Float>.self)
            store8(d + j, V8(a[0], a[4], a[8], a[12], b[0], b[4], b[8], b[12]))
            store8(d + length + j, V8(a[1], a[5], a[9], a[13], b[1], b[5], b[9], b[13]))
            store8(d + 2 * length + j, V8(a[2], a[6], a[10], a[14], b[2], b[6], b[10], b[14]))
            store8(d + 3 * length + j, V8(a[3], a[7], a[11], a[15], b[3], b[7], b[11], b[15]))
            j += 8
        }
    } else if m == 2 {
        while j + 8 <= length {
            let a = UnsafeRawPointer(line + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
            store8(d + j, a.evenHalf)
            store8(d + length + j, a.oddHalf)
            j += 8
        }
    }
    for q in 0..<m {
        var slot = j, from = j * m + q
        while slot < length { d[q * length + slot] = line[from]; slot += 1; from += m }
    }
}

/// Where each tile of a task lives, computed once per task so the per-channel loops do no
/// divisions: `input[t]` is the tile's offset in the padded copy (non-split layout), `output[t]`
/// its top-left pixel in the output for channel 0 and output phase 0, `rows[t]`/`cols[t]` how
/// many of its m×m pixels are inside the output. Entries past the last tile repeat it.
struct WinogradTileIndex {
    let input, output: UnsafeMutablePointer<Int>
    let rows, cols: UnsafeMutablePointer<Int>
    /// Per group of 4 tiles (m = 4, unit column stride): how the output transform stores them:
    /// `quadScalar` pixel by pixel (a partial or padding tile among them), `quadSpread` one 4-float
    /// row per tile and output row, `quadRun` one 16-float row for the 4 (side by side in the output).
    let quads: UnsafeMutablePointer<UInt8>
    static let quadScalar: UInt8 = 0, quadSpread: UInt8 = 1, quadRun: UInt8 = 2

    init(capacity: Int) {
        input = .allocate(capacity: capacity); output = .allocate(capacity: capacity)
        rows = .allocate(capacity: capacity); cols = .allocate(capacity: capacity)
        quads = .allocate(capacity: (capacity + 3) / 4)
    }

    func deallocate() { input.deallocate(); output.deallocate(); rows.deallocate(); cols.deallocate(); quads.deallocate() }

    func fill(_ plan: WinogradPlan, rows tileRows: Range<Int>) {
        let layout = plan.layout, m = plan.m
        let tiles = tileRows.count * plan.tilesW
        for t in 0..<WinogradPlan.paddedTiles(tiles) {
            let tt = min(t, tiles - 1)
            let ri = tt / plan.tilesW, tj = tt % plan.tilesW
            let r = tileRows.lowerBound + ri
            let img = r / plan.tilesH, ti = r % plan.tilesH
            input[t] = ri * plan.gatherRows * plan.paddedWidth + tj * m
            output[t] = img * layout.outImageStride + ti * m * layout.outRowStride + tj * m * layout.outColStride
            rows[t] = min(m, layout.outHeight - ti * m)
            cols[t] = min(m, layout.outWidth - tj * m)
        }
        for quad in 0..<WinogradPlan.paddedTiles(tiles) / 4 {
            let t0 = quad * 4
            var kind = WinogradTileIndex.quadScalar
            if m == 4 && layout.outColStride == 1 && t0 + 4 <= tiles && (t0..<t0 + 4).allSatisfy({ isFull($0, m) }) {
                kind = (1..<4).allSatisfy({ output[t0 + $0] == output[t0] + $0 * m }) ? WinogradTileIndex.quadRun : WinogradTileIndex.quadSpread
            }
            quads[quad] = kind
        }
    }

    @inline(__always) func isFull(_ t: Int, _ m: Int) -> Bool { rows[t] == m && cols[t] == m }
}

/// Finishes one SIMD step of the input transform: Bᵀ·d·B over the α×α block of 8 tiles × 2
/// channels, then V[p][c][tile…tile+7] (and channel c1's when `pair`) for every point p.
@inline(__always)
func winogradTransformAndStore<K: WinogradKernel>(_ kernel: K.Type, _ block: UnsafeMutablePointer<WV>, alpha: Int, points: Int,
                                                  _ v: UnsafeMutablePointer<Float>, ld: Int, pointStride: Int,
                                                  channels: (Int, Int), pair: Bool, tile: Int) {
    for b in 0..<alpha { K.inputLine(block + b, alpha) }
    for a in 0..<alpha { K.inputLine(block + a * alpha, 1) }
    for p in 0..<points {
        store8(v + p * pointStride + channels.0 * ld + tile, block[p].lowHalf)
        if pair { store8(v + p * pointStride + channels.1 * ld + tile, block[p].highHalf) }
    }
}

/// V[p][c][t] = (Bᵀ d Bᵀᵀ)[p] for the task's tiles and the virtual channels `channels`, 8 tiles
/// of two channels per SIMD step; the tiles start `shift` = (rows, columns) into the padded copy
/// (output phases). A lone last channel runs in the low half (the high half repeats it, unstored).
@inline(__always)
func winogradInputTransform<K: WinogradKernel>(_ kernel: K.Type, _ padded: UnsafePointer<Float>, _ plan: WinogradPlan,
                                                rowCount: Int, channels: Range<Int>, shift: (Int, Int),
                                                _ v: UnsafeMutablePointer<Float>, ld: Int,
                                                index: WinogradTileIndex, block: UnsafeMutablePointer<WV>) {
    let alpha = K.alpha, points = K.points, vStride = plan.pointStride(rows: plan.channels)
    let tiles = rowCount * plan.tilesW
    let channelStride = rowCount * plan.gatherRows * plan.rowStride
    if plan.phaseSplit {
        let m = K.m, stride = plan.rowStride, length = plan.phaseLength
        var c = channels.lowerBound
        while c < channels.upperBound {
            let pair = c + 1 < channels.upperBound, c1 = pair ? c + 1 : c
            for ri in 0..<rowCount {
                let rowBase0 = padded + (c * rowCount + ri) * plan.gatherRows * stride + shift.0 * stride
                let rowBase1 = padded + (c1 * rowCount + ri) * plan.gatherRows * stride + shift.0 * stride
                var j0 = 0
                while j0 < plan.tilesW {
                    for a in 0..<alpha {
                        let row0 = rowBase0 + a * stride + j0, row1 = rowBase1 + a * stride + j0
                        for b in 0..<alpha {
                            let q = b + shift.1, offset = (q % m) * length + q / m
                            block[a * alpha + b] = WV(lowHalf: load8(row0 + offset), highHalf: load8(row1 + offset))
                        }
                    }
                    winogradTransformAndStore(K.self, block, alpha: alpha, points: points, v, ld: ld, pointStride: vStride,
                                               channels: (c, c1), pair: pair, tile: ri * plan.tilesW + j0)
                    j0 += 8
                }
            }
            c += 2
        }
        return
    }
    let wp = plan.paddedWidth
    var c = channels.lowerBound
    while c < channels.upperBound {
        let pair = c + 1 < channels.upperBound, c1 = pair ? c + 1 : c
        let base0 = padded + c * channelStride + shift.0 * wp + shift.1
        let base1 = padded + c1 * channelStride + shift.0 * wp + shift.1
        var t0 = 0
        while t0 < tiles {
            let o = index.input + t0
            let (o0, o1, o2, o3, o4, o5, o6, o7) = (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7])
            for a in 0..<alpha {
                let q0 = base0 + a * wp, q1 = base1 + a * wp
                for b in 0..<alpha {
                    let p0 = q0 + b, p1 = q1 + b
                    block[a * alpha + b] = WV(lowHalf: V8(p0[o0], p0[o1], p0[o2], p0[o3], p0[o4], p0[o5], p0[o6], p0[o7]),
                                              highHalf: V8(p1[o0], p1[o1], p1[o2], p1[o3], p1[o4], p1[o5], p1[o6], p1[o7]))
                }
            }
            winogradTransformAndStore(K.self, block, alpha: alpha, points: points, v, ld: ld, pointStride: vStride,
                                       channels: (c, c1), pair: pair, tile: t0)
            t0 += 8
        }
        c += 2
    }
}

/// V[p][c][t] = (Bᵀ d Bᵀᵀ)[p] read straight from the NCHW input `x` (a stride-1 layout whose
/// tile rows hold whole groups of 8 tiles, `plan.directInput`): for each input row of a group of
/// 8 tiles the 8m + α − m floats it needs are three 16-float loads, lanes outside the image (the
/// zero padding) cleared by a mask, and column b of the 8 tiles (pixels b, b + m, …, b + 7m) a
/// fixed shuffle of them. Rows outside the image are zero. The same values as the padded copy
/// (`winogradGatherInput`) followed by `winogradInputTransform`, without the copy.
@inline(__always)
func winogradInputTransformDirect<K: WinogradKernel>(_ kernel: K.Type, _ x: UnsafePointer<Float>, _ plan: WinogradPlan,
                                                      rows: Range<Int>, channels: Range<Int>,
                                                      _ v: UnsafeMutablePointer<Float>, ld: Int, block: UnsafeMutablePointer<WV>) {
    let alpha = K.alpha, points = K.points, m = K.m, vStride = plan.pointStride(rows: plan.channels), layout = plan.layout
    let height = layout.height, width = layout.width, plane = height * width, pad = -layout.offset
    let end = x + plan.batch * layout.sourceChannels * plane
    let zero = WV(repeating: 0)
    typealias Bits = SIMD16<UInt32>
    let groups = plan.tilesW / 8
    // Per group of 8 tiles: which of the 48 columns from col0 = 8m·group − pad lie inside the
    // image (all-ones bits) and which are padding (zero bits); the masks depend on the group only.
    let masks = UnsafeMutablePointer<Bits>.allocate(capacity: 3 * groups)
    defer { masks.deallocate() }
    for g in 0..<groups {
        let col0 = g * 8 * m - pad
        for i in 0..<3 {
            var bits = Bits(repeating: 0)
            for k in 0..<16 where col0 + 16 * i + k >= 0 && col0 + 16 * i + k < width { bits[k] = ~0 }
            masks[3 * g + i] = bits
        }
    }
    /// The three 16-float pieces of input row `ih` from column `col0` on, zero outside the image.
    @inline(__always) func load(_ src: UnsafePointer<Float>, _ ih: Int, _ col0: Int, _ mask: UnsafePointer<Bits>) -> (WV, WV, WV) {
        if ih < 0 || ih >= height { return (zero, zero, zero) }
        let first = src + ih * width + col0
        if col0 >= 0 && col0 + 48 <= width {
            return (UnsafeRawPointer(first).loadUnaligned(as: WV.self), UnsafeRawPointer(first + 16).loadUnaligned(as: WV.self),
                    UnsafeRawPointer(first + 32).loadUnaligned(as: WV.self))
        }
        if first >= x && first + 48 <= end {
            // Neighbouring rows' (or planes') floats are read and cleared bit by bit.
            let b0 = UnsafeRawPointer(first).loadUnaligned(as: Bits.self) & mask[0]
            let b1 = UnsafeRawPointer(first + 16).loadUnaligned(as: Bits.self) & mask[1]
            let b2 = UnsafeRawPointer(first + 32).loadUnaligned(as: Bits.self) & mask[2]
            return (unsafeBitCast(b0, to: WV.self), unsafeBitCast(b1, to: WV.self), unsafeBitCast(b2, to: WV.self))
        }
        // At the very start or end of the tensor: through a zeroed line.
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: 48) { buffer in
            let line = buffer.baseAddress!
            for k in 0..<48 { line[k] = (col0 + k >= 0 && col0 + k < width) ? first[k] : 0 }
            return (UnsafeRawPointer(line).loadUnaligned(as: WV.self), UnsafeRawPointer(line + 16).loadUnaligned(as: WV.self),
                    UnsafeRawPointer(line + 32).loadUnaligned(as: WV.self))
        }
    }
    var c = channels.lowerBound
    while c < channels.upperBound {
        let pair = c + 1 < channels.upperBound, c1 = pair ? c + 1 : c
        for (ri, r) in rows.enumerated() {
            let img = r / plan.tilesH, ti = r % plan.tilesH
            let src0 = x + (img * layout.sourceChannels + c) * plane, src1 = x + (img * layout.sourceChannels + c1) * plane
            var j0 = 0
            while j0 < plan.tilesW {
                let col0 = j0 * m - pad, mask = UnsafePointer(masks + 3 * (j0 / 8))
                for a in 0..<alpha {
                    let ih = ti * m + a - pad
                    let p0 = load(src0, ih, col0, mask), p1 = load(src1, ih, col0, mask)
                    let row = block + a * alpha
                    if m == 4 {
                        row[0] = WV(lowHalf: strided4(p0, 0), highHalf: strided4(p1, 0))
                        row[1] = WV(lowHalf: strided4(p0, 1), highHalf: strided4(p1, 1))
                        row[2] = WV(lowHalf: strided4(p0, 2), highHalf: strided4(p1, 2))
                        row[3] = WV(lowHalf: strided4(p0, 3), highHalf: strided4(p1, 3))
                        row[4] = WV(lowHalf: strided4(p0, 4), highHalf: strided4(p1, 4))
                        row[5] = WV(lowHalf: strided4(p0, 5), highHalf: strided4(p1, 5))
                    } else {
                        row[0] = WV(lowHalf: p0.0.evenHalf, highHalf: p1.0.evenHalf)
                        row[1] = WV(lowHalf: p0.0.oddHalf, highHalf: p1.0.oddHalf)
                        row[2] = WV(lowHalf: strided2(p0, 2), highHalf: strided2(p1, 2))
                        row[3] = WV(lowHalf: strided2(p0, 3), highHalf: strided2(p1, 3))
                    }
                }
                winogradTransformAndStore(K.self, block, alpha: alpha, points: points, v, ld: ld, pointStride: vStride,
                                           channels: (c, c1), pair: pair, tile: ri * plan.tilesW + j0)
                j0 += 8
            }
        }
        c += 2
    }
}

/// Elements b, b + 4, …, b + 28 of the 48 floats in `p` (b < 6; constant after inlining).
@inline(__always)
func strided4(_ p: (WV, WV, WV), _ b: Int) -> V8 {
    if b < 4 {
        return V8(p.0[b], p.0[b + 4], p.0[b + 8], p.0[b + 12], p.1[b], p.1[b + 4], p.1[b + 8], p.1[b + 12])
    }
    let d = b - 4
    return V8(p.0[d + 4], p.0[d + 8], p.0[d + 12], p.1[d], p.1[d + 4], p.1[d + 8], p.1[d + 12], p.2[d])
}

/// Elements b, b + 2, …, b + 14 of the 48 floats in `p` for b = 2, 3.
@inline(__always)
func strided2(_ p: (WV, WV, WV), _ b: Int) -> V8 {
    let d = b - 2
    return V8(p.0[d + 2], p.0[d + 4], p.0[d + 6], p.0[d + 8], p.0[d + 10], p.0[d + 12], p.0[d + 14], p.1[d])
}

/// y[tile] (+)= Aᵀ M A for the task's tiles and the output channels `outChannels`, two channels
/// per SIMD step (lanes 0–7 channel o, 8–15 channel o + 1); `y` points at the output phase's first pixel.
/// With `residual` (laid out as y, pointing at the same pixel), y = Aᵀ M A + bias + residual: a
/// residual connection's add done in the store instead of a pass of its own.
@inline(__always)
func winogradOutputTransform<K: WinogradKernel>(_ kernel: K.Type, _ mm: UnsafePointer<Float>, ld: Int, _ plan: WinogradPlan,
                                                 tiles: Int, outChannels: Range<Int>, _ y: UnsafeMutablePointer<Float>, accumulate: Bool,
                                                 bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                                                 index: WinogradTileIndex, block: UnsafeMutablePointer<WV>) {
    let m = K.m, alpha = K.alpha, points = K.points, mmStride = plan.pointStride(rows: plan.outChannels), width = transformLanes
    // The residual's element for an output address d is at d + residualDelta.
    let residualDelta = residual.map { $0 - UnsafePointer(y) }
    let layout = plan.layout, rowStride = layout.outRowStride, colStride = layout.outColStride
    // Lane l of channel half h of block[q] is the float at (q·16 + h·8 + l).
    let lanesOf = UnsafeRawPointer(block).assumingMemoryBound(to: Float.self)
    var o = outChannels.lowerBound
    while o < outChannels.upperBound {
        let pair = o + 1 < outChannels.upperBound, o1 = pair ? o + 1 : o
        var t0 = 0
        while t0 < tiles {
            let lanes = min(8, tiles - t0)
            for p in 0..<points {
                block[p] = WV(lowHalf: load8(mm + p * mmStride + o * ld + t0), highHalf: load8(mm + p * mmStride + o1 * ld + t0))
            }
            for b in 0..<alpha { K.outputLine(block + b, alpha) }
            for a in 0..<m { K.outputLine(block + a * alpha, 1) }
            if let bias {
                // The conv bias rides along with the output transform instead of a separate pass.
                let bv = WV(lowHalf: V8(repeating: bias[o]), highHalf: V8(repeating: bias[o1]))
                for a in 0..<m { for b in 0..<m { block[a * alpha + b] += bv } }
            }
            for half in 0..<(pair ? 2 : 1) {
                let yo = y + (o + half) * layout.outChannelStride, lanesOfHalf = lanesOf + half * 8
                var vectorLanes = 0
                if m == 4 {
                    // Whole 4×4 tiles four at a time: row a of tiles l..l+3 is a 4×4 transpose of
                    // lanes l..l+3 of block[a·α + 0...3], done as two rounds of two-source shuffles.
                    while vectorLanes < 8 {
                        let kind = index.quads[(t0 + vectorLanes) / 4]
                        if kind == WinogradTileIndex.quadScalar { break }
                        let l0 = half * 8 + vectorLanes
                        let t = t0 + vectorLanes
                        for a in 0..<4 {
                            let r0 = block[a * alpha], r1 = block[a * alpha + 1], r2 = block[a * alpha + 2], r3 = block[a * alpha + 3]
                            // Constant lanes in each case, so the shuffles are fixed permutations.
                            let rowVector: WV
                            switch l0 {
                            case 0: rowVector = quadRow(r0, r1, r2, r3, lane: 0)
                            case 4: rowVector = quadRow(r0, r1, r2, r3, lane: 4)
                            case 8: rowVector = quadRow(r0, r1, r2, r3, lane: 8)
                            default: rowVector = quadRow(r0, r1, r2, r3, lane: 12)
                            }
                            if kind == WinogradTileIndex.quadRun {
                                let drow = yo + index.output[t] + a * rowStride
                                var value = rowVector
                                if accumulate { value += UnsafeRawPointer(drow).loadUnaligned(as: WV.self) }
                                if let residualDelta { value += UnsafeRawPointer(drow + residualDelta).loadUnaligned(as: WV.self) }
                                UnsafeMutableRawPointer(drow).storeBytes(of: value, as: WV.self)
                            } else {
                                for k in 0..<4 {
                                    let drow = yo + index.output[t + k] + a * rowStride
                                    var piece = SIMD4<Float>(rowVector[4 * k], rowVector[4 * k + 1], rowVector[4 * k + 2], rowVector[4 * k + 3])
                                    if accumulate { piece += UnsafeRawPointer(drow).loadUnaligned(as: SIMD4<Float>.self) }
                                    if let residualDelta { piece += UnsafeRawPointer(drow + residualDelta).loadUnaligned(as: SIMD4<Float>.self) }
                                    UnsafeMutableRawPointer(drow).storeBytes(of: piece, as: SIMD4<Float>.self)
                                }
                            }
                        }
                        vectorLanes += 4
                    }
                }
                for l in vectorLanes..<lanes {
                    let t = t0 + l
                    let dst = yo + index.output[t]
                    if colStride == 1 && index.isFull(t, m) && !accumulate && residualDelta == nil {
                        for a in 0..<m {
                            let drow = dst + a * rowStride, src = lanesOfHalf + a * alpha * width + l
                            for b in 0..<m { drow[b] = src[b * width] }
                        }
                        continue
                    }
                    let hMax = index.rows[t], wMax = index.cols[t]
                    for a in 0..<hMax {
                        let drow = dst + a * rowStride, src = lanesOfHalf + a * alpha * width + l
                        if let residualDelta {
                            let rrow = UnsafePointer(drow) + residualDelta
                            for b in 0..<wMax { drow[b * colStride] = (accumulate ? drow[b * colStride] + src[b * width] : src[b * width]) + rrow[b * colStride] }
                        } else if accumulate {
                            for b in 0..<wMax { drow[b * colStride] += src[b * width] }
                        } else {
                            for b in 0..<wMax { drow[b * colStride] = src[b * width] }
                        }
                    }
                }
            }
            t0 += 8
        }
        o += 2
    }
}

/// (r0[l], r1[l], r2[l], r3[l], r0[l + 1], …, r3[l + 3]) for l = 0, 4, 8 or 12: row a of four
/// neighbouring 4×4 output tiles from the lanes of its four transformed columns. Two rounds of
/// two-source shuffles (vpermt2ps under AVX-512).
@inline(__always)
func quadRow(_ r0: WV, _ r1: WV, _ r2: WV, _ r3: WV, lane l: Int) -> WV {
    let a = SIMD8<Float>(r0[l], r1[l], r0[l + 1], r1[l + 1], r0[l + 2], r1[l + 2], r0[l + 3], r1[l + 3])
    let b = SIMD8<Float>(r2[l], r3[l], r2[l + 1], r3[l + 1], r2[l + 2], r3[l + 2], r2[l + 3], r3[l + 3])
    return WV(a[0], a[1], b[0], b[1], a[2], a[3], b[2], b[3], a[4], a[5], b[4], b[5], a[6], a[7], b[6], b[7])
}

// MARK: - Forward

/// Scratch for one worker's tasks.
struct WinogradScratch {
    let padded, v, mm: UnsafeMutablePointer<Float>
    let index: WinogradTileIndex

    init(_ plan: WinogradPlan, outputCapacity: Int) {
        let ld = plan.maxTilesPerTask
        padded = .allocate(capacity: plan.gatherCount)
        v = .allocate(capacity: plan.points * plan.pointStride(rows: plan.channels))
        mm = .allocate(capacity: plan.points * plan.pointStride(rows: outputCapacity))
        index = WinogradTileIndex(capacity: ld)
    }

    func deallocate() { padded.deallocate(); v.deallocate(); mm.deallocate(); index.deallocate() }
}

/// Runs one task of a forward plan: y (+)= the r×r convolution of the task's tiles, for every
/// output phase (U holds one α²×OC×C block per output phase). With `parallel`, every stage is
/// split across workers (the same GEMMs either way).
func winogradForwardTask<K: WinogradKernel>(_ kernel: K.Type, _ plan: WinogradPlan, task: Int, _ x: UnsafePointer<Float>,
                                            _ u: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, accumulate: Bool,
                                            bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                                            _ scratch: WinogradScratch, parallel: Bool, stage: inout WinogradStageClock) {
    let c = plan.channels, oc = plan.outChannels, points = plan.points, ld = plan.maxTilesPerTask
    let rows = plan.tileRows(task: task)
    let tiles = rows.count * plan.tilesW
    scratch.index.fill(plan, rows: rows)
    let transformCost = tiles * points * 8
    if !plan.directInput {
        winogradStage(c, parallel: parallel, cost: tiles * plan.gatherRows * plan.paddedWidth) { range in
            winogradGatherInput(x, plan, rows: rows, channels: range, scratch.padded)
        }
    }
    stage.lap(0)
    for q in 0..<plan.layout.outputPhases {
        let shift = plan.layout.outputPhases == 1 ? (0, 0) : (q / 2, q % 2)
        winogradStage(c, parallel: parallel, cost: transformCost) { range in
            withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { block in
                if plan.directInput {
                    winogradInputTransformDirect(K.self, x, plan, rows: rows, channels: range, scratch.v, ld: ld, block: block.baseAddress!)
                } else {
                    winogradInputTransform(K.self, scratch.padded, plan, rowCount: rows.count, channels: range, shift: shift,
                                           scratch.v, ld: ld, index: scratch.index, block: block.baseAddress!)
                }
            }
        }
        stage.lap(1)
        let uq = u + q * points * oc * c
        let vStride = plan.pointStride(rows: c), mmStride = plan.pointStride(rows: oc)
        winogradStage(points, parallel: parallel, cost: 1 << 20) { range in
            for p in range {
                sgemmSerial(m: oc, n: tiles, k: c, a: uq + p * oc * c, lda: c, b: scratch.v + p * vStride, ldb: ld,
                            c: scratch.mm + p * mmStride, ldc: ld)
            }
        }
        stage.lap(2)
        let yq = y + plan.layout.outputOrigin(phase: q), residualQ = residual.map { $0 + plan.layout.outputOrigin(phase: q) }
        winogradStage(oc, parallel: parallel, cost: transformCost) { range in
            withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { block in
                winogradOutputTransform(K.self, scratch.mm, ld: ld, plan, tiles: tiles, outChannels: range, yq, accumulate: accumulate,
                                        bias: bias, residual: residualQ, index: scratch.index, block: block.baseAddress!)
            }
        }
        stage.lap(3)
    }
}

/// y (+)= the convolution `plan` describes, with r×r filters `w` (outputPhases × OC × C × r × r).
func winogradForward<K: WinogradKernel>(_ kernel: K.Type, _ plan: WinogradPlan, _ x: UnsafePointer<Float>, _ filters: WinogradFilterSource,
                                        _ y: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?,
                                        residual: UnsafePointer<Float>?) {
    let c = plan.channels, oc = plan.outChannels, points = plan.points
    let u = WinogradFilterCache.shared.transformed(filters, kernel: K.self, count: points * plan.layout.outputPhases * oc * c) { u in
        filters.withKernels { w in
            // Phase q's U block starts at q·α²·OC·C: transform each phase's filters on their own.
            for q in 0..<plan.layout.outputPhases {
                winogradFilterTransform(K.self, w + q * oc * c * K.r * K.r, filters: oc * c, u + q * points * oc * c)
            }
        }
    }
    if plan.splitsStages {
        let scratch = WinogradScratch(plan, outputCapacity: oc)
        defer { scratch.deallocate() }
        var stage = WinogradStageClock()
        for task in 0..<plan.tasks {
            winogradForwardTask(K.self, plan, task: task, x, u, y, accumulate: accumulate, bias: bias, residual: residual, scratch, parallel: true, stage: &stage)
        }
        stage.report()
        return
    }
    Parallel.forRanges(plan.tasks, cost: 1 << 20) { tasks in
        let scratch = WinogradScratch(plan, outputCapacity: oc)
        defer { scratch.deallocate() }
        var stage = WinogradStageClock()
        for task in tasks {
            winogradForwardTask(K.self, plan, task: task, x, u, y, accumulate: accumulate, bias: bias, residual: residual, scratch, parallel: false, stage: &stage)
        }
        stage.report()
    }
}

/// Dispatches on the plan's tile and kernel size to the specialised F(m×m, r×r).
func winogradForward(_ plan: WinogradPlan, _ x: UnsafePointer<Float>, _ filters: WinogradFilterSource, _ y: UnsafeMutablePointer<Float>,
                     accumulate: Bool, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil) {
    switch (plan.m, plan.r) {
    case (4, 3): winogradForward(WinogradF4.self, plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
    case (2, 3): winogradForward(WinogradF2.self, plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
    case (4, 2): winogradForward(WinogradF4R2.self, plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
    case (3, 2): winogradForward(WinogradF3R2.self, plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
    case (2, 2): winogradForward(WinogradF2R2.self, plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
    default: preconditionFailure("no Winograd F(\(plan.m)×\(plan.m), \(plan.r)×\(plan.r))")
    }
}

/// y (N×OC×OH×OW) (+)= conv3×3(x, w) for a stride-1 geometry, by F(m×m, 3×3).
/// With `bias`, adds bias[o] to output channel o in the same pass; with `residual` (N×OC×OH×OW),
/// adds it too (y = conv + bias + residual).
func winogradForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                     batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int, accumulate: Bool = false,
                     bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil) {
    if ConvAlgorithmSelection.strideTwoEligible(g) {
        strideTwoWinogradForward(x, w, y, batch: n, outChannels: oc, g, tile: m, accumulate: accumulate, bias: bias, residual: residual)
        return
    }
    let plan = WinogradPlan(g, batch: n, outChannels: oc, m: m)
    let filters = WinogradFilterSource(weights: UnsafeBufferPointer(start: w, count: oc * g.channels * 9), layout: .strideOne, kernels: nil)
    winogradForward(plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
}

/// (A): y (N×OC×OH×OW) (+)= conv4×4 stride 2 padding 1 (x, w) as a 2×2 convolution of the phase images.
func strideTwoWinogradForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                              batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int, accumulate: Bool = false,
                              bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil) {
    let plan = WinogradPlan(.polyphase(g, outChannels: oc), batch: n, outChannels: oc, m: m, r: 2)
    let filters = WinogradFilterSource(weights: UnsafeBufferPointer(start: w, count: oc * g.channels * 16), layout: .polyphase) {
        polyphaseKernels($0, outChannels: oc, channels: g.channels)
    }
    winogradForward(plan, x, filters, y, accumulate: accumulate, bias: bias, residual: residual)
}

/// (B): dX (N×C×H×W) (+)= the input gradient of conv4×4 stride 2 padding 1 with weight w
/// (OC×C×4×4) for dY (N×OC×OH×OW): four 2×2 convolutions of dY, one per output phase. This is
/// also the forward pass of ConvTranspose(k4, s2, p1) with weight w (its C_in = OC).
func strideTwoWinogradInputGradient(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                    batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int, accumulate: Bool) {
    let plan = WinogradPlan(.subPixel(g, outChannels: oc), batch: n, outChannels: g.channels, m: m, r: 2)
    let filters = WinogradFilterSource(weights: UnsafeBufferPointer(start: w, count: oc * g.channels * 16), layout: .subPixel) {
        subPixelKernels($0, outChannels: oc, channels: g.channels)
    }
    winogradForward(plan, dy, filters, dx, accumulate: accumulate, bias: nil)
}

// MARK: - Transformed filters, kept while the weights do not change

/// A layer's weights as stored (OC×C×K×K), how the plan lays them out, and for the 4×4 stride-2
/// layouts the rearrangement into the r×r kernels the transform reads.
struct WinogradFilterSource {
    enum Layout: Int { case strideOne, polyphase, subPixel }
    let weights: UnsafeBufferPointer<Float>
    let layout: Layout
    let kernels: ((UnsafePointer<Float>) -> [Float])?

    /// Calls `body` with the r×r kernels (the weights themselves for a stride-1 layer).
    func withKernels(_ body: (UnsafePointer<Float>) -> Void) {
        guard let kernels else { body(weights.baseAddress!); return }
        kernels(weights.baseAddress!).withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// Transformed filters U, remembered with a copy of the weights they came from. A layer's U is
/// recomputed only when its weights changed (compared in full, so a changed weight can never
/// reuse a stale U): in sampling and inference every call after the first reuses it, and in GAN
/// training D's U serves both the real and the fake batch of a step. Least recently used
/// entries go first once the cache holds `capacity` floats. Ops run one at a time, like `Workspace`.
final class WinogradFilterCache {
    nonisolated(unsafe) static let shared = WinogradFilterCache()
    /// 64 M floats (256 MB): every transformed filter of the U-Net and the DCGAN together.
    nonisolated(unsafe) static var capacity = 64 << 20
    /// MEDSYNTH_WINOGRAD_FILTER_CACHE=0 transforms the filters on every call (for measuring).
    static let isEnabled = ProcessInfo.processInfo.environment["MEDSYNTH_WINOGRAD_FILTER_CACHE"] != "0"

    struct Entry {
        let kernel: ObjectIdentifier
        let layout: WinogradFilterSource.Layout
        /// The geometry a layout depends on beyond the weights' size (the small-map dense matrices'), else empty.
        let geometry: [Int]
        /// Where the weights lived when the entry was made: a training step's changed weights
        /// (same tensor, same storage) overwrite their layer's entry instead of adding one.
        let address: UnsafePointer<Float>
        let weights: UnsafeMutableBufferPointer<Float>
        let u: UnsafeMutableBufferPointer<Float>
        var lastUse: Int
    }
    private var entries: [Entry] = []
    private var clock = 0
    private var storedFloats = 0
    private(set) var hits = 0, misses = 0
    var entryCount: Int { entries.count }

    /// U for `source` under F(m×m, r×r) `kernel`, `count` floats, computed by `transform` on a miss.
    func transformed<K: WinogradKernel>(_ source: WinogradFilterSource, kernel: K.Type, count: Int,
                                        _ transform: (UnsafeMutablePointer<Float>) -> Void) -> UnsafePointer<Float> {
        transformed(source, key: ObjectIdentifier(K.self), geometry: [], count: count, transform)
    }

    /// The same for any weight rearrangement `key` names; `geometry` tells apart layouts of equal size.
    func transformed(_ source: WinogradFilterSource, key id: ObjectIdentifier, geometry: [Int], count: Int,
                     _ transform: (UnsafeMutablePointer<Float>) -> Void) -> UnsafePointer<Float> {
        let need = count + source.weights.count
        guard WinogradFilterCache.isEnabled, need <= WinogradFilterCache.capacity else {
            let u = Workspace.shared.buffer(3, count: count).baseAddress!
            transform(u)
            return UnsafePointer(u)
        }
        clock += 1
        // The same weights are a hit; an entry made from the same storage is reused on a miss
        // (only a hint for reusing buffers: a hit always compares the weights in full).
        var sameStorage: Int? = nil
        for i in entries.indices where entries[i].kernel == id && entries[i].layout == source.layout && entries[i].geometry == geometry
            && entries[i].u.count == count && entries[i].weights.count == source.weights.count {
            if memcmp(entries[i].weights.baseAddress!, source.weights.baseAddress!, 4 * source.weights.count) == 0 {
                entries[i].lastUse = clock
                hits += 1
                return UnsafePointer(entries[i].u.baseAddress!)
            }
            if sameStorage == nil && entries[i].address == source.weights.baseAddress! { sameStorage = i }
        }
        misses += 1
        if let i = sameStorage {
            _ = entries[i].weights.update(fromContentsOf: source.weights)
            transform(entries[i].u.baseAddress!)
            entries[i].lastUse = clock
            return UnsafePointer(entries[i].u.baseAddress!)
        }
        while storedFloats + need > WinogradFilterCache.capacity, let oldest = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) {
            let entry = entries.remove(at: oldest)
            storedFloats -= entry.u.count + entry.weights.count
            entry.u.deallocate(); entry.weights.deallocate()
        }
        let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: source.weights.count)
        _ = weights.initialize(from: source.weights)
        let u = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        transform(u.baseAddress!)
        entries.append(Entry(kernel: id, layout: source.layout, geometry: geometry, address: source.weights.baseAddress!, weights: weights,
                             u: u, lastUse: clock))
        storedFloats += need
        return UnsafePointer(u.baseAddress!)
    }

    /// Forgets every entry (tests).
    func removeAll() {
        for entry in entries { entry.u.deallocate(); entry.weights.deallocate() }
        entries = []; storedFloats = 0; hits = 0; misses = 0
    }
}

// MARK: - Weight gradient

/// dW (OC×C×3×3, or OC×C×4×4 for a 4×4 stride-2 geometry) += ∂L/∂w for y = conv(x, w), by
/// F(m×m, r×r) (Lavin & Gray §4.3).
func winogradWeightGradient(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>,
                            batch n: Int, outChannels oc: Int, _ g: ConvGeometry, tile m: Int) {
    if ConvAlgorithmSelection.strideTwoEligible(g) {
        // (C): the 2×2 weight gradient over the phase channels, folded back into the 4×4 kernel.
        let plan = WinogradPlan(.polyphase(g, outChannels: oc), batch: n, outChannels: oc, m: m, r: 2,
                                minimumTiles: WinogradPlan.weightGradientTiles)
        let dw2 = Workspace.shared.buffer(5, count: oc * plan.channels * 4)
        dw2.update(repeating: 0)
        winogradWeightGradient(plan, dy, x, dw2.baseAddress!)
        addPolyphaseKernelGradient(dw2.baseAddress!, outChannels: oc, channels: g.channels, dW)
        return
    }
    let plan = WinogradPlan(g, batch: n, outChannels: oc, m: m, minimumTiles: WinogradPlan.weightGradientTiles)
    winogradWeightGradient(plan, dy, x, dW)
}

/// Dispatches on the plan's tile and kernel size to the specialised F(m×m, r×r).
func winogradWeightGradient(_ plan: WinogradPlan, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>) {
    switch (plan.m, plan.r) {
    case (4, 3): winogradWeightGradient(WinogradF4.self, plan, dy, x, dW)
    case (2, 3): winogradWeightGradient(WinogradF2.self, plan, dy, x, dW)
    case (4, 2): winogradWeightGradient(WinogradF4R2.self, plan, dy, x, dW)
    case (3, 2): winogradWeightGradient(WinogradF3R2.self, plan, dy, x, dW)
    case (2, 2): winogradWeightGradient(WinogradF2R2.self, plan, dy, x, dW)
    default: preconditionFailure("no Winograd F(\(plan.m)×\(plan.m), \(plan.r)×\(plan.r))")
    }
}

/// Accumulates one task's products into `acc` (α² × OC × C): Z[p] = (A dY_tile Aᵀ)[p] and
/// acc[p] += Z[p] · V[p]ᵀ (acc[p] = … for a lane's first task, so lanes need no zeroing).
func winogradWeightGradientTask<K: WinogradKernel>(_ kernel: K.Type, _ plan: WinogradPlan, task: Int, _ dy: UnsafePointer<Float>,
                                                   _ x: UnsafePointer<Float>, _ acc: UnsafeMutablePointer<Float>, first: Bool,
                                                   _ scratch: WinogradScratch, parallel: Bool) {
    let c = plan.channels, oc = plan.outChannels, points = plan.points, alpha = plan.alpha, m = plan.m
    let ld = plan.maxTilesPerTask, layout = plan.layout
    let zStride = plan.pointStride(rows: oc), vStride = plan.pointStride(rows: c)
    let rows = plan.tileRows(task: task)
    let tiles = rows.count * plan.tilesW
    let index = scratch.index, z = scratch.mm
    index.fill(plan, rows: rows)
    let transformCost = tiles * points * 8
    if !plan.directInput {
        winogradStage(c, parallel: parallel, cost: tiles * plan.gatherRows * plan.paddedWidth) { range in
            winogradGatherInput(x, plan, rows: rows, channels: range, scratch.padded)
        }
    }
    winogradStage(c, parallel: parallel, cost: transformCost) { range in
        withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { block in
            if plan.directInput {
                winogradInputTransformDirect(K.self, x, plan, rows: rows, channels: range, scratch.v, ld: ld, block: block.baseAddress!)
            } else {
                winogradInputTransform(K.self, scratch.padded, plan, rowCount: rows.count, channels: range, shift: (0, 0),
                                       scratch.v, ld: ld, index: index, block: block.baseAddress!)
            }
        }
    }
    // Z[p][o][t] = (A dY_tile Aᵀ)[p]; dY is zero beyond the output's edge.
    // Groups of 8 full tiles side by side in one output row read 8·m contiguous floats per row.
    let groups = (tiles + 7) / 8
    let contiguousRun = UnsafeMutablePointer<Bool>.allocate(capacity: groups)
    defer { contiguousRun.deallocate() }
    for group in 0..<groups {
        let t0 = group * 8
        contiguousRun[group] = (m == 2 || m == 4) && layout.outColStride == 1 && t0 + 8 <= tiles
            && (0..<8).allSatisfy { index.isFull(t0 + $0, m) && index.output[t0 + $0] == index.output[t0] + $0 * m }
    }
    winogradStage(oc, parallel: parallel, cost: transformCost) { range in
        withUnsafeTemporaryAllocation(of: WV.self, capacity: points) { blockBuffer in
            let block = blockBuffer.baseAddress!, width = transformLanes
            let lanesOf = UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self)
            // Two output channels per step: lanes 0–7 channel o, 8–15 channel o + 1.
            var o = range.lowerBound
            while o < range.upperBound {
                let pair = o + 1 < range.upperBound
                var t0 = 0
                while t0 < tiles {
                    for i in 0..<m { for j in 0..<m { block[i * alpha + j] = WV(repeating: 0) } }
                    if contiguousRun[t0 / 8] {
                        for half in 0..<(pair ? 2 : 1) {
                            let start = dy + (o + half) * layout.outChannelStride + index.output[t0]
                            for i in 0..<m {
                                let row = UnsafeRawPointer(start + i * layout.outRowStride)
                                if m == 2 {
                                    let run = row.loadUnaligned(as: SIMD16<Float>.self)
                                    setLanes(&block[i * alpha], half, run.evenHalf)
                                    setLanes(&block[i * alpha + 1], half, run.oddHalf)
                                } else {
                                    let run = row.loadUnaligned(as: SIMD32<Float>.self)
                                    let even = run.evenHalf, odd = run.oddHalf
                                    setLanes(&block[i * alpha], half, even.evenHalf)
                                    setLanes(&block[i * alpha + 1], half, odd.evenHalf)
                                    setLanes(&block[i * alpha + 2], half, even.oddHalf)
                                    setLanes(&block[i * alpha + 3], half, odd.oddHalf)
                                }
                            }
                        }
                    } else {
                    for half in 0..<(pair ? 2 : 1) {
                        let channel = dy + (o + half) * layout.outChannelStride
                        for l in 0..<min(8, tiles - t0) {
                            let t = t0 + l
                            let src = channel + index.output[t]
                            for i in 0..<index.rows[t] {
                                for j in 0..<index.cols[t] {
                                    lanesOf[(i * alpha + j) * width + half * 8 + l] = src[i * layout.outRowStride + j * layout.outColStride]
                                }
                            }
                        }
                    }
                    }
                    for j in 0..<m { K.outputGradientLine(block + j, alpha) }
                    for i in 0..<alpha { K.outputGradientLine(block + i * alpha, 1) }
                    for p in 0..<points {
                        store8(z + p * zStride + o * ld + t0, block[p].lowHalf)
                        if pair { store8(z + p * zStride + (o + 1) * ld + t0, block[p].highHalf) }
                    }
                    t0 += 8
                }
                o += 2
            }
        }
    }
    winogradStage(points, parallel: parallel, cost: 1 << 20) { range in
        for p in range {
            sgemmSerial(transB: true, m: oc, n: c, k: tiles, a: z + p * zStride, lda: ld, b: scratch.v + p * vStride, ldb: ld,
                        beta: first ? 0 : 1, c: acc + p * oc * c, ldc: c)
        }
    }
}

@inline(__always) private func setLanes(_ v: inout WV, _ half: Int, _ lanes: SIMD8<Float>) {
    if half == 0 { v.lowHalf = lanes } else { v.highHalf = lanes }
}

/// dW (OC × C virtual r×r filters) += Gᵀ dU G with dU = Σ_tasks Σ_tiles Z · Vᵀ.
func winogradWeightGradient<K: WinogradKernel>(_ kernel: K.Type, _ plan: WinogradPlan, _ dy: UnsafePointer<Float>,
                                               _ x: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>) {
    precondition(plan.layout.outputPhases == 1, "weight gradients read one output phase")
    let c = plan.channels, oc = plan.outChannels, points = plan.points
    // Task t goes to lane t mod lanes: a fixed assignment, whatever the number of workers. Lanes
    // without a task are not allocated (a 4×4 stride-2 layer's α²·OC·4C floats are tens of MB).
    let lanes = min(weightGradientLanes, plan.tasks)
    let total = points * oc * c
    let accumulators = UnsafeMutablePointer<Float>.allocate(capacity: lanes * total)
    defer { accumulators.deallocate() }
    if plan.splitsStages {
        let scratch = WinogradScratch(plan, outputCapacity: oc)
        defer { scratch.deallocate() }
        for task in 0..<plan.tasks {
            winogradWeightGradientTask(K.self, plan, task: task, dy, x, accumulators + (task % lanes) * total, first: task < lanes,
                                       scratch, parallel: true)
        }
    } else {
        Parallel.forEach(lanes, cost: 1 << 20) { lane in
            let scratch = WinogradScratch(plan, outputCapacity: oc)
            defer { scratch.deallocate() }
            for task in stride(from: lane, to: plan.tasks, by: lanes) {
                winogradWeightGradientTask(K.self, plan, task: task, dy, x, accumulators + lane * total, first: task == lane,
                                           scratch, parallel: false)
            }
        }
    }
    // Sum the lanes in lane order, then dW += Gᵀ dU G.
    var du = UnsafePointer(accumulators)
    if lanes > 1 {
        let sum = Workspace.shared.buffer(3, count: total).baseAddress!
        Parallel.forRanges(total, cost: lanes) { range in
            for i in range {
                var s: Float = 0
                for lane in 0..<lanes { s += accumulators[lane * total + i] }
                sum[i] = s
            }
        }
        du = UnsafePointer(sum)
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
