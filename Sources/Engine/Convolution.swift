import Core
import CBLAS

// MARK: - Convolution through GEMM
//
// One im2col / col2im core serves all four directions (ggml's conv_2d = im2col + mul_mat):
//   conv forward          Y = W · im2col(X)
//   conv backward-data    dX = col2im(Wᵀ · dY)
//   conv backward-weight  dW = dY · im2col(X)ᵀ
//   transposed conv       forward is conv backward-data; its backward-data is conv forward.
// Images are processed in chunks of the batch so the GEMM has enough columns to run near peak
// while the column buffer stays small enough to live in a reused workspace.

/// Geometry of a convolution from a C×H×W input to an OH×OW output.
public struct ConvGeometry: Equatable {
    public let channels, height, width: Int     // C H W
    public let kernelH, kernelW: Int             // KH KW
    public let stride, padding: Int
    public let outHeight, outWidth: Int          // OH OW

    public init(channels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int, stride: Int, padding: Int) {
        self.channels = channels; self.height = height; self.width = width
        self.kernelH = kernelH; self.kernelW = kernelW; self.stride = stride; self.padding = padding
        self.outHeight = (height + 2 * padding - kernelH) / stride + 1
        self.outWidth = (width + 2 * padding - kernelW) / stride + 1
    }

    /// Rows of the column matrix: C·KH·KW.
    public var patchSize: Int { channels * kernelH * kernelW }
    public var outPlane: Int { outHeight * outWidth }
    public var inPlane: Int { height * width }

    /// Output columns [lo, hi) whose input column ow·s − p + kw falls inside the image.
    @inline(__always)
    func validColumns(_ kw: Int) -> (Int, Int) {
        let lo = max(0, (padding - kw + stride - 1) / stride)
        // Integer division truncates toward zero: a negative numerator (the kernel column lies
        // right of every input column, e.g. 4×4 kernels on 2×2 inputs) means no valid column.
        let last = width - 1 + padding - kw
        let hi = last < 0 ? 0 : min(outWidth, last / stride + 1)
        return (lo, max(lo, hi))
    }
}

/// im2col for output rows [oh0, oh1) of ONE image, patch rows `rows`: row r of the column
/// matrix lives at cols + r·ld, column (oh − oh0)·OW + ow.
@inline(__always)
func im2colRows(_ x: UnsafePointer<Float>, _ g: ConvGeometry, _ oh0: Int, _ oh1: Int,
                _ cols: UnsafeMutablePointer<Float>, ld: Int, rows: Range<Int>) {
    let kk = g.kernelH * g.kernelW
    for row in rows {
        let c = row / kk, kh = (row / g.kernelW) % g.kernelH, kw = row % g.kernelW
        let (lo, hi) = g.validColumns(kw)
        let src = x + c * g.inPlane
        let dst = cols + row * ld
        for oh in oh0..<oh1 {
            let ih = oh * g.stride - g.padding + kh
            let drow = dst + (oh - oh0) * g.outWidth
            if ih < 0 || ih >= g.height {
                drow.update(repeating: 0, count: g.outWidth)
                continue
            }
            if lo > 0 { drow.update(repeating: 0, count: lo) }
            if hi < g.outWidth { (drow + hi).update(repeating: 0, count: g.outWidth - hi) }
            let srow = src + ih * g.width - g.padding + kw
            if g.stride == 1 {
                (drow + lo).update(from: srow + lo, count: hi - lo)
            } else {
                var ow = lo
                while ow < hi { drow[ow] = srow[ow * g.stride]; ow += 1 }
            }
        }
    }
}

/// The adjoint of `im2colRows` for the patch rows of `channels`: accumulates into one image.
@inline(__always)
func col2imRows(_ cols: UnsafePointer<Float>, _ g: ConvGeometry, _ oh0: Int, _ oh1: Int,
                _ x: UnsafeMutablePointer<Float>, ld: Int, channels: Range<Int>) {
    for c in channels {
        let dst = x + c * g.inPlane
        for kh in 0..<g.kernelH {
            for kw in 0..<g.kernelW {
                let row = (c * g.kernelH + kh) * g.kernelW + kw
                let (lo, hi) = g.validColumns(kw)
                if lo >= hi { continue }
                let src = cols + row * ld
                for oh in oh0..<oh1 {
                    let ih = oh * g.stride - g.padding + kh
                    if ih < 0 || ih >= g.height { continue }
                    let srow = src + (oh - oh0) * g.outWidth
                    let drow = dst + ih * g.width - g.padding + kw
                    if g.stride == 1 {
                        vectorAdd(drow + lo, srow + lo, hi - lo)
                    } else {
                        var ow = lo
                        while ow < hi { drow[ow * g.stride] += srow[ow]; ow += 1 }
                    }
                }
            }
        }
    }
}

