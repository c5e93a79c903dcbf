import Core
#if canImport(Glibc)
import Glibc
#endif
// MARK: - Batch and group normalisation
//
// Both compute x̂ = (x − μ) / √(σ² + ε) over a set of values and y = γ·x̂ + β per channel
// (Ioffe & Szegedy 2015; Wu & He 2018). The pullback in training mode is the usual
//   dx = 1/√(σ²+ε) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)),  dx̂ = dy · γ.
// Statistics are accumulated in Double per group, in a fixed order.

/// Batch normalisation over N×H×W per channel of an N×C×H×W tensor (PyTorch's BatchNorm2d).
/// In training mode the batch statistics are used and the running averages are updated in place
/// (unbiased variance, like PyTorch); in eval mode the running averages are used.
/// With `activationSlope` s the result is LeakyReLU_s(BatchNorm(x)) (ReLU for s = 0) in the same
/// pass over memory, as DCGAN follows every norm with one; the pullback recomputes the sign of the
/// pre-activation from x, so neither pass over the activation nor its tensor exists.
public func batchNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, activationSlope: Float? = nil) -> Tensor {
    Profiler.measure(activationSlope == nil ? "batchNorm" : "batchNorm+leakyRelu") {
    checkShape(x.rank == 4 && gamma.shape == [x.shape[1]] && beta.shape == gamma.shape
               && runningMean.shape == gamma.shape && runningVar.shape == gamma.shape,
               "batchNorm", "input \(x.shape), gamma \(gamma.shape), beta \(beta.shape), running \(runningMean.shape)/\(runningVar.shape)")
    let n = x.shape[0], c = x.shape[1], plane = x.shape[2] * x.shape[3], m = n * plane
    var meanC = [Float](repeating: 0, count: c), invStd = [Float](repeating: 0, count: c)
    x.data.withUnsafeBufferPointer { xp in
        if training {
            checkShape(m > 1, "batchNorm", "training needs more than one value per channel, got input \(x.shape)")
            var varC = [Float](repeating: 0, count: c)
            meanC.withUnsafeMutableBufferPointer { mp in
                invStd.withUnsafeMutableBufferPointer { ip in
                    varC.withUnsafeMutableBufferPointer { vp in
                        Parallel.forEach(c, cost: m) { ch in
                            // Two passes (mean, then squared deviations), 8-lane partial sums per
                            // row added in Double in image order: vectorised and thread-independent.
                            var s = 0.0
                            for img in 0..<n { s += Double(vectorSum(xp.baseAddress! + (img * c + ch) * plane, plane)) }
                            let mu = s / Double(m)
                            var ss = 0.0
                            for img in 0..<n { ss += Double(squaredDeviationSum(xp.baseAddress! + (img * c + ch) * plane, plane, Float(mu))) }
                            let variance = ss / Double(m)
                            mp[ch] = Float(mu)
                            ip[ch] = Float(1 / (variance + Double(eps)).squareRoot())
                            vp[ch] = Float(variance * Double(m) / Double(m - 1))
                        }
                    }
                }
            }
            for ch in 0..<c {
                runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * meanC[ch]
                runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * varC[ch]
            }
        } else {
            for ch in 0..<c {
                meanC[ch] = runningMean.data[ch]
                invStd[ch] = 1 / (runningVar.data[ch] + eps).squareRoot()
            }
        }
    }
    var out = uninitializedFloats(x.count)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forEach(n * c, cost: plane) { r in
                let ch = r % c, a = invStd[ch] * gamma.data[ch], b = beta.data[ch] - meanC[ch] * a
                let base = r * plane
                if let slope = activationSlope {
                    leakyAffineRow(xp.baseAddress! + base, yp.baseAddress! + base, plane, a, b, slope: slope, gradient: false)
                } else {
                    for i in base..<base + plane { yp[i] = xp[i] * a + b }
                }
            }
        }
    }
    return Tensor.makeResult(shape: x.shape, data: out, parents: [x, gamma, beta]) { y in
        var dy = y.grad!
        y.grad = nil
        // Per-channel sums of dy and dy·x̂. With the fused activation, dy first becomes
        // dz = dy · (1 or slope) by the sign of z = a·x + b recomputed as in the forward pass, in
        // the same pass (dy is this pullback's own copy).
        var sumDy = [Float](repeating: 0, count: c), sumDyXhat = [Float](repeating: 0, count: c)
        dy.withUnsafeMutableBufferPointer { gm in
            let g = UnsafeBufferPointer(gm)
            x.data.withUnsafeBufferPointer { xp in
                sumDy.withUnsafeMutableBufferPointer { sp in
                    sumDyXhat.withUnsafeMutableBufferPointer { sxp in
                        Parallel.forEach(c, cost: 2 * m) { ch in
                            var s = 0.0, sx = 0.0
                            let mu = meanC[ch], inv = invStd[ch]
                            let a = invStd[ch] * gamma.data[ch], b = beta.data[ch] - meanC[ch] * a
                            for img in 0..<n {
                                let base = (img * c + ch) * plane
                                if let slope = activationSlope {
                                    leakyAffineRow(xp.baseAddress! + base, gm.baseAddress! + base, plane, a, b, slope: slope, gradient: true)
                                }
                                let (rowSum, rowDot) = sumAndCenteredDot(g.baseAddress! + base, xp.baseAddress! + base, plane, mu)
                                s += Double(rowSum); sx += Double(rowDot)
                            }
                            sp[ch] = Float(s); sxp[ch] = Float(sx * Double(inv))
                        }
                    }
                }
                if gamma.requiresGrad { gamma.withGradBuffer { for ch in 0..<c { $0[ch] += sumDyXhat[ch] } } }
                if beta.requiresGrad { beta.withGradBuffer { for ch in 0..<c { $0[ch] += sumDy[ch] } } }
                if x.requiresGrad {
                    x.withGradBuffer { dx in
                        Parallel.forEach(n * c, cost: plane) { r in
                            let ch = r % c, inv = invStd[ch], gm = gamma.data[ch], mu = meanC[ch]
                            let base = r * plane
                            if training {
                                let meanDxhat = gm * sumDy[ch] / Float(m), meanDxhatXhat = gm * sumDyXhat[ch] / Float(m)
                                for i in base..<base + plane {
                                    let xhat = (xp[i] - mu) * inv
                                    dx[i] += inv * (g[i] * gm - meanDxhat - xhat * meanDxhatXhat)
                                }
                            } else {
                                for i in base..<base + plane { dx[i] += g[i] * gm * inv }
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

/// Group normalisation of N×C×H×W: statistics per sample over each group of C/groups channels.
/// With `fusedSiLU` the result is SiLU(GroupNorm(x)) in one pass over memory (the U-Net always
/// follows its norms with SiLU); the pullback recomputes the pre-activation from x.
public func groupNorm(_ x: Tensor, groups: Int, gamma: Tensor, beta: Tensor, eps: Float = 1e-5, fusedSiLU: Bool = false) -> Tensor {
    Profiler.measure(fusedSiLU ? "groupNorm+silu" : "groupNorm") {
    checkShape(x.rank == 4 && x.shape[1] % groups == 0 && gamma.shape == [x.shape[1]] && beta.shape == gamma.shape,
               "groupNorm", "input \(x.shape) with \(groups) groups, gamma \(gamma.shape), beta \(beta.shape)")
    let n = x.shape[0], c = x.shape[1], plane = x.shape[2] * x.shape[3]
    let perGroup = c / groups, m = perGroup * plane
    var meanG = [Float](repeating: 0, count: n * groups), invStd = [Float](repeating: 0, count: n * groups)
    var out = uninitializedFloats(x.count)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            meanG.withUnsafeMutableBufferPointer { meanP in invStd.withUnsafeMutableBufferPointer { invP in
            Parallel.forEach(n * groups, cost: 3 * m) { ng in
                let base = ng * m
                // Two passes (mean, then squared deviations) in 8-lane partial sums: stable and vectorised.
                let mu = Double(vectorSum(xp.baseAddress! + base, m)) / Double(m)
                let variance = Double(squaredDeviationSum(xp.baseAddress! + base, m, Float(mu))) / Double(m)
                let inv = Float(1 / (variance + Double(eps)).squareRoot())
                meanP[ng] = Float(mu); invP[ng] = inv
                let g0 = (ng % groups) * perGroup
                for k in 0..<perGroup {
                    let a = inv * gamma.data[g0 + k], b = beta.data[g0 + k] - Float(mu) * a
                    let rowBase = base + k * plane
                    affineRow(xp.baseAddress! + rowBase, yp.baseAddress! + rowBase, plane, a, b, silu: fusedSiLU)
                }
            }
            } }
        }
    }
    return Tensor.makeResult(shape: x.shape, data: out, parents: [x, gamma, beta]) { y in
        // Take the gradient out of y (the sweep drops it after this pullback anyway), so the
        // in-place SiLU' pass below does not first copy the whole array.
        var dy = y.grad!
        y.grad = nil
        // Per (sample, channel) partial sums, reduced over samples afterwards in a fixed order.
        // With the fused SiLU, each row of dy first becomes dz = dy · SiLU'(z), z = γ·x̂ + β
        // recomputed from x, in the same pass while the row is in cache.
        var partDy = [Float](repeating: 0, count: n * c), partDyXhat = [Float](repeating: 0, count: n * c)
        dy.withUnsafeMutableBufferPointer { gm in
            let g = UnsafeBufferPointer(gm)
            x.data.withUnsafeBufferPointer { xp in
                partDy.withUnsafeMutableBufferPointer { pd in partDyXhat.withUnsafeMutableBufferPointer { pdx in
                    Parallel.forEach(n * c, cost: (fusedSiLU ? 10 : 2) * plane) { r in
                        let ch = r % c, ng = (r / c) * groups + ch / perGroup
                        let mu = meanG[ng], inv = invStd[ng], base = r * plane
                        // Lane partial sums: a scalar running sum waits one add latency per pixel.
                        let sums: (Float, Float)
                        if fusedSiLU {
                            let a = inv * gamma.data[ch], b = beta.data[ch] - mu * a
                            sums = siluGradientRowSums(xp.baseAddress! + base, gm.baseAddress! + base, plane, a, b, mu)
                        } else {
                            sums = sumAndCenteredDot(g.baseAddress! + base, xp.baseAddress! + base, plane, mu)
                        }
                        pd[r] = sums.0; pdx[r] = sums.1 * inv
                    }
                } }
                if gamma.requiresGrad { gamma.withGradBuffer { dg in for r in 0..<n * c { dg[r % c] += partDyXhat[r] } } }
                if beta.requiresGrad { beta.withGradBuffer { db in for r in 0..<n * c { db[r % c] += partDy[r] } } }
                if x.requiresGrad {
                    x.withGradBuffer { dx in
                        Parallel.forEach(n * groups, cost: 3 * m) { ng in
                            let img = ng / groups, g0 = (ng % groups) * perGroup
                            var sumDxhat: Float = 0, sumDxhatXhat: Float = 0
                            for k in 0..<perGroup {
                                let r = img * c + g0 + k, gm = gamma.data[g0 + k]
                                sumDxhat += gm * partDy[r]; sumDxhatXhat += gm * partDyXhat[r]
                            }
                            let meanDxhat = sumDxhat / Float(m), meanDxhatXhat = sumDxhatXhat / Float(m)
                            let mu = meanG[ng], inv = invStd[ng]
                            for k in 0..<perGroup {
                                let gm = gamma.data[g0 + k], base = (img * c + g0 + k) * plane
                                for i in base..<base + plane {
                                    let xhat = (xp[i] - mu) * inv
                                    dx[i] += inv * (g[i] * gm - meanDxhat - xhat * meanDxhatXhat)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

/// (Σ g, Σ g·(x − μ)) in 8-lane partial sums.
@inline(__always)
func sumAndCenteredDot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ mu: Float) -> (Float, Float) {
    var sum = SIMD8<Float>(repeating: 0), dot = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    var i = 0
    while i + 8 <= n {
        let gv = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
        sum += gv
        dot += gv * (UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - m)
        i += 8
    }
    var s = sum.sum(), d = dot.sum()
    while i < n { s += g[i]; d += g[i] * (x[i] - mu); i += 1 }
    return (s, d)
}

/// Σ (x − μ)² in 8-lane partial sums.
@inline(__always)
func squaredDeviationSum(_ x: UnsafePointer<Float>, _ n: Int, _ mu: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    var i = 0
    while i + 8 <= n {
        let d = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) - m
        acc += d * d
        i += 8
    }
    var s = acc.sum()
    while i < n { let d = x[i] - mu; s += d * d; i += 1 }
    return s
}

/// y = a·x + b, optionally followed by SiLU, 16 lanes at a time.
@inline(__always)
func affineRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float, silu: Bool) {
    let av = SIMD16<Float>(repeating: a), bv = SIMD16<Float>(repeating: b)
    var i = 0
    while i + 16 <= n {
        var z = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) * av + bv
        if silu { z = z * simdSigmoid(z) }
        UnsafeMutableRawPointer(y + i).storeBytes(of: z, as: SIMD16<Float>.self)
        i += 16
    }
    while i < n {
        let z = x[i] * a + b
        y[i] = silu ? z / (1 + expf(-z)) : z
        i += 1
    }
}

/// With z = a·x + b: y = LeakyReLU_slope(z) (ReLU as max(z, 0) when slope = 0, like `relu`), or
/// with `gradient`, y ← y · (1 where z > 0, else slope), the derivative at the recomputed z.
@inline(__always)
func leakyAffineRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float, slope: Float,
                    gradient: Bool) {
    let av = SIMD16<Float>(repeating: a), bv = SIMD16<Float>(repeating: b)
    let zero = SIMD16<Float>(repeating: 0), slopes = SIMD16<Float>(repeating: slope)
    var i = 0
    while i + 16 <= n {
        let z = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) * av + bv
        let v: SIMD16<Float>
        if gradient {
            let g = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
            v = g.replacing(with: g * slopes, where: .!(z .> zero))
        } else {
            v = slope == 0 ? z.replacing(with: zero, where: z .<= zero) : z.replacing(with: z * slopes, where: .!(z .> zero))
        }
        UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: SIMD16<Float>.self)
        i += 16
    }
    while i < n {
        let z = x[i] * a + b
        if gradient {
            if !(z > 0) { y[i] *= slope }
        } else {
            y[i] = z > 0 ? z : (slope == 0 ? max(z, 0) : slope * z)
        }
        i += 1
    }
}

/// g ← g · SiLU'(a·x + b), with SiLU'(z) = σ(z)·(1 + z·(1 − σ(z))), returning (Σ g, Σ g·(x − μ))
/// of the new values in 16-lane partial sums, so GroupNorm's backward reads the row once.
@inline(__always)
func siluGradientRowSums(_ x: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float,
                         _ mu: Float) -> (Float, Float) {
    let av = SIMD16<Float>(repeating: a), bv = SIMD16<Float>(repeating: b), mv = SIMD16<Float>(repeating: mu)
    var sum = SIMD16<Float>(repeating: 0), dot = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= n {
        let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let z = xv * av + bv
        let s = simdSigmoid(z)
        let dz = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD16<Float>.self) * s * (1 + z * (1 - s))
        UnsafeMutableRawPointer(g + i).storeBytes(of: dz, as: SIMD16<Float>.self)
        sum += dz
        dot += dz * (xv - mv)
        i += 16
    }
    var total = sum.sum(), centred = dot.sum()
    while i < n {
        let z = x[i] * a + b, s = 1 / (1 + expf(-z))
        g[i] *= s * (1 + z * (1 - s))
        total += g[i]; centred += g[i] * (x[i] - mu)
        i += 1
    }
    return (total, centred)
}
