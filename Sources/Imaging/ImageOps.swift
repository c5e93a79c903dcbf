import Core

// Conversions between the stored integer samples and the Float tensors the models use, plus
// resizing, cropping and channel/depth changes. All of them keep the integer sample range
// 0...maxValue and round half away from zero when going back to integers.

/// ITU-R BT.601 luma weights (the ones libjpeg and most imaging tools use for RGB → gray).
@usableFromInline let lumaWeights: (r: Float, g: Float, b: Float) = (0.299, 0.587, 0.114)

extension Image {
    // MARK: - Float tensors

    /// Planar CHW Float samples in [-1, 1]: `v / maxValue * 2 - 1`. Alpha is dropped.
    /// - Parameter channels: 1 gives gray (BT.601 luma when the image is RGB), 3 gives RGB (gray
    ///   replicated); nil keeps the image's colour channels. Result count: channels * height * width.
    public func toFloatCHW(channels requested: Int? = nil) -> [Float] {
        let source = colorChannels
        let target = requested ?? source
        precondition(target == 1 || target == 3, "toFloatCHW: channels must be 1 or 3, got \(target)")
        let plane = width * height
        var out = [Float](repeating: 0, count: target * plane)
        let scale = 2 / Float(maxValue)
        let stride = channels
        samples.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                switch (source, target) {
                case (1, 1), (3, 3):
                    for c in 0..<target {
                        for p in 0..<plane { dst[c * plane + p] = Float(src[p * stride + c]) * scale - 1 }
                    }
                case (1, 3):
                    for p in 0..<plane {
                        let v = Float(src[p * stride]) * scale - 1
                        dst[p] = v; dst[plane + p] = v; dst[2 * plane + p] = v
                    }
                default:  // (3, 1): luma of the normalised values
                    for p in 0..<plane {
                        let base = p * stride
                        let y = lumaWeights.r * Float(src[base]) + lumaWeights.g * Float(src[base + 1])
                            + lumaWeights.b * Float(src[base + 2])
                        dst[p] = y * scale - 1
                    }
                }
            }
        }
        return out
    }

    /// Builds an image from planar CHW Float samples in [-1, 1] (the inverse of `toFloatCHW`):
    /// values are clamped to [-1, 1], mapped to 0...maxValue and rounded half away from zero, so
    /// `Image(floatCHW: img.toFloatCHW(), ...)` reproduces 8- and 16-bit images exactly.
    /// NaN becomes 0 (black) so a diverged model is visible rather than silently mid-grey.
    public init(floatCHW: [Float], width: Int, height: Int, channels: Int, bitDepth: Int) {
        precondition(floatCHW.count == channels * width * height,
                     "Image(floatCHW:): \(floatCHW.count) values for \(channels)x\(height)x\(width)")
        self.init(width: width, height: height, channels: channels, bitDepth: bitDepth)
        let plane = width * height
        let half = Float(maxValue) / 2
        floatCHW.withUnsafeBufferPointer { src in
            samples.withUnsafeMutableBufferPointer { dst in
                for c in 0..<channels {
                    for p in 0..<plane {
                        let x = src[c * plane + p]
                        let clamped = x.isNaN ? -1 : Swift.min(Swift.max(x, -1), 1)
                        dst[p * channels + c] = UInt16(((clamped + 1) * half).rounded(.toNearestOrAwayFromZero))
                    }
                }
            }
        }
    }

    // MARK: - Channels and depth

    /// The same pixels with `channels` channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
    /// Gray → RGB replicates; RGB → gray is BT.601 luma, rounded; added alpha is opaque;
    /// removed alpha is dropped (not composited).
    public func converted(channels target: Int) -> Image {
        precondition(target >= 1 && target <= 4, "converted(channels:): channels must be 1...4, got \(target)")
        if target == channels { return self }
        var out = Image(width: width, height: height, channels: target, bitDepth: bitDepth)
        let pixels = width * height
        let sourceColor = colorChannels, sourceAlpha = hasAlpha, source = channels
        let targetColor = out.colorChannels, targetAlpha = out.hasAlpha
        let opaque = UInt16(maxValue)
        samples.withUnsafeBufferPointer { src in
            out.samples.withUnsafeMutableBufferPointer { dst in
                for p in 0..<pixels {
                    let s = p * source, d = p * target
                    if sourceColor == targetColor {
                        for c in 0..<targetColor { dst[d + c] = src[s + c] }
                    } else if targetColor == 3 {
                        dst[d] = src[s]; dst[d + 1] = src[s]; dst[d + 2] = src[s]
                    } else {
                        // Double keeps 16-bit luma exact before rounding.
                        let y = 0.299 * Double(src[s]) + 0.587 * Double(src[s + 1]) + 0.114 * Double(src[s + 2])
                        dst[d] = UInt16(Swift.min(y.rounded(), Double(opaque)))
                    }
                    if targetAlpha { dst[d + targetColor] = sourceAlpha ? src[s + sourceColor] : opaque }
                }
            }
        }
        return out
    }

    /// The same pixels at `bitDepth` 8 or 16. 8 → 16 multiplies by 257 (255 ↦ 65535);
    /// 16 → 8 rounds v / 257 to nearest, so 8 → 16 → 8 is exact.
    public func converted(bitDepth target: Int) -> Image {
        precondition(target == 8 || target == 16, "converted(bitDepth:): bit depth must be 8 or 16, got \(target)")
        if target == bitDepth { return self }
        var out = Image(width: width, height: height, channels: channels, bitDepth: target)
        samples.withUnsafeBufferPointer { src in
            out.samples.withUnsafeMutableBufferPointer { dst in
                if target == 16 {
                    for i in src.indices { dst[i] = src[i] &* 257 }
                } else {
                    // 257 is odd, so v / 257 is never exactly halfway and (v + 128) / 257 rounds it.
                    for i in src.indices { dst[i] = UInt16((UInt32(src[i]) + 128) / 257) }
                }
            }
        }
        return out
    }

    // MARK: - Geometry

    /// The central `side` x `side` square (offset rounded down when the margin is odd).
    public func centerCropped(side: Int) -> Image {
        precondition(side >= 1 && side <= width && side <= height,
                     "centerCropped: side \(side) does not fit a \(width)x\(height) image")
        let x0 = (width - side) / 2, y0 = (height - side) / 2
        var out = Image(width: side, height: side, channels: channels, bitDepth: bitDepth)
        let rowSamples = side * channels
        samples.withUnsafeBufferPointer { src in
            out.samples.withUnsafeMutableBufferPointer { dst in
                for y in 0..<side {
                    let from = ((y0 + y) * width + x0) * channels
                    for i in 0..<rowSamples { dst[y * rowSamples + i] = src[from + i] }
                }
            }
        }
        return out
    }

    /// Centre crop to the largest square, then resize to `size` x `size`.
    public func squareResized(_ size: Int) -> Image {
        let side = Swift.min(width, height)
        let square = width == height ? self : centerCropped(side: side)
        return side == size ? square : square.resized(width: size, height: size)
    }

    /// Resizes each axis separately: area averaging where it shrinks (every source pixel
    /// contributes in proportion to its overlap, no aliasing), bilinear interpolation with
    /// half-pixel centres and clamped edges where it enlarges. Every channel, alpha included,
    /// is filtered the same way. Results are rounded half away from zero.
    public func resized(width newWidth: Int, height newHeight: Int) -> Image {
        precondition(newWidth >= 1 && newHeight >= 1, "resized: size must be positive, got \(newWidth)x\(newHeight)")
        if newWidth == width && newHeight == height { return self }
        let horizontal = ResampleWeights(source: width, target: newWidth)
        let vertical = ResampleWeights(source: height, target: newHeight)
        let c = channels
        // Pass 1 (along x): (height, newWidth, C) floats.
        var rows = [Float](repeating: 0, count: height * newWidth * c)
        samples.withUnsafeBufferPointer { src in
            rows.withUnsafeMutableBufferPointer { tmp in
                for y in 0..<height {
                    let srcRow = y * width * c, tmpRow = y * newWidth * c
                    for x in 0..<newWidth {
                        for k in horizontal.offsets[x]..<horizontal.offsets[x + 1] {
                            let w = horizontal.weights[k], from = srcRow + horizontal.indices[k] * c
                            for ch in 0..<c { tmp[tmpRow + x * c + ch] += w * Float(src[from + ch]) }
                        }
                    }
                }
            }
        }
        // Pass 2 (along y) straight into the rounded samples.
        var out = Image(width: newWidth, height: newHeight, channels: c, bitDepth: bitDepth)
        let top = Float(maxValue), rowCount = newWidth * c
        var acc = [Float](repeating: 0, count: rowCount)
        rows.withUnsafeBufferPointer { tmp in
            out.samples.withUnsafeMutableBufferPointer { dst in
                acc.withUnsafeMutableBufferPointer { acc in
                    for y in 0..<newHeight {
                        for i in 0..<rowCount { acc[i] = 0 }
                        for k in vertical.offsets[y]..<vertical.offsets[y + 1] {
                            let w = vertical.weights[k], from = vertical.indices[k] * rowCount
                            for i in 0..<rowCount { acc[i] += w * tmp[from + i] }
                        }
                        for i in 0..<rowCount {
                            dst[y * rowCount + i] = UInt16(Swift.min(Swift.max(acc[i], 0), top).rounded(.toNearestOrAwayFromZero))
                        }
                    }
                }
            }
        }
        return out
    }
}