/// Unfolds `images` consecutive images of `x` (N×C×H×W) into `cols` (C·KH·KW × images·OH·OW).
public func im2col(_ x: UnsafePointer<Float>, images: Int, _ g: ConvGeometry, _ cols: UnsafeMutablePointer<Float>) {
    let plane = g.outPlane, ld = images * plane
    Parallel.forRanges(g.patchSize, cost: ld) { rows in
        for img in 0..<images {
            im2colRows(x + img * g.channels * g.inPlane, g, 0, g.outHeight, cols + img * plane, ld: ld, rows: rows)
        }
    }
}

/// Folds `cols` back, accumulating into `x` (+=): the adjoint of `im2col`.
public func col2im(_ cols: UnsafePointer<Float>, images: Int, _ g: ConvGeometry, _ x: UnsafeMutablePointer<Float>) {
    let plane = g.outPlane, ld = images * plane
    // Parallel over (image, channel): different pairs never touch the same pixel.
    Parallel.forEach(images * g.channels, cost: g.kernelH * g.kernelW * plane) { pair in
        let img = pair / g.channels, c = pair % g.channels
        col2imRows(cols + img * plane, g, 0, g.outHeight, x + img * g.channels * g.inPlane, ld: ld, channels: c..<c + 1)
    }
}

/// Copies a [images, rows, plane] block to [rows, images·plane] (or back with `inverse`).
func interleaveBatch(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, images: Int, rows: Int, plane: Int,
                     inverse: Bool = false, accumulate: Bool = false) {
    Parallel.forEach(rows, cost: images * plane) { r in
        for img in 0..<images {
            let batchMajor = img * rows * plane + r * plane
            let rowMajor = r * images * plane + img * plane
            if inverse && accumulate {
                vectorAdd(dst + batchMajor, src + rowMajor, plane)
            } else if inverse {
                (dst + batchMajor).update(from: src + rowMajor, count: plane)
            } else {
                (dst + rowMajor).update(from: src + batchMajor, count: plane)
            }
        }
    }
}

/// Images per chunk for the batched path: enough GEMM columns (≈ 8192) without letting the
/// column buffer grow past about 256 MB.
func chunkSize(batch: Int, plane: Int, rows: Int) -> Int {
    let wanted = max(1, (8192 + plane - 1) / plane)
    let memoryCap = max(1, (64 << 20) / max(1, rows * plane))
    return max(1, min(batch, wanted, memoryCap))
}

// MARK: - Blocked path for large planes
//
// For planes of 16×16 and up, each task unfolds a band of output rows of one image into a
// per-worker buffer that stays in L2 and multiplies it at once with a single-threaded GEMM that
// writes straight into the NCHW output: no batch-sized column matrix, no transposes, and both
// cores busy on independent bands. Weight gradients go to a fixed number of per-lane
// accumulators (image i → lane i mod 4) summed in lane order, so results do not depend on the
// number of threads.

let weightGradientLanes = 4

func usesBlockedPath(_ g: ConvGeometry) -> Bool { g.outPlane >= 256 }

/// Output rows per band so that one band's columns take about 768 KB.
func rowsPerBand(_ g: ConvGeometry) -> Int {
    let columns = max(g.outWidth, (196_608 / max(g.patchSize, 1)))
    return max(1, min(g.outHeight, columns / g.outWidth))
}

