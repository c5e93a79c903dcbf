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
