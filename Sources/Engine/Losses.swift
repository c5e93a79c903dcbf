import Core
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Losses and softmax

/// Mean squared error between `prediction` and a constant `target` of the same shape.
public func mseLoss(_ prediction: Tensor, _ target: Tensor) -> Tensor {
    Profiler.measure("mseLoss") {
    checkShape(prediction.shape == target.shape, "mseLoss", "prediction \(prediction.shape) vs target \(target.shape)")
    let n = prediction.count
    var s = 0.0
    for i in 0..<n { let d = Double(prediction.data[i] - target.data[i]); s += d * d }
    return Tensor.makeResult(shape: [1], data: [Float(s / Double(n))], parents: [prediction, target]) { y in
        let g = y.grad![0] * 2 / Float(n)
        if prediction.requiresGrad {
            prediction.withGradBuffer { dp in for i in 0..<n { dp[i] += g * (prediction.data[i] - target.data[i]) } }
        }
        if target.requiresGrad {
            target.withGradBuffer { dt in for i in 0..<n { dt[i] -= g * (prediction.data[i] - target.data[i]) } }
        }
    }
    }
}

/// Binary cross-entropy on logits, averaged (PyTorch's BCEWithLogitsLoss), in the stable form
/// max(x, 0) − x·t + log(1 + e^(−|x|)).
public func bceWithLogits(_ logits: Tensor, targets: [Float]) -> Tensor {
    checkShape(logits.count == targets.count, "bceWithLogits", "logits \(logits.shape) vs \(targets.count) targets")
    let n = logits.count
    var s = 0.0
    for i in 0..<n {
        let x = logits.data[i], t = targets[i]
        s += Double(max(x, 0) - x * t + log1pf(expf(-abs(x))))
    }
    return Tensor.makeResult(shape: [1], data: [Float(s / Double(n))], parents: [logits]) { y in
        let g = y.grad![0] / Float(n)
        logits.withGradBuffer { dl in for i in 0..<n { dl[i] += g * (sigmoidValue(logits.data[i]) - targets[i]) } }
    }
}

/// Softmax along the last axis.
public func softmax(_ x: Tensor) -> Tensor {
    let d = x.shape.last!, rows = x.count / d
    var out = [Float](repeating: 0, count: x.count)
    x.data.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forEach(rows, cost: 10 * d) { r in softmaxRow(xp.baseAddress! + r * d, yp.baseAddress! + r * d, d) }
        }
    }
    return Tensor.makeResult(shape: x.shape, data: out, parents: [x]) { y in
        x.withGradBuffer { dx in
            y.grad!.withUnsafeBufferPointer { g in
                y.data.withUnsafeBufferPointer { yp in
                    Parallel.forEach(rows, cost: 4 * d) { r in
                        softmaxRowBackward(yp.baseAddress! + r * d, g.baseAddress! + r * d, dx.baseAddress! + r * d, d)
                    }
                }
            }
        }
    }
}

@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ d: Int) {
    var mx = -Float.infinity
    for j in 0..<d { mx = max(mx, x[j]) }
    var s: Float = 0
    for j in 0..<d { let e = expf(x[j] - mx); y[j] = e; s += e }
    let inv = 1 / s
    for j in 0..<d { y[j] *= inv }
}

/// dx += y ⊙ (dy − Σ dy·y).
@inline(__always)
func softmaxRowBackward(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ d: Int) {
    var dot: Float = 0
    for j in 0..<d { dot += dy[j] * y[j] }
    for j in 0..<d { dx[j] += y[j] * (dy[j] - dot) }
}

/// Mean cross-entropy of integer `labels` under softmax(`logits`) (N×C), through the stable
/// log-sum-exp; the gradient is (softmax − one-hot) / N.
public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int]) -> Tensor {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count, "softmaxCrossEntropy: logits \(logits.shape) for \(labels.count) labels")
    let n = logits.shape[0], c = logits.shape[1]
    precondition(labels.allSatisfy { $0 >= 0 && $0 < c }, "softmaxCrossEntropy: a label is outside 0..<\(c)")
    var probabilities = [Float](repeating: 0, count: n * c)
    var loss = 0.0
    for i in 0..<n {
        var mx = -Float.infinity
        for j in 0..<c { mx = max(mx, logits.data[i * c + j]) }
        var s: Double = 0
        for j in 0..<c { let e = exp(Double(logits.data[i * c + j] - mx)); probabilities[i * c + j] = Float(e); s += e }
        for j in 0..<c { probabilities[i * c + j] /= Float(s) }
        loss += log(s) + Double(mx) - Double(logits.data[i * c + labels[i]])
    }
    return Tensor.makeResult(shape: [1], data: [Float(loss / Double(n))], parents: [logits]) { y in
        let g = y.grad![0] / Float(n)
        logits.withGradBuffer { dl in
            for i in 0..<n {
                for j in 0..<c { dl[i * c + j] += g * (probabilities[i * c + j] - (j == labels[i] ? 1 : 0)) }
            }
        }
    }
}

