import Core

// MARK: - Per-sample geometric and intensity augmentation, differentiable w.r.t. the images
//
// The kernel behind DiffAugment (Zhao et al. 2020): colour (brightness, contrast around the
// sample mean), translation with zero fill, cutout, horizontal flip. The parameters are drawn by
// the caller; this op only applies them, so its pullback is checked like any other op's.

/// One sample's augmentation.
public struct SampleAugmentation: Equatable, Sendable {
    /// Added to every pixel.
    public var brightness: Float = 0
    /// Scale around the sample's mean (after brightness).
    public var contrast: Float = 1
    /// Output pixel (y, x) reads input (y − shiftY, x − shiftX); outside the image reads 0.
    public var shiftX = 0, shiftY = 0
    /// A cutSide × cutSide square at (cutX, cutY) of the output is zeroed.
    public var cutX = 0, cutY = 0, cutSide = 0
    public var flip = false
    public init() {}
}

/// Augments N×C×H×W images, sample i with `draws[i]`.
public func augmentImages(_ x: Tensor, _ draws: [SampleAugmentation]) -> Tensor {
    precondition(x.rank == 4 && draws.count == x.shape[0], "augmentImages: \(draws.count) draws for \(x.shape)")
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], m = c * h * w
    /// Source pixel of output (y, x) for sample d, or nil when it comes from outside or is cut out.
    @inline(__always) func source(_ d: SampleAugmentation, _ yy: Int, _ xx: Int) -> Int? {
        if d.cutSide > 0 && yy >= d.cutY && yy < d.cutY + d.cutSide && xx >= d.cutX && xx < d.cutX + d.cutSide { return nil }
        let sy = yy - d.shiftY
        var sx = xx - d.shiftX
        if sy < 0 || sy >= h || sx < 0 || sx >= w { return nil }
        if d.flip { sx = w - 1 - sx }
        return sy * w + sx
    }
    var means = [Float](repeating: 0, count: n)
    var out = [Float](repeating: 0, count: x.count)
    x.data.withUnsafeBufferPointer { xp in
        for i in 0..<n {
            var s: Float = 0
            for j in 0..<m { s += xp[i * m + j] }
            means[i] = s / Float(m) + draws[i].brightness
        }
        out.withUnsafeMutableBufferPointer { yp in
            Parallel.forEach(n, cost: m) { i in
                let d = draws[i], mean = means[i]
                for ch in 0..<c {
                    let plane = (i * c + ch) * h * w
                    for yy in 0..<h {
                        for xx in 0..<w {
                            guard let s = source(d, yy, xx) else { continue }
                            let v = xp[plane + s] + d.brightness
                            yp[plane + yy * w + xx] = (v - mean) * d.contrast + mean
                        }
                    }
                }
            }
        }
    }
    return Tensor.makeResult(shape: x.shape, data: out, parents: [x]) { y in
        let g = y.grad!
        x.withGradBuffer { dx in
            Parallel.forEach(n, cost: 2 * m) { i in
                let d = draws[i]
                // y = c·v + (1 − c)·mean(v) on kept pixels, v = x + b: route dy back through the
                // shift, then add the mean's share (1 − c)/M · Σ routed dy to every input pixel.
                var routedSum: Float = 0
                for ch in 0..<c {
                    let plane = (i * c + ch) * h * w
                    for yy in 0..<h {
                        for xx in 0..<w {
                            guard let s = source(d, yy, xx) else { continue }
                            let gy = g[plane + yy * w + xx]
                            dx[plane + s] += d.contrast * gy
                            routedSum += gy
                        }
                    }
                }
                let share = (1 - d.contrast) * routedSum / Float(m)
                for j in i * m..<(i + 1) * m { dx[j] += share }
            }
        }
    }
}