@inline(__always)
func sgemmSerial(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Parallel.configureBLAS()
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

func blockedForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                    batch n: Int, outChannels oc: Int, _ g: ConvGeometry, pointwise: Bool, accumulate: Bool = false) {
    let beta: Float = accumulate ? 1 : 0
    let k = g.patchSize, plane = g.outPlane
    let band = pointwise ? g.outHeight : rowsPerBand(g)
    let bands = (g.outHeight + band - 1) / band
    Parallel.forRanges(n * bands, cost: 1 << 20) { tasks in
        let scratch = pointwise ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k * band * g.outWidth)
        defer { scratch?.deallocate() }
        for task in tasks {
            let img = task / bands, oh0 = (task % bands) * band, oh1 = min(g.outHeight, oh0 + band)
            let columns = (oh1 - oh0) * g.outWidth
            let xi = x + img * g.channels * g.inPlane
            if let scratch {
                im2colRows(xi, g, oh0, oh1, scratch, ld: columns, rows: 0..<k)
                sgemmSerial(m: oc, n: columns, k: k, a: w, lda: k, b: scratch, ldb: columns, beta: beta, c: y + img * oc * plane + oh0 * g.outWidth, ldc: plane)
            } else {
                sgemmSerial(m: oc, n: columns, k: k, a: w, lda: k, b: xi + oh0 * g.outWidth, ldb: plane, beta: beta, c: y + img * oc * plane + oh0 * g.outWidth, ldc: plane)
            }
        }
    }
}

func blockedBackward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                     dX: UnsafeMutablePointer<Float>?, dW: UnsafeMutablePointer<Float>?,
                     batch n: Int, outChannels oc: Int, _ g: ConvGeometry, pointwise: Bool) {
    let k = g.patchSize, plane = g.outPlane
    let band = pointwise ? g.outHeight : rowsPerBand(g)
    let bands = (g.outHeight + band - 1) / band
    if let dX {
        // One image per task: bands of the same image overlap in dX.
        Parallel.forRanges(n, cost: 1 << 20) { images in
            let scratch = pointwise ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k * band * g.outWidth)
            defer { scratch?.deallocate() }
            for img in images {
                let dyi = dy + img * oc * plane, dxi = dX + img * g.channels * g.inPlane
                guard let scratch else {
                    sgemmSerial(transA: true, m: k, n: plane, k: oc, a: w, lda: k, b: dyi, ldb: plane, beta: 1, c: dxi, ldc: plane)
                    continue
                }
                for b in 0..<bands {
                    let oh0 = b * band, oh1 = min(g.outHeight, oh0 + band), columns = (oh1 - oh0) * g.outWidth
                    sgemmSerial(transA: true, m: k, n: columns, k: oc, a: w, lda: k, b: dyi + oh0 * g.outWidth, ldb: plane, c: scratch, ldc: columns)
                    col2imRows(scratch, g, oh0, oh1, dxi, ld: columns, channels: 0..<g.channels)
                }
            }
        }
    }
    if let dW {
        let lanes = weightGradientLanes
        let accumulators = UnsafeMutablePointer<Float>.allocate(capacity: lanes * oc * k)
        accumulators.initialize(repeating: 0, count: lanes * oc * k)
        defer { accumulators.deallocate() }
        Parallel.forEach(lanes, cost: 1 << 20) { lane in
            let scratch = pointwise ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k * band * g.outWidth)
            defer { scratch?.deallocate() }
            let acc = accumulators + lane * oc * k
            for img in stride(from: lane, to: n, by: lanes) {
                let dyi = dy + img * oc * plane, xi = x + img * g.channels * g.inPlane
                guard let scratch else {
                    sgemmSerial(transB: true, m: oc, n: k, k: plane, a: dyi, lda: plane, b: xi, ldb: plane, beta: 1, c: acc, ldc: k)
                    continue
                }
                for b in 0..<bands {
                    let oh0 = b * band, oh1 = min(g.outHeight, oh0 + band), columns = (oh1 - oh0) * g.outWidth
                    im2colRows(xi, g, oh0, oh1, scratch, ld: columns, rows: 0..<k)
                    sgemmSerial(transB: true, m: oc, n: k, k: columns, a: dyi + oh0 * g.outWidth, lda: plane, b: scratch, ldb: columns, beta: 1, c: acc, ldc: k)
                }
            }
        }
        Parallel.forRanges(oc * k, cost: lanes) { range in
            for i in range {
                var s: Float = 0
                for lane in 0..<lanes { s += accumulators[lane * oc * k + i] }
                dW[i] += s
            }
        }
    }
}

// MARK: - conv2d

