import Core
import Engine

// MARK: - Binary mask

/// A binary image (1 inside, 0 outside), row-major. The compositor's regions, lesion masks and
/// blend domains are all binary masks.
public struct BinaryMask: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// `height * width` entries, each 0 or 1.
    public var bits: [UInt8]

    public init(width: Int, height: Int, bits: [UInt8]) {
        precondition(bits.count == width * height, "BinaryMask: \(bits.count) entries for \(width)x\(height)")
        self.width = width
        self.height = height
        self.bits = bits
    }

    /// An all-`value` mask.
    public init(width: Int, height: Int, filled value: Bool = false) {
        self.init(width: width, height: height, bits: [UInt8](repeating: value ? 1 : 0, count: width * height))
    }

    /// Pixels of `plane` whose value is above `threshold`.
    public init(_ plane: Plane, above threshold: Float) {
        self.init(width: plane.width, height: plane.height, bits: plane.values.map { $0 > threshold ? 1 : 0 })
    }

    @inlinable
    public subscript(x: Int, y: Int) -> Bool {
        get { bits[y * width + x] != 0 }
        set { bits[y * width + x] = newValue ? 1 : 0 }
    }

    /// Number of pixels inside.
    public var count: Int { bits.reduce(0) { $0 + Int($1) } }

    /// The smallest rectangle holding every inside pixel, or nil for an empty mask.
    public var boundingBox: PixelRect? {
        var x0 = width, y0 = height, x1 = -1, y1 = -1
        for y in 0..<height {
            let row = y * width
            for x in 0..<width where bits[row + x] != 0 {
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
            }
        }
        return x1 < 0 ? nil : PixelRect(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    }

    /// The complement.
    public var inverted: BinaryMask {
        BinaryMask(width: width, height: height, bits: bits.map { 1 &- $0 })
    }

    /// The sub-mask in `rect` (which must lie inside the mask).
    public func cropped(to rect: PixelRect) -> BinaryMask {
        var out = BinaryMask(width: rect.width, height: rect.height)
        for y in 0..<rect.height {
            for x in 0..<rect.width { out.bits[y * rect.width + x] = bits[(rect.y + y) * width + rect.x + x] }
        }
        return out
    }
}

/// An axis-aligned rectangle of pixels.
public struct PixelRect: Equatable, Sendable, Codable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }
}

// MARK: - Otsu threshold

/// Otsu's threshold (Otsu 1979, "A threshold selection method from gray-level histograms"):
/// the cut that maximises the between-class variance of a 256-bin histogram over the plane's
/// value range. Pixels strictly above the returned value form the bright class.
public func otsuThreshold(_ plane: Plane) -> Float {
    guard let lo = plane.values.min(), let hi = plane.values.max(), hi > lo else {
        return plane.values.first ?? 0
    }
    let bins = 256
    var histogram = [Double](repeating: 0, count: bins)
    let scale = Float(bins) / (hi - lo)
    for v in plane.values { histogram[min(bins - 1, Int((v - lo) * scale))] += 1 }
    let total = Double(plane.values.count)
    var sumAll = 0.0
    for i in 0..<bins { sumAll += Double(i) * histogram[i] }
    var weightBelow = 0.0, sumBelow = 0.0, best = -1.0, bestBin = 0
    for i in 0..<(bins - 1) {
        weightBelow += histogram[i]
        sumBelow += Double(i) * histogram[i]
        let weightAbove = total - weightBelow
        if weightBelow == 0 || weightAbove == 0 { continue }
        let meanBelow = sumBelow / weightBelow, meanAbove = (sumAll - sumBelow) / weightAbove
        // Between-class variance σ_B² = w0 w1 (μ0 − μ1)² (Otsu's eq. 18, up to the constant total²).
        let between = weightBelow * weightAbove * (meanBelow - meanAbove) * (meanBelow - meanAbove)
        if between > best { best = between; bestBin = i }
    }
    // Upper edge of the last bin of the dark class.
    return lo + Float(bestBin + 1) / scale
}

// MARK: - Connected components

/// Labels the 8-connected components of `mask` (labels 1...n, 0 outside) and returns
/// the label image with each component's pixel count (index 0 unused).
public func connectedComponents(_ mask: BinaryMask) -> (labels: [Int32], sizes: [Int]) {
    let w = mask.width, h = mask.height
    var labels = [Int32](repeating: 0, count: w * h)
    var sizes = [0]
    var stack: [Int] = []
    for start in 0..<(w * h) where mask.bits[start] != 0 && labels[start] == 0 {
        let label = Int32(sizes.count)
        var size = 0
        labels[start] = label
        stack.append(start)
        while let p = stack.popLast() {
            size += 1
            let px = p % w, py = p / w
            for dy in -1...1 {
                let y = py + dy
                if y < 0 || y >= h { continue }
                for dx in -1...1 {
                    let x = px + dx
                    if x < 0 || x >= w { continue }
                    let q = y * w + x
                    if mask.bits[q] != 0 && labels[q] == 0 { labels[q] = label; stack.append(q) }
                }
            }
        }
        sizes.append(size)
    }
    return (labels, sizes)
}

/// The largest 8-connected component of `mask` (empty if `mask` is empty).
public func largestComponent(_ mask: BinaryMask) -> BinaryMask {
    let (labels, sizes) = connectedComponents(mask)
    guard sizes.count > 1 else { return mask }
    let best = Int32(sizes.indices.dropFirst().max { sizes[$0] < sizes[$1] }!)
    return BinaryMask(width: mask.width, height: mask.height, bits: labels.map { $0 == best ? 1 : 0 })
}