/// Mode-seeking regulariser of MSGAN (Mao et al. 2019, "Mode Seeking Generative Adversarial
/// Networks for Diverse Image Synthesis", the authors' code): with r = Σ_pairs mean|xᵢ − xⱼ| /
/// Σ_pairs mean|zᵢ − zⱼ|, the loss 1 / (r + ε). Minimising it pushes two samples drawn from
/// different latents apart in proportion to how far apart the latents are, so G cannot map
/// many latents to one image. `latents` are constants (N×d); the gradient goes to `images` (N×C×H×W).
/// With `block` > 1 the images are compared as means of block×block pixels, so only variety at
/// that scale or coarser counts (per-pixel differences are also satisfied by noise).
public func modeSeekingLoss(_ images: Tensor, latents: [Float], latentDim: Int, pairs: [(Int, Int)], block: Int = 1, epsilon: Float = 1e-5) -> Tensor {
    checkShape(images.rank == 4, "modeSeekingLoss", "images must be N×C×H×W, got \(images.shape)")
    let n = images.shape[0], planes = images.shape[1], h = images.shape[2], w = images.shape[3], m = planes * h * w
    checkShape(block > 0 && h % block == 0 && w % block == 0, "modeSeekingLoss", "block \(block) must divide \(h)×\(w)")
    checkShape(latents.count == n * latentDim, "modeSeekingLoss", "\(latents.count) latent values for \(n) images of dimension \(latentDim)")
    checkShape(!pairs.isEmpty && pairs.allSatisfy { $0.0 != $0.1 && (0..<n).contains($0.0) && (0..<n).contains($0.1) },
               "modeSeekingLoss", "pairs must name two different images of the \(n)")
    let bh = h / block, bw = w / block, cells = planes * bh * bw, area = Float(block * block)
    // Block means of every image: N × cells.
    var pooled = [Float](repeating: 0, count: n * cells)
    images.data.withUnsafeBufferPointer { x in
        for i in 0..<n { for c in 0..<planes { for y in 0..<h { for xx in 0..<w {
            pooled[i * cells + (c * bh + y / block) * bw + xx / block] += x[i * m + (c * h + y) * w + xx] / area
        } } } }
    }
    var imageDistance = 0.0, latentDistance = 0.0
    for (i, j) in pairs {
        var s = 0.0
        for k in 0..<cells { s += Double(abs(pooled[i * cells + k] - pooled[j * cells + k])) }
        imageDistance += s / Double(cells)
        var t = 0.0
        for k in 0..<latentDim { t += Double(abs(latents[i * latentDim + k] - latents[j * latentDim + k])) }
        latentDistance += t / Double(latentDim)
    }
    let ratio = imageDistance / max(latentDistance, 1e-12)
    let loss = 1 / (ratio + Double(epsilon))
    return Tensor.makeResult(shape: [1], data: [Float(loss)], parents: [images]) { y in
        // d loss / d xᵢ = −loss² · sign(x̄ᵢ − x̄ⱼ) / (cells · area · Σ latent distances) for each pixel of a block.
        let g = Float(-Double(y.grad![0]) * loss * loss / (Double(cells) * max(latentDistance, 1e-12))) / area
        var cellGradient = [Float](repeating: 0, count: n * cells)
        for (i, j) in pairs {
            for k in 0..<cells {
                let d = pooled[i * cells + k] - pooled[j * cells + k]
                let s: Float = d > 0 ? g : (d < 0 ? -g : 0)
                cellGradient[i * cells + k] += s; cellGradient[j * cells + k] -= s
            }
        }
        images.withGradBuffer { dx in
            for i in 0..<n { for c in 0..<planes { for y in 0..<h { for xx in 0..<w {
                dx[i * m + (c * h + y) * w + xx] += cellGradient[i * cells + (c * bh + y / block) * bw + xx / block]
            } } } }
        }
    }
}