/// 2-D convolution (cross-correlation, as PyTorch's Conv2d).
/// - x: N×C×H×W; weight: OC×C×KH×KW; bias: OC (optional). Returns N×OC×OH×OW.
/// - residual: N×OC×OH×OW (optional): returns conv + bias + residual, a residual connection's
///   add done while Winograd stores its output instead of a pass (and a tensor) of its own.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0, residual: Tensor? = nil) -> Tensor {
    let label = Profiler.isEnabled ? conv2dProfileLabel(x, weight, stride: stride, padding: padding) : "conv2d"
    return Profiler.measure(label) {
    checkShape(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1], "conv2d",
               "input \(x.shape) and weight \(weight.shape) need N×C×H×W and OC×C×KH×KW with the same C")
    if let bias { checkShape(bias.shape == [weight.shape[0]], "conv2d", "bias \(bias.shape) for \(weight.shape[0]) output channels") }
    let n = x.shape[0], oc = weight.shape[0]
    let g = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                         kernelH: weight.shape[2], kernelW: weight.shape[3], stride: stride, padding: padding)
    checkShape(g.outHeight > 0 && g.outWidth > 0, "conv2d", "input \(x.shape) too small for kernel \(weight.shape) with padding \(padding)")
    let outShape = [n, oc, g.outHeight, g.outWidth]
    if let residual { checkShape(residual.shape == outShape, "conv2d", "residual \(residual.shape) for output \(outShape)") }
    var out = uninitializedFloats(n * oc * g.outPlane)
    let pointwise = g.kernelH == 1 && g.kernelW == 1 && stride == 1 && padding == 0
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { yp in
                residual.map { $0.data }.withOptionalPointer { rp in
                    if !pointwise, let m = ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .forward).tile {
                        // Winograd adds the bias (and the residual) inside its output transform.
                        bias.map { $0.data }.withOptionalPointer { bp in
                            winogradForward(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, batch: n, outChannels: oc, g, tile: m,
                                            bias: bp, residual: rp)
                        }
                        return
                    }
                    convForward(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, batch: n, outChannels: oc, g, pointwise: pointwise)
                    if let bias { addChannelBias(yp.baseAddress!, bias.data, batch: n, plane: g.outPlane) }
                    if let rp { vectorAdd(yp.baseAddress!, rp, yp.count) }
                }
            }
        }
    }
    // The residual first: the backward sweep then visits the graph in the order it did when the
    // add was an op of its own (add(residual, conv)), so gradients are summed in the same order
    // and trained weights keep their bits.
    let parents = (residual.map { [$0] } ?? []) + [x, weight] + (bias.map { [$0] } ?? [])
    return Tensor.makeResult(shape: outShape, data: out, parents: parents, op: label) { y in
        let dy = y.grad!
        if let residual, residual.requiresGrad { dy.withUnsafeBufferPointer { residual.accumulateGrad($0) } }
        dy.withUnsafeBufferPointer { dyp in
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    let dW: UnsafeMutablePointer<Float>? = weight.requiresGrad ? weight.withGradBuffer { $0.baseAddress! } : nil
                    var dXAccumulates = true
                    let dX: UnsafeMutablePointer<Float>? = x.requiresGrad ? x.withGradDestination { dXAccumulates = $1; return $0.baseAddress! } : nil
                    convBackward(dyp.baseAddress!, xp.baseAddress!, wp.baseAddress!, dX: dX, dW: dW,
                                 batch: n, outChannels: oc, g, pointwise: pointwise, dXAccumulates: dXAccumulates)
                }
            }
            if let bias, bias.requiresGrad {
                bias.withGradBuffer { sumChannels(dyp.baseAddress!, into: $0.baseAddress!, batch: n, channels: oc, plane: g.outPlane) }
            }
        }
    }
    }
}

/// "conv2d k×k sS C→OC algorithm": the profile splits conv time by kind of layer.
func conv2dProfileLabel(_ x: Tensor, _ weight: Tensor, stride: Int, padding: Int) -> String {
    guard x.rank == 4, weight.rank == 4 else { return "conv2d" }
    let g = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3], kernelH: weight.shape[2],
                         kernelW: weight.shape[3], stride: stride, padding: padding)
    let algorithm = ConvAlgorithmSelection.algorithm(g, outChannels: weight.shape[0], pass: .forward)
    return "conv2d \(g.kernelH)x\(g.kernelW) s\(stride) \(g.channels)→\(weight.shape[0]) @\(g.height) \(algorithm.rawValue)"
}

