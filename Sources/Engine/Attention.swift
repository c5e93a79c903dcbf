import Core
// MARK: - Single-head self-attention over spatial positions
//
// For each image, with q, k, v ∈ ℝ^{C×P} (P = H·W positions):
//   S = qᵀk / √C,   A = softmax_rows(S),   y = v Aᵀ        (Vaswani et al. 2017, eq. 1)
// Pullback: dv = dy A, dA = dyᵀ v, dS = A ⊙ (dA − rowsum(dA ⊙ A)), dq = k dSᵀ/√C, dk = q dS/√C.

/// Attention from a fused q/k/v tensor N×3C×H×W (q, k, v stacked along channels, as a 1×1 conv to
/// 3C makes it) to N×C×H×W.
public func spatialSelfAttention(qkv: Tensor) -> Tensor {
    Profiler.measure("spatialSelfAttention") {
    checkShape(qkv.rank == 4 && qkv.shape[1] % 3 == 0, "spatialSelfAttention", "qkv \(qkv.shape) is not N×3C×H×W")
    let n = qkv.shape[0], c = qkv.shape[1] / 3, h = qkv.shape[2], w = qkv.shape[3], p = h * w
    let scaleFactor = 1 / Float(c).squareRoot()
    var weights = uninitializedFloats(n * p * p)   // A per image, kept for the pullback
    var out = uninitializedFloats(n * c * p)
    qkv.data.withUnsafeBufferPointer { src in
        weights.withUnsafeMutableBufferPointer { ap in
            out.withUnsafeMutableBufferPointer { yp in
                // Images on the workers, each image's products and softmax serial on one: at 8×8
                // (P = 64) a product is ≈ 1 MFLOP and a softmax row 64 values, far too little to
                // split, so splitting inside an image made 2 threads slower than 1.
                Parallel.forEach(n, cost: 4 * c * p * p) { img in
                    let q = src.baseAddress! + img * 3 * c * p, k = q + c * p, v = k + c * p
                    let a = ap.baseAddress! + img * p * p
                    sgemmSerial(transA: true, m: p, n: p, k: c, alpha: scaleFactor, a: q, lda: p, b: k, ldb: p, c: a, ldc: p)
                    for r in 0..<p { softmaxRow(a + r * p, a + r * p, p) }
                    sgemmSerial(transB: true, m: c, n: p, k: p, a: v, lda: p, b: a, ldb: p, c: yp.baseAddress! + img * c * p, ldc: p)
                }
            }
        }
    }
    return Tensor.makeResult(shape: [n, c, h, w], data: out, parents: [qkv]) { y in
        // One p×p scratch pair per image, so images can run on different workers.
        let dScoresAll = Workspace.shared.buffer(3, count: n * p * p).baseAddress!
        let dWeightsAll = Workspace.shared.buffer(4, count: n * p * p).baseAddress!
        y.grad!.withUnsafeBufferPointer { dyAll in
            qkv.data.withUnsafeBufferPointer { src in
                weights.withUnsafeBufferPointer { ap in
                    qkv.withGradBuffer { dsrc in
                        let dsrcBase = dsrc.baseAddress!
                        Parallel.forEach(n, cost: 8 * c * p * p) { img in
                            let q = src.baseAddress! + img * 3 * c * p, k = q + c * p, v = k + c * p
                            let dq = dsrcBase + img * 3 * c * p, dk = dq + c * p, dv = dk + c * p
                            let a = ap.baseAddress! + img * p * p, dy = dyAll.baseAddress! + img * c * p
                            let dScores = dScoresAll + img * p * p, dWeights = dWeightsAll + img * p * p
                            sgemmSerial(m: c, n: p, k: p, a: dy, lda: p, b: a, ldb: p, beta: 1, c: dv, ldc: p)
                            sgemmSerial(transA: true, m: p, n: p, k: c, a: dy, lda: p, b: v, ldb: p, c: dWeights, ldc: p)
                            dScores.update(repeating: 0, count: p * p)
                            for r in 0..<p { softmaxRowBackward(a + r * p, dWeights + r * p, dScores + r * p, p) }
                            sgemmSerial(transB: true, m: c, n: p, k: p, alpha: scaleFactor, a: k, lda: p, b: dScores, ldb: p, beta: 1, c: dq, ldc: p)
                            sgemmSerial(m: c, n: p, k: p, alpha: scaleFactor, a: q, lda: p, b: dScores, ldb: p, beta: 1, c: dk, ldc: p)
                        }
                    }
                }
            }
        }
    }
    }
}