/// `mask` with its holes filled: background pixels not 4-connected to the image border become inside.
public func fillHoles(_ mask: BinaryMask) -> BinaryMask {
    let w = mask.width, h = mask.height
    var outside = [UInt8](repeating: 0, count: w * h)
    var stack: [Int] = []
    func seed(_ p: Int) { if mask.bits[p] == 0 && outside[p] == 0 { outside[p] = 1; stack.append(p) } }
    for x in 0..<w { seed(x); seed((h - 1) * w + x) }
    for y in 0..<h { seed(y * w); seed(y * w + w - 1) }
    while let p = stack.popLast() {
        let x = p % w, y = p / w
        if x > 0 { seed(p - 1) }
        if x < w - 1 { seed(p + 1) }
        if y > 0 { seed(p - w) }
        if y < h - 1 { seed(p + w) }
    }
    return BinaryMask(width: w, height: h, bits: outside.map { 1 &- $0 })
}

// MARK: - Euclidean distance transform

/// Squared Euclidean distance from every pixel to the nearest pixel outside `mask` (0 outside),
/// by the exact separable algorithm of Felzenszwalb & Huttenlocher (2012, "Distance transforms of
/// sampled functions", Algorithm 1: lower envelope of parabolas, run on columns then rows).
/// Pixels beyond the image edge do not count as outside; a full mask gives `.infinity`.
public func squaredDistanceToOutside(_ mask: BinaryMask) -> [Float] {
    let w = mask.width, h = mask.height
    let far = Float.infinity
    var grid = mask.bits.map { $0 != 0 ? far : 0 }
    let n = max(w, h)
    var f = [Float](repeating: 0, count: n), d = [Float](repeating: 0, count: n)
    var v = [Int](repeating: 0, count: n), z = [Float](repeating: 0, count: n + 1)
    grid.withUnsafeMutableBufferPointer { g in
        // Columns.
        for x in 0..<w {
            for y in 0..<h { f[y] = g[y * w + x] }
            distanceTransform1D(&f, &d, &v, &z, h)
            for y in 0..<h { g[y * w + x] = d[y] }
        }
        // Rows.
        for y in 0..<h {
            for x in 0..<w { f[x] = g[y * w + x] }
            distanceTransform1D(&f, &d, &v, &z, w)
            for x in 0..<w { g[y * w + x] = d[x] }
        }
    }
    return grid
}

/// One-dimensional squared-distance transform of `f` (FH 2012, Algorithm 1); result in `d`.
private func distanceTransform1D(_ f: inout [Float], _ d: inout [Float], _ v: inout [Int], _ z: inout [Float], _ n: Int) {
    // Parabolas rooted at +∞ never form part of the envelope; skip them.
    var k = -1
    for q in 0..<n where f[q].isFinite {
        if k < 0 {
            k = 0; v[0] = q; z[0] = -.infinity; z[1] = .infinity
            continue
        }
        var s: Float
        repeat {
            let p = v[k]
            s = ((f[q] + Float(q * q)) - (f[p] + Float(p * p))) / Float(2 * (q - p))
            if s <= z[k] { k -= 1 } else { break }
        } while k >= 0
        k += 1
        v[k] = q; z[k] = k == 0 ? -.infinity : s; z[k + 1] = .infinity
    }
    if k < 0 {
        for q in 0..<n { d[q] = .infinity }
        return
    }
    k = 0
    for q in 0..<n {
        while z[k + 1] < Float(q) { k += 1 }
        let delta = Float(q - v[k])
        d[q] = delta * delta + f[v[k]]
    }
}

// MARK: - Morphology

/// Erosion by a Euclidean disk of radius `radius`: keeps pixels more than `radius` from the outside.
/// The image edge does not erode (a region touching it stays touching it).
public func erode(_ mask: BinaryMask, radius: Float) -> BinaryMask {
    if radius <= 0 { return mask }
    let d2 = squaredDistanceToOutside(mask)
    let r2 = radius * radius
    return BinaryMask(width: mask.width, height: mask.height, bits: d2.map { $0 > r2 ? 1 : 0 })
}

/// Dilation by a Euclidean disk of radius `radius`: adds pixels within `radius` of the mask.
public func dilate(_ mask: BinaryMask, radius: Float) -> BinaryMask {
    if radius <= 0 { return mask }
    let d2 = squaredDistanceToOutside(mask.inverted)
    let r2 = radius * radius
    return BinaryMask(width: mask.width, height: mask.height, bits: d2.map { $0 <= r2 ? 1 : 0 })
}

/// Erosion by a 3×3 square repeated `iterations` times, with pixels beyond the edge counted as
/// outside: what OpenCV's `erode(mask, mask, Mat(), Point(-1,-1), iterations)` gives for a mask
/// whose border is already zero (as in `seamlessClone`).
public func erodeSquare(_ mask: BinaryMask, iterations: Int) -> BinaryMask {
    var current = mask
    let w = mask.width, h = mask.height
    for _ in 0..<iterations {
        var next = BinaryMask(width: w, height: h)
        for y in 1..<max(1, h - 1) {
            for x in 1..<max(1, w - 1) {
                var all = true
                for dy in -1...1 where all {
                    for dx in -1...1 where current.bits[(y + dy) * w + x + dx] == 0 { all = false; break }
                }
                if all { next.bits[y * w + x] = 1 }
            }
        }
        current = next
    }
    return current
}
