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

/// Mean of each 2×2 block: N×C×H×W → N×C×(H/2)×(W/2) (H and W even).
public func averagePool2x2(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4 && x.shape[2] % 2 == 0 && x.shape[3] % 2 == 0, "averagePool2x2: needs N×C×H×W with even H and W, got \(x.shape)")
    let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3], oh = h / 2, ow = w / 2
    var out = [Float](repeating: 0, count: planes * oh * ow)
    x.data.withUnsafeBufferPointer { xp in
        for p in 0..<planes {
            for oy in 0..<oh {
                let row = p * h * w + 2 * oy * w
                for ox in 0..<ow {
                    let i = row + 2 * ox
                    out[(p * oh + oy) * ow + ox] = 0.25 * (xp[i] + xp[i + 1] + xp[i + w] + xp[i + w + 1])
                }
            }
        }
    }
    return Tensor.makeResult(shape: [x.shape[0], x.shape[1], oh, ow], data: out, parents: [x]) { y in
        let g = y.grad!
        x.withGradBuffer { dx in
            for p in 0..<planes {
                for oy in 0..<oh {
                    let row = p * h * w + 2 * oy * w
                    for ox in 0..<ow {
                        let v = 0.25 * g[(p * oh + oy) * ow + ox], i = row + 2 * ox
                        dx[i] += v; dx[i + 1] += v; dx[i + w] += v; dx[i + w + 1] += v
                    }
                }
            }
        }
    }
}