/// "convTranspose2d k×k sS C→OC @H algorithm" (the algorithm of its forward pass).
func convTranspose2dProfileLabel(_ x: Tensor, _ weight: Tensor, stride: Int, padding: Int) -> String {
    guard x.rank == 4, weight.rank == 4 else { return "convTranspose2d" }
    let k = weight.shape[2], out = (x.shape[2] - 1) * stride - 2 * padding + k
    let g = ConvGeometry(channels: weight.shape[1], height: out, width: (x.shape[3] - 1) * stride - 2 * padding + weight.shape[3],
                         kernelH: k, kernelW: weight.shape[3], stride: stride, padding: padding)
    let algorithm = ConvAlgorithmSelection.strideTwoEligible(g)
        ? ConvAlgorithmSelection.algorithm(g, outChannels: x.shape[1], pass: .inputGradient) : .im2col
    return "convTranspose2d \(k)x\(weight.shape[3]) s\(stride) \(x.shape[1])→\(weight.shape[1]) @\(x.shape[2]) \(algorithm.rawValue)"
}

/// True when a kernel larger than 1×1 covers the whole unpadded input (one output pixel; the DCGAN
/// critic's last layer): each image's im2col column is the image itself, so the layer is a dense
/// one. 1×1 kernels on 1×1 inputs (a latent U-Net's coarsest level) keep the pointwise path: it
/// multiplies image by image, so an image's result does not depend on the batch around it, and
/// trained models keep their bits.
@inline(__always)
func coversWholeInput(_ g: ConvGeometry) -> Bool {
    g.padding == 0 && g.kernelH == g.height && g.kernelW == g.width && g.kernelH * g.kernelW > 1
}

/// y (N×OC×P) = W (OC×K) · im2col(x).
func convForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                 batch n: Int, outChannels oc: Int, _ g: ConvGeometry, pointwise: Bool, accumulate: Bool = false) {
    let k = g.patchSize, plane = g.outPlane
    if coversWholeInput(g) {
        // Y (N×OC) = X (N×K) · Wᵀ: no unfolding, no per-element gather.
        sgemm(transB: true, m: n, n: oc, k: k, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: oc)
        return
    }
    let algorithm = ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .forward)
    if !pointwise, algorithm == .dense {
        SmallMapConvolution.forward(x, w, y, batch: n, outChannels: oc, g, accumulate: accumulate)
        return
    }
    if !pointwise, let m = algorithm.tile {
        winogradForward(x, w, y, batch: n, outChannels: oc, g, tile: m, accumulate: accumulate)
        return
    }
    if pointwise || usesBlockedPath(g) {
        blockedForward(x, w, y, batch: n, outChannels: oc, g, pointwise: pointwise, accumulate: accumulate)
        return
    }
    let chunk = chunkSize(batch: n, plane: plane, rows: k)
    let cols = Workspace.shared.buffer(0, count: k * chunk * plane).baseAddress!
    let staging = chunk > 1 ? Workspace.shared.buffer(1, count: oc * chunk * plane).baseAddress! : nil
    var start = 0
    while start < n {
        let images = min(chunk, n - start)
        im2col(x + start * g.channels * g.inPlane, images: images, g, cols)
        let dst = y + start * oc * plane
        if images == 1 {
            sgemm(m: oc, n: plane, k: k, a: w, lda: k, b: cols, ldb: plane, beta: accumulate ? 1 : 0, c: dst, ldc: plane)
        } else {
            sgemm(m: oc, n: images * plane, k: k, a: w, lda: k, b: cols, ldb: images * plane, c: staging!, ldc: images * plane)
            interleaveBatch(staging!, dst, images: images, rows: oc, plane: plane, inverse: true, accumulate: accumulate)
        }
        start += images
    }
}

/// W (OC×C×K×K) → W' (C×OC×K×K) with W'[c, o, i, j] = W[o, c, K−1−i, K−1−j], in a workspace
/// buffer: its fixed address lets the filter cache overwrite one entry per shape for these
/// one-use kernels, where arrays at ever new addresses added an entry every training step (the
/// cache then grew towards its 256 MB cap, page-faulting fresh memory all the way).
func flippedTransposedKernel(_ w: UnsafePointer<Float>, outChannels oc: Int, _ g: ConvGeometry) -> UnsafeBufferPointer<Float> {
    let c = g.channels, kh = g.kernelH, kw = g.kernelW
    let out = Workspace.shared.buffer(7, count: oc * c * kh * kw)
    Parallel.forEach(c, cost: oc * kh * kw) { ci in
        for o in 0..<oc { for i in 0..<kh { for j in 0..<kw {
            out[((ci * oc + o) * kh + i) * kw + j] = w[((o * c + ci) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)]
        } } }
    }
    return UnsafeBufferPointer(out)
}

