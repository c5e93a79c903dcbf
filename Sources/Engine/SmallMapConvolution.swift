// MARK: - Convolutions on maps of at most 2×2 pixels: one dense matrix
//
// A latent U-Net's coarsest levels run 3×3 convolutions on 2×2 maps (and stride-2 ones from 2×2
// to 1×1). There the convolution is a small dense linear map from the C·H·W input values to the
// OC·OH·OW outputs: D[(o, q), (c, p)] = w[o, c, kh, kw] where input pixel p lies under tap
// (kh, kw) of output pixel q, else 0. With the batch as rows,
//     Y (N × OC·OH·OW) = X (N × C·H·W) · Dᵀ,   dX = dY · D,   dD = dYᵀ · X,
// and dW gathers dD's entries back onto their taps. The NCHW tensors are these matrices as they
// are stored: no unfolding, no tiles, no transforms, one GEMM per pass. On a 2×2 map with
// "same" padding D holds 16 products per channel pair and image, as many as Winograd F(2×2, 3×3)
// on the one (padded 4×4) tile, against im2col's 36; Winograd's gather, input, filter and output
// transforms and its 16 narrow GEMMs (one per transform point, one column per image) are what
// the small maps spent their time on. On a 1×1 input with "same" padding D is the centre taps
// (session 16 cropped them out of the weight tensor as an op of its own, whose backward
// scattered a zero-filled weight-sized gradient).

enum SmallMapConvolution {
    /// True where D has fewer products than im2col (H·W < KH·KW) on a map of at most 4 pixels;
    /// 1×1 kernels keep the pointwise path, and kernels covering the whole unpadded input keep
    /// theirs (the same GEMM).
    static func eligible(_ g: ConvGeometry) -> Bool {
        g.inPlane <= 4 && g.inPlane < g.kernelH * g.kernelW && g.kernelH * g.kernelW > 1 && !coversWholeInput(g)
    }

    /// Input pixel under tap (kh, kw) of output pixel (oh, ow), or nil when the tap meets padding.
    @inline(__always)
    static func inputPixel(_ g: ConvGeometry, oh: Int, ow: Int, kh: Int, kw: Int) -> Int? {
        let ih = oh * g.stride - g.padding + kh, iw = ow * g.stride - g.padding + kw
        guard ih >= 0, ih < g.height, iw >= 0, iw < g.width else { return nil }
        return ih * g.width + iw
    }

    /// D (OC·OH·OW × C·H·W) of weights `w` (OC×C×KH×KW), cached with the weights like Winograd's U.
    static func denseMatrix(_ w: UnsafePointer<Float>, outChannels oc: Int, _ g: ConvGeometry) -> UnsafePointer<Float> {
        let c = g.channels, taps = g.kernelH * g.kernelW
        let rowLength = c * g.inPlane, count = oc * g.outPlane * rowLength
        let source = WinogradFilterSource(weights: UnsafeBufferPointer(start: w, count: oc * c * taps), layout: .strideOne, kernels: nil)
        let geometry = [g.channels, g.height, g.width, g.kernelH, g.kernelW, g.stride, g.padding]
        return WinogradFilterCache.shared.transformed(source, key: ObjectIdentifier(SmallMapConvolution.self), geometry: geometry,
                                                      count: count) { d in
            Parallel.forEach(oc, cost: g.outPlane * rowLength) { o in
                let block = d + o * g.outPlane * rowLength
                block.initialize(repeating: 0, count: g.outPlane * rowLength)
                for oh in 0..<g.outHeight { for ow in 0..<g.outWidth {
                    let row = block + (oh * g.outWidth + ow) * rowLength
                    for kh in 0..<g.kernelH { for kw in 0..<g.kernelW {
                        guard let p = inputPixel(g, oh: oh, ow: ow, kh: kh, kw: kw) else { continue }
                        let tap = w + o * c * taps + kh * g.kernelW + kw
                        for ci in 0..<c { row[ci * g.inPlane + p] = tap[ci * taps] }
                    } }
                } }
            }
        }
    }

    /// y (N×OC×OH×OW) (+)= conv(x, w).
    static func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                        batch n: Int, outChannels oc: Int, _ g: ConvGeometry, accumulate: Bool) {
        let d = denseMatrix(w, outChannels: oc, g)
        let k = g.channels * g.inPlane, width = oc * g.outPlane
        sgemm(transB: true, m: n, n: width, k: k, a: x, lda: k, b: d, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: width)
    }

    /// dX (=, or += with `dXAccumulates`) dY · D and dW += the taps' sums of dYᵀ · X.
    static func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                         dX: UnsafeMutablePointer<Float>?, dW: UnsafeMutablePointer<Float>?,
                         batch n: Int, outChannels oc: Int, _ g: ConvGeometry, dXAccumulates: Bool) {
        let k = g.channels * g.inPlane, width = oc * g.outPlane
        if let dX {
            let d = denseMatrix(w, outChannels: oc, g)
            sgemm(m: n, n: k, k: width, a: dy, lda: width, b: d, ldb: k, beta: dXAccumulates ? 1 : 0, c: dX, ldc: k)
        }
        guard let dW else { return }
        let dd = Workspace.shared.buffer(6, count: width * k).baseAddress!
        sgemm(transA: true, m: width, n: k, k: n, a: dy, lda: width, b: x, ldb: k, c: dd, ldc: k)
        let c = g.channels, taps = g.kernelH * g.kernelW
        Parallel.forEach(oc, cost: g.outPlane * k) { o in
            let block = dd + o * g.outPlane * k
            for kh in 0..<g.kernelH { for kw in 0..<g.kernelW {
                let tap = dW + o * c * taps + kh * g.kernelW + kw
                // Output pixels in a fixed order: the sum does not depend on threads or batch split.
                for oh in 0..<g.outHeight { for ow in 0..<g.outWidth {
                    guard let p = inputPixel(g, oh: oh, ow: ow, kh: kh, kw: kw) else { continue }
                    let row = block + (oh * g.outWidth + ow) * k + p
                    for ci in 0..<c { tap[ci * taps] += row[ci * g.inPlane] }
                } }
            } }
        }
    }
}
