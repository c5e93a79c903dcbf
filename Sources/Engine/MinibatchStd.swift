import Core
import Foundation

/// Minibatch standard deviation (Karras et al. 2018, "Progressive Growing of GANs", §3): appends one
/// channel holding s = mean over C×H×W of the across-batch std √(Var_n x + ε). A discriminator that
/// sees s can tell a batch of too-similar fakes from a real batch, which pushes G towards the data's
/// variety. x: N×C×H×W (N ≥ 2) → N×(C+1)×H×W.
public func appendMinibatchStd(_ x: Tensor, epsilon: Float = 1e-8) -> Tensor {
    Profiler.measure("minibatchStd") {
    checkShape(x.rank == 4 && x.shape[0] >= 2, "appendMinibatchStd", "needs N×C×H×W with N ≥ 2, got \(x.shape)")
    let n = x.shape[0], c = x.shape[1], plane = x.shape[2] * x.shape[3]
    let positions = c * plane
    // Per position: the batch mean and σ, in Double so the result does not depend on summation luck.
    // Samples outer, positions inner: contiguous reads, and each position still sums in sample order.
    var means = [Double](repeating: 0, count: positions)
    var sigmas = [Double](repeating: 0, count: positions)
    x.data.withUnsafeBufferPointer { xp in
        for i in 0..<n { for p in 0..<positions { means[p] += Double(xp[i * positions + p]) } }
        for p in 0..<positions { means[p] /= Double(n) }
        for i in 0..<n { for p in 0..<positions { let d = Double(xp[i * positions + p]) - means[p]; sigmas[p] += d * d } }
        for p in 0..<positions { sigmas[p] = (sigmas[p] / Double(n) + Double(epsilon)).squareRoot() }
    }
    let s = Float(sigmas.reduce(0, +) / Double(positions))
    var out = uninitializedFloats(n * (c + 1) * plane)
    out.withUnsafeMutableBufferPointer { yp in
        x.data.withUnsafeBufferPointer { xp in
            for i in 0..<n {
                (yp.baseAddress! + i * (c + 1) * plane).update(from: xp.baseAddress! + i * positions, count: positions)
                for j in 0..<plane { yp[i * (c + 1) * plane + positions + j] = s }
            }
        }
    }
    return Tensor.makeResult(shape: [n, c + 1, x.shape[2], x.shape[3]], data: out, parents: [x]) { y in
        guard x.requiresGrad else { return }
        y.grad!.withUnsafeBufferPointer { g in
            // ∂s/∂x[i, p] = (x[i, p] − μ_p) / (P·N·σ_p); the upstream gradient of s is the sum over the s channel.
            var gs = 0.0
            for i in 0..<n { for j in 0..<plane { gs += Double(g[i * (c + 1) * plane + positions + j]) } }
            let scale = gs / Double(positions * n)
            x.withGradBuffer { d in
                x.data.withUnsafeBufferPointer { xp in
                    for i in 0..<n {
                        let row = i * positions, yRow = i * (c + 1) * plane
                        for p in 0..<positions {
                            d[row + p] += g[yRow + p] + Float(scale * (Double(xp[row + p]) - means[p]) / sigmas[p])
                        }
                    }
                }
            }
        }
    }
    }
}
