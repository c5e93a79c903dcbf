import Core
import Engine

// MARK: - Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for
// Data-Efficient GAN Training")
//
// Applied to real and fake images alike before the discriminator, so D cannot memorise a small
// training set while gradients still reach G. Order as in DiffAugment: colour (brightness,
// contrast), translation, cutout. Horizontal flips only when asked: anatomy has a side.

public struct AugmentationOptions: Codable, Equatable {
    public var brightness = true
    public var contrast = true
    public var translation = true
    public var cutout = true
    public var horizontalFlip = false
    /// Largest shift as a fraction of the image side.
    public var translationRatio: Float = 0.125
    /// Side of the cut-out square as a fraction of the image side.
    public var cutoutRatio: Float = 0.5

    public init() {}
}

/// Per-sample draws of one augmentation pass.
struct AugmentationDraw {
    var brightness: Float = 0      // added
    var contrast: Float = 1        // scale around the sample mean
    var shiftX = 0, shiftY = 0
    var cutX = 0, cutY = 0, cutSide = 0
    var flip = false
}

/// Augments N×C×H×W images with per-sample parameters from `stream`; differentiable w.r.t. x.
public func diffAugment(_ x: Tensor, options: AugmentationOptions, stream: inout RandomStream) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], m = c * h * w
    var draws = [AugmentationDraw](repeating: AugmentationDraw(), count: n)
    for i in 0..<n {
        var d = AugmentationDraw()
        if options.brightness { d.brightness = stream.uniform() - 0.5 }
        if options.contrast { d.contrast = stream.uniform() + 0.5 }
        if options.translation {
            let maxX = Int(Float(w) * options.translationRatio + 0.5), maxY = Int(Float(h) * options.translationRatio + 0.5)
            d.shiftX = stream.int(below: 2 * maxX + 1) - maxX
            d.shiftY = stream.int(below: 2 * maxY + 1) - maxY
        }
        if options.cutout {
            d.cutSide = Int(Float(min(h, w)) * options.cutoutRatio + 0.5)
            d.cutX = stream.int(below: w + 1 - d.cutSide % 2) - d.cutSide / 2
            d.cutY = stream.int(below: h + 1 - d.cutSide % 2) - d.cutSide / 2
        }
        if options.horizontalFlip { d.flip = stream.uniform() < 0.5 }
        draws[i] = d
    }
    /// Source pixel of output (y, x) for sample d, or nil when it comes from outside or is cut out.
    @inline(__always) func source(_ d: AugmentationDraw, _ yy: Int, _ xx: Int) -> Int? {
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
