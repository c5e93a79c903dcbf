import Foundation

// MARK: - 4×4 stride-2 transposed convolutions as four 2×2 sub-pixel convolutions
//
// ConvTranspose(k4, s2, p1) puts input pixel iy at output rows 2·iy − 1 + ky. Output row
// 2i + py therefore sees input rows {i − 1, i} with kernel rows {3, 1} when py = 0 and rows
// {i, i + 1} with kernel rows {2, 0} when py = 1 (and the same for columns): each of the four
// output parities is an ordinary 2×2 convolution of the input (Shi et al. 2016, "Is the
// deconvolution layer the same as a convolutional layer?"). All four read the same 2×2 windows
// of the input padded by 1, so one im2col and one GEMM with the four parity kernels stacked
// (4·OC rows) compute them, and a strided copy interleaves the parities. This replaces the
// col2im scatter-add (16 adds per input pixel and output channel) with one copy per output
// pixel, at the price of (H + 1)(W + 1) instead of H·W GEMM columns.

//
// Measured back to back (`MEDSYNTH_SUBPIXEL=0/1 medsynth bench kernels`, loaded 2-core machine):
// G2–G4 forward within noise of the col2im path (the GEMM dominates both), G5 (64→1) 3.8 vs
// 13 GFLOP/s (a 4-row GEMM). So it is off by default and kept for machines where it wins.
// Where the Winograd rule picks a tile for such a layer (Winograd.swift, (B): the same four 2×2
// convolutions, each by F(m×m, 2×2)), that path runs instead.
public enum SubPixelSelection {
    /// MEDSYNTH_SUBPIXEL=1 switches the sub-pixel path on.
    nonisolated(unsafe) public static var isEnabled = ProcessInfo.processInfo.environment["MEDSYNTH_SUBPIXEL"] == "1"
    /// Smallest input side and output channel count that use it: below, the extra GEMM row and
    /// column and the short GEMM cost more than the scatter saved.
    nonisolated(unsafe) public static var minimumHeight = 8
    nonisolated(unsafe) public static var minimumOutChannels = 16

    static func applies(kernel: Int, kernelW: Int, stride: Int, padding: Int, height: Int, outChannels: Int) -> Bool {
        isEnabled && kernel == 4 && kernelW == 4 && stride == 2 && padding == 1 && height >= minimumHeight
            && outChannels >= minimumOutChannels
    }
}

/// Kernel row of ConvTranspose(k4, s2, p1) that output parity `parity` meets through window row `a`.
@inline(__always) func subPixelKernelIndex(parity: Int, window a: Int) -> Int {
    parity == 0 ? (a == 0 ? 3 : 1) : (a == 0 ? 2 : 0)
}

/// y (N×OC×2H×2W) = ConvTranspose(x (N×C×H×W), w (C×OC×4×4), stride 2, padding 1).
func subPixelTransposedForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               batch n: Int, inChannels c: Int, outChannels oc: Int, height h: Int, width wd: Int) {
    // Stacked parity kernels: row (p·OC + o), column (ci·4 + a·2 + b) of a conv weight 4·OC × C × 2 × 2.
    var stacked = [Float](repeating: 0, count: 4 * oc * c * 4)
    for p in 0..<4 {
        let py = p / 2, px = p % 2
        for o in 0..<oc { for ci in 0..<c { for a in 0..<2 { for b in 0..<2 {
            let ky = subPixelKernelIndex(parity: py, window: a), kx = subPixelKernelIndex(parity: px, window: b)
            stacked[(p * oc + o) * c * 4 + ci * 4 + a * 2 + b] = w[((ci * oc + o) * 4 + ky) * 4 + kx]
        } } } }
    }
    let g = ConvGeometry(channels: c, height: h, width: wd, kernelH: 2, kernelW: 2, stride: 1, padding: 1)
    let plane = g.outPlane  // (H + 1)(W + 1)
    let parities = Workspace.shared.buffer(4, count: n * 4 * oc * plane).baseAddress!
    stacked.withUnsafeBufferPointer {
        convForward(x, $0.baseAddress!, parities, batch: n, outChannels: 4 * oc, g, pointwise: false)
    }
    // y[img, o, 2i + py, 2j + px] = parities[img, p·OC + o, i + py, j + px].
    let ow = 2 * wd
    Parallel.forEach(n * oc, cost: 4 * h * wd) { pair in
        let img = pair / oc, o = pair % oc
        let dst = y + pair * 4 * h * wd
        for p in 0..<4 {
            let py = p / 2, px = p % 2
            let src = parities + ((img * 4 + p) * oc + o) * plane
            for i in 0..<h {
                let srow = src + (i + py) * g.outWidth + px
                let drow = dst + (2 * i + py) * ow + px
                for j in 0..<wd { drow[2 * j] = srow[j] }
            }
        }
    }
}