/// dW += dY · im2col(x)ᵀ and dX += col2im(Wᵀ · dY), chunk by chunk. With `dXAccumulates` false,
/// dX's contents are undefined on entry and it is overwritten (dX = …).
func convBackward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                  dX: UnsafeMutablePointer<Float>?, dW: UnsafeMutablePointer<Float>?,
                  batch n: Int, outChannels oc: Int, _ g: ConvGeometry, pointwise: Bool, dXAccumulates: Bool = true) {
    var dX = dX, dW = dW
    let k = g.patchSize, plane = g.outPlane
    if coversWholeInput(g) {
        // dW (OC×K) += dYᵀ · X and dX (N×K) += dY · W, with dY an N×OC matrix.
        if let dW { sgemm(transA: true, m: oc, n: k, k: n, a: dy, lda: oc, b: x, ldb: k, beta: 1, c: dW, ldc: k) }
        if let dX { sgemm(m: n, n: k, k: oc, a: dy, lda: oc, b: w, ldb: k, beta: dXAccumulates ? 1 : 0, c: dX, ldc: k) }
        return
    }
    if !pointwise, ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .forward) == .dense {
        let denseWeightGradient = ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .weightGradient) == .dense
        SmallMapConvolution.backward(dy, x, w, dX: dX, dW: denseWeightGradient ? dW : nil, batch: n, outChannels: oc, g,
                                     dXAccumulates: dXAccumulates)
        if denseWeightGradient { return }
        dX = nil
        if dW == nil { return }
    }
    if let dXOut = dX, ConvAlgorithmSelection.strideTwoEligible(g),
       let m = ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .inputGradient).tile {
        // 4×4 stride 2: four sub-pixel 2×2 convolutions of dY by Winograd (Winograd.swift, (B)).
        strideTwoWinogradInputGradient(dy, w, dXOut, batch: n, outChannels: oc, g, tile: m, accumulate: dXAccumulates)
        dX = nil
        if dW == nil { return }
    }
    if let dXOut = dX, g.stride == 1, !pointwise, g.kernelH == g.kernelW, g.padding <= g.kernelH - 1 {
        // Stride 1: dX is the convolution of dY with the flipped, transposed kernel (padding
        // K − 1 − p). Its GEMM has an inner dimension of OC·K² instead of OC and needs no col2im.
        let flipped = flippedTransposedKernel(w, outChannels: oc, g)
        let gT = ConvGeometry(channels: oc, height: g.outHeight, width: g.outWidth, kernelH: g.kernelH, kernelW: g.kernelW,
                              stride: 1, padding: g.kernelH - 1 - g.padding)
        convForward(dy, flipped.baseAddress!, dXOut, batch: n, outChannels: g.channels, gT, pointwise: false, accumulate: dXAccumulates)
        dX = nil
        if dW == nil { return }
    }
    // The remaining paths scatter-add into dX.
    if let dXOut = dX, !dXAccumulates {
        Parallel.forRanges(n * g.channels * g.inPlane) { range in (dXOut + range.lowerBound).initialize(repeating: 0, count: range.count) }
    }
    if let dWOut = dW, !pointwise,
       let m = ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: .weightGradient).tile {
        winogradWeightGradient(dy, x, dWOut, batch: n, outChannels: oc, g, tile: m)
        dW = nil
        if dX == nil { return }
    }
    if pointwise || usesBlockedPath(g) {
        blockedBackward(dy, x, w, dX: dX, dW: dW, batch: n, outChannels: oc, g, pointwise: pointwise)
        return
    }
    let chunk = chunkSize(batch: n, plane: plane, rows: max(k, oc))
    let cols = Workspace.shared.buffer(0, count: k * chunk * plane).baseAddress!
    let staging = chunk > 1 ? Workspace.shared.buffer(1, count: oc * chunk * plane).baseAddress! : nil
    var start = 0
    while start < n {
        let images = min(chunk, n - start)
        let columns = images * plane
        var dyRows = dy + start * oc * plane
        if images > 1 {
            interleaveBatch(dyRows, staging!, images: images, rows: oc, plane: plane)
            dyRows = UnsafePointer(staging!)
        }
        if let dW {
            im2col(x + start * g.channels * g.inPlane, images: images, g, cols)
            sgemm(transB: true, m: oc, n: k, k: columns, a: dyRows, lda: columns, b: cols, ldb: columns, beta: 1, c: dW, ldc: k)
        }
        if let dX {
            sgemm(transA: true, m: k, n: columns, k: oc, a: w, lda: k, b: dyRows, ldb: columns, c: cols, ldc: columns)
            col2im(cols, images: images, g, dX + start * g.channels * g.inPlane)
        }
        start += images
    }
}

