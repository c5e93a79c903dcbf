import Core

// MARK: - Pooling

/// Mean over each channel's plane: N×C×H×W → N×C.
public func globalAveragePool(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "globalAveragePool: needs N×C×H×W, got \(x.shape)")
    let n = x.shape[0], c = x.shape[1], plane = x.shape[2] * x.shape[3]
    var out = [Float](repeating: 0, count: n * c)
    x.data.withUnsafeBufferPointer { xp in
        for i in 0..<n * c {
            var s: Float = 0
            for j in 0..<plane { s += xp[i * plane + j] }
            out[i] = s / Float(plane)
        }
    }
    return Tensor.makeResult(shape: [n, c], data: out, parents: [x]) { y in
        let g = y.grad!
        x.withGradBuffer { dx in
            for i in 0..<n * c {
                let v = g[i] / Float(plane)
                for j in 0..<plane { dx[i * plane + j] += v }
            }
        }
    }
}
