import Core

// MARK: - Spectral normalisation (Miyato et al. 2018, "Spectral Normalization for Generative
// Adversarial Networks")
//
// W is viewed as a matrix with shape[0] rows (output channels of a Conv2d, classes of an
// embedding table) and the remaining axes as columns, as torch.nn.utils.spectral_norm does.
// σ(W) is estimated by power iteration with a persistent u (Algorithm 1: one iteration per
// training step suffices because W changes slowly): v = Wᵀu/‖Wᵀu‖, u = Wv/‖Wv‖, σ = uᵀWv.
// The normalised weight W/σ is differentiable with u and v held constant (eq. 12):
//   ∂L/∂W = (G − (⟨G, W⟩/σ) u vᵀ)/σ,  G = ∂L/∂W_SN,
// the second term is what keeps the layer's largest singular value from drifting upwards.

/// One power iteration on `weight` (rows = shape[0]) from `u`; returns the updated (u, v).
/// Not differentiated: u and v are constants of the normalisation, as in the paper.
public func spectralPowerIteration(_ weight: Tensor, u: [Float], eps: Float = 1e-12) -> (u: [Float], v: [Float]) {
    let rows = weight.shape[0], cols = weight.count / max(rows, 1)
    checkShape(u.count == rows, "spectralPowerIteration", "u has \(u.count) values for \(rows) rows of \(weight.shape)")
    var v = [Float](repeating: 0, count: cols), newU = [Float](repeating: 0, count: rows)
    weight.data.withUnsafeBufferPointer { w in
        u.withUnsafeBufferPointer { up in
            v.withUnsafeMutableBufferPointer { vp in
                // v = Wᵀ u: (cols × rows)·(rows), as a GEMM with one column.
                sgemm(transA: true, m: cols, n: 1, k: rows, a: w.baseAddress!, lda: cols, b: up.baseAddress!, ldb: 1,
                      c: vp.baseAddress!, ldc: 1)
            }
        }
    }
    normalise(&v, eps: eps)
    weight.data.withUnsafeBufferPointer { w in
        v.withUnsafeBufferPointer { vp in
            newU.withUnsafeMutableBufferPointer { up in
                sgemm(m: rows, n: 1, k: cols, a: w.baseAddress!, lda: cols, b: vp.baseAddress!, ldb: 1, c: up.baseAddress!, ldc: 1)
            }
        }
    }
    normalise(&newU, eps: eps)
    return (newU, v)
}

/// Scales `x` to unit length (x / max(‖x‖, eps), PyTorch's F.normalize).
func normalise(_ x: inout [Float], eps: Float) {
    var s: Double = 0
    for value in x { s += Double(value) * Double(value) }
    let inverse = Float(1 / max(s.squareRoot(), Double(eps)))
    for i in x.indices { x[i] *= inverse }
}

/// σ = uᵀ W v for fixed u (rows) and v (columns).
public func spectralSigma(_ weight: Tensor, u: [Float], v: [Float]) -> Float {
    let rows = weight.shape[0], cols = weight.count / max(rows, 1)
    var s: Double = 0
    weight.data.withUnsafeBufferPointer { w in
        for r in 0..<rows {
            var row: Double = 0
            for c in 0..<cols { row += Double(w[r * cols + c]) * Double(v[c]) }
            s += Double(u[r]) * row
        }
    }
    return Float(s)
}

/// W / σ with σ = uᵀ W v (u, v constants from `spectralPowerIteration`); same shape as W.
public func spectralNormalize(_ weight: Tensor, u: [Float], v: [Float], eps: Float = 1e-12) -> Tensor {
    let rows = weight.shape[0], cols = weight.count / max(rows, 1)
    checkShape(u.count == rows && v.count == cols, "spectralNormalize",
               "u (\(u.count)) and v (\(v.count)) do not match \(weight.shape) as \(rows)×\(cols)")
    let sigma = max(spectralSigma(weight, u: u, v: v), eps)
    let inverse = 1 / sigma
    let out = weight.data.map { $0 * inverse }
    return Tensor.makeResult(shape: weight.shape, data: out, parents: [weight]) { y in
        let g = y.grad!
        // ⟨G, W⟩ / σ² multiplies u vᵀ (the gradient of σ); G / σ is the direct term.
        var inner: Double = 0
        for i in g.indices { inner += Double(g[i]) * Double(weight.data[i]) }
        let coupling = Float(inner) * inverse * inverse
        weight.withGradBuffer { dw in
            for r in 0..<rows {
                let ur = coupling * u[r]
                for c in 0..<cols { dw[r * cols + c] += g[r * cols + c] * inverse - ur * v[c] }
            }
        }
    }
}