// MARK: - Transposed convolution

/// Transposed 2-D convolution (PyTorch's ConvTranspose2d, no output padding).
/// - x: N×C×H×W; weight: C×OC×KH×KW; bias: OC. Output side: (H − 1)·stride − 2·padding + KH.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
    let label = Profiler.isEnabled ? convTranspose2dProfileLabel(x, weight, stride: stride, padding: padding) : "convTranspose2d"
    return Profiler.measure(label) {
    checkShape(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[0], "convTranspose2d",
               "input \(x.shape) and weight \(weight.shape) need N×C×H×W and C×OC×KH×KW with the same C")
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], w = x.shape[3]
    let oc = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    let oh = (h - 1) * stride - 2 * padding + kh, ow = (w - 1) * stride - 2 * padding + kw
    checkShape(oh > 0 && ow > 0, "convTranspose2d", "input \(x.shape), weight \(weight.shape), padding \(padding) give an empty output")
    if let bias { checkShape(bias.shape == [oc], "convTranspose2d", "bias \(bias.shape) for \(oc) output channels") }
    if h == 1 && w == 1 && padding == 0 {
        return pointInputTransposedConv(x, weight: weight, bias: bias)
    }
    // The convolution whose input gradient this op is: from OC×OH×OW back to H×W.
    let g = ConvGeometry(channels: oc, height: oh, width: ow, kernelH: kh, kernelW: kw, stride: stride, padding: padding)
    checkShape(g.outHeight == h && g.outWidth == w, "convTranspose2d", "geometry mismatch for input \(x.shape)")
    // The forward pass is the input gradient of that convolution: Winograd sub-pixel for 4×4 stride 2.
    let winogradTile = ConvAlgorithmSelection.strideTwoEligible(g)
        ? ConvAlgorithmSelection.algorithm(g, outChannels: cin, pass: .inputGradient).tile : nil
    let subPixel = winogradTile == nil
        && SubPixelSelection.applies(kernel: kh, kernelW: kw, stride: stride, padding: padding, height: h, outChannels: oc)
    let overwrites = subPixel || winogradTile != nil
    var out = overwrites ? uninitializedFloats(n * oc * oh * ow) : [Float](repeating: 0, count: n * oc * oh * ow)
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { yp in
                if let m = winogradTile {
                    strideTwoWinogradInputGradient(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, batch: n, outChannels: cin, g,
                                                   tile: m, accumulate: false)
                    if let bias { addChannelBias(yp.baseAddress!, bias.data, batch: n, plane: oh * ow) }
                    return
                }
                if subPixel {
                    subPixelTransposedForward(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, batch: n, inChannels: cin, outChannels: oc, height: h, width: w)
                    if let bias { addChannelBias(yp.baseAddress!, bias.data, batch: n, plane: oh * ow) }
                    return
                }
                // The forward pass is conv backward-data with this op's weight as the conv weight (Cin×OC·K·K).
                convBackward(xp.baseAddress!, xp.baseAddress!, wp.baseAddress!, dX: yp.baseAddress!, dW: nil,
                             batch: n, outChannels: cin, g, pointwise: false)
                if let bias { addChannelBias(yp.baseAddress!, bias.data, batch: n, plane: oh * ow) }
            }
        }
    }
    let parents = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.makeResult(shape: [n, oc, oh, ow], data: out, parents: parents, op: label) { y in
        let dy = y.grad!
        dy.withUnsafeBufferPointer { dyp in
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    if x.requiresGrad && x.grad == nil {
                        // dX = W · im2col(dY): a plain convolution of dY, written into the new gradient.
                        x.withGradDestination { dX, _ in
                            convForward(dyp.baseAddress!, wp.baseAddress!, dX.baseAddress!, batch: n, outChannels: cin, g, pointwise: false)
                        }
                    } else if x.requiresGrad {
                        // Computed apart and added, so the sum is rounded as for a first gradient.
                        let tmp = Workspace.shared.buffer(2, count: n * cin * h * w)
                        convForward(dyp.baseAddress!, wp.baseAddress!, tmp.baseAddress!, batch: n, outChannels: cin, g, pointwise: false)
                        x.accumulateGrad(UnsafeBufferPointer(tmp))
                    }
                    if weight.requiresGrad {
                        // dW (Cin×OC·K·K) += X · im2col(dY)ᵀ: the conv weight gradient with X as "dY".
                        weight.withGradBuffer { dW in
                            convBackward(xp.baseAddress!, dyp.baseAddress!, wp.baseAddress!, dX: nil, dW: dW.baseAddress!,
                                         batch: n, outChannels: cin, g, pointwise: false)
                        }
                    }
                }
            }
            if let bias, bias.requiresGrad {
                bias.withGradBuffer { sumChannels(dyp.baseAddress!, into: $0.baseAddress!, batch: n, channels: oc, plane: oh * ow) }
            }
        }
    }
    }
}