/// One axis of a separable resampling: output i reads `indices[offsets[i]..<offsets[i+1]]` with
/// the matching `weights` (which sum to 1).
struct ResampleWeights {
    var offsets: [Int] = [0]
    var indices: [Int] = []
    var weights: [Float] = []

    init(source: Int, target: Int) {
        let scale = Double(source) / Double(target)
        for i in 0..<target {
            if target < source {
                // Area: output i covers source interval [i*scale, (i+1)*scale).
                let lo = Double(i) * scale, hi = Double(i + 1) * scale
                var j = Int(lo.rounded(.down))
                while Double(j) < hi && j < source {
                    let overlap = Swift.min(hi, Double(j + 1)) - Swift.max(lo, Double(j))
                    if overlap > 1e-12 {
                        indices.append(j)
                        weights.append(Float(overlap / scale))
                    }
                    j += 1
                }
            } else {
                // Bilinear with half-pixel centres: output centre (i + 0.5) maps to source (i + 0.5) * scale.
                let centre = Swift.min(Swift.max((Double(i) + 0.5) * scale - 0.5, 0), Double(source - 1))
                let j0 = Int(centre.rounded(.down))
                let f = centre - Double(j0)
                indices.append(j0)
                weights.append(Float(1 - f))
                if f > 0 && j0 + 1 < source {
                    indices.append(j0 + 1)
                    weights.append(Float(f))
                }
            }
            offsets.append(indices.count)
        }
    }
}
