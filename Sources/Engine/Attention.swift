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
                for img in 0..<n {
                    let q = src.baseAddress! + img * 3 * c * p, k = q + c * p, v = k + c * p
                    let a = ap.baseAddress! + img * p * p
                    sgemm(transA: true, m: p, n: p, k: c, alpha: scaleFactor, a: q, lda: p, b: k, ldb: p, c: a, ldc: p)
                    Parallel.forEach(p, cost: 10 * p) { r in softmaxRow(a + r * p, a + r * p, p) }
                    sgemm(transB: true, m: c, n: p, k: p, a: v, lda: p, b: a, ldb: p, c: yp.baseAddress! + img * c * p, ldc: p)
                }
            }
        }
    }
    return Tensor.makeResult(shape: [n, c, h, w], data: out, parents: [qkv]) { y in
        let dScores = Workspace.shared.buffer(3, count: p * p).baseAddress!
        let dWeights = Workspace.shared.buffer(4, count: p * p).baseAddress!
        y.grad!.withUnsafeBufferPointer { dyAll in
            qkv.data.withUnsafeBufferPointer { src in
                weights.withUnsafeBufferPointer { ap in
                    qkv.withGradBuffer { dsrc in
                        for img in 0..<n {
                            let q = src.baseAddress! + img * 3 * c * p, k = q + c * p, v = k + c * p
                            let dq = dsrc.baseAddress! + img * 3 * c * p, dk = dq + c * p, dv = dk + c * p
                            let a = ap.baseAddress! + img * p * p, dy = dyAll.baseAddress! + img * c * p
                            sgemm(m: c, n: p, k: p, a: dy, lda: p, b: a, ldb: p, beta: 1, c: dv, ldc: p)
                            sgemm(transA: true, m: p, n: p, k: c, a: dy, lda: p, b: v, ldb: p, c: dWeights, ldc: p)
                            dScores.update(repeating: 0, count: p * p)
                            Parallel.forEach(p, cost: 4 * p) { r in softmaxRowBackward(a + r * p, dWeights + r * p, dScores + r * p, p) }
                            sgemm(transB: true, m: c, n: p, k: p, alpha: scaleFactor, a: k, lda: p, b: dScores, ldb: p, beta: 1, c: dq, ldc: p)
                            sgemm(m: c, n: p, k: p, alpha: scaleFactor, a: q, lda: p, b: dScores, ldb: p, beta: 1, c: dk, ldc: p)
                        }
                    }
                }
            }
        }
    }
    }
}