/// A transposed convolution of 1×1 inputs with no padding (DCGAN's first layer, z → 4×4): every
/// input value meets the whole kernel once, so it is one GEMM, Y (N × OC·K·K) = X (N × C) · W
/// (C × OC·K·K), with no column buffer and no scatter; dX = dY · Wᵀ and dW += Xᵀ · dY.
func pointInputTransposedConv(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], oc = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    let width = oc * kh * kw
    var out = uninitializedFloats(n * width)
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { yp in
                sgemm(m: n, n: width, k: cin, a: xp.baseAddress!, lda: cin, b: wp.baseAddress!, ldb: width, c: yp.baseAddress!, ldc: width)
                if let bias { addChannelBias(yp.baseAddress!, bias.data, batch: n, plane: kh * kw) }
            }
        }
    }
    let parents = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.makeResult(shape: [n, oc, kh, kw], data: out, parents: parents) { y in
        let dy = y.grad!
        dy.withUnsafeBufferPointer { dyp in
            if x.requiresGrad {
                weight.data.withUnsafeBufferPointer { wp in
                    x.withGradBuffer { dx in
                        sgemm(transB: true, m: n, n: cin, k: width, a: dyp.baseAddress!, lda: width, b: wp.baseAddress!, ldb: width,
                              beta: 1, c: dx.baseAddress!, ldc: cin)
                    }
                }
            }
            if weight.requiresGrad {
                x.data.withUnsafeBufferPointer { xp in
                    weight.withGradBuffer { dw in
                        sgemm(transA: true, m: cin, n: width, k: n, a: xp.baseAddress!, lda: cin, b: dyp.baseAddress!, ldb: width,
                              beta: 1, c: dw.baseAddress!, ldc: width)
                    }
                }
            }
            if let bias, bias.requiresGrad {
                bias.withGradBuffer { sumChannels(dyp.baseAddress!, into: $0.baseAddress!, batch: n, channels: oc, plane: kh * kw) }
            }
        }
    }
}

// MARK: - Channel bias helpers

/// y[n, c, :] += bias[c].
func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: [Float], batch n: Int, plane: Int) {
    let c = bias.count
    bias.withUnsafeBufferPointer { b in
        Parallel.forEach(n * c, cost: plane) { nc in
            let v = b[nc % c], row = y + nc * plane
            for i in 0..<plane { row[i] += v }
        }
    }
}

/// into[c] += Σ_{n, p} src[n, c, p], summed per channel in a fixed order.
func sumChannels(_ src: UnsafePointer<Float>, into: UnsafeMutablePointer<Float>, batch n: Int, channels c: Int, plane: Int) {
    Parallel.forEach(c, cost: n * plane) { ch in
        var s: Float = 0
        for img in 0..<n { s += vectorSum(src + (img * c + ch) * plane, plane) }
        into[ch] += s
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with the array's base address, or nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let array = self else { return body(nil) }
        return array.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
