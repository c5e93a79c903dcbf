import Core
import Engine
import Imaging

// MARK: - Allowed region

/// The automatic allowed region of a scan: gray above Otsu's threshold, the largest 8-connected
/// component (the body or organ), holes filled (ventricles, bowel gas stay allowed), then eroded
/// by `margin` pixels so lesions keep away from the edge of the anatomy.
public func automaticRegion(_ image: Image, margin: Float) -> BinaryMask {
    let gray = image.grayPlane()
    let body = fillHoles(largestComponent(BinaryMask(gray, above: otsuThreshold(gray))))
    return erode(withoutBorder(body), radius: margin)
}

/// A region mask read from an image (nonzero = allowed); errors if its size differs from the scan's.
public func regionFromMask(_ maskImage: Image, path: String, width: Int, height: Int) throws -> BinaryMask {
    guard maskImage.width == width && maskImage.height == height else {
        throw MedSynthError(file: path, "mismatched mask size: region mask is \(maskImage.width)x\(maskImage.height), "
                            + "the scan is \(width)x\(height)")
    }
    return withoutBorder(BinaryMask(maskImage.grayPlane(), above: 0))
}

/// `mask` with its outermost ring cleared: those pixels have no outside neighbour for the Poisson
/// boundary, and clearing them lets the distance transform treat the image edge as outside.
func withoutBorder(_ mask: BinaryMask) -> BinaryMask {
    var out = mask
    let w = mask.width, h = mask.height
    for x in 0..<w { out.bits[x] = 0; out.bits[(h - 1) * w + x] = 0 }
    for y in 0..<h { out.bits[y * w] = 0; out.bits[y * w + w - 1] = 0 }
    return out
}

// MARK: - Placement

/// Picks, from `random`, a top-left corner for `mask` so that every mask pixel lies in `region`,
/// uniformly among the positions that provably fit (the mask's reference pixel at distance more
/// than the mask's radius from the region's outside); when there are none, tries up to
/// `attempts` random region pixels with an exact pixel-by-pixel check. Nil when nothing fits.
func placeMask(_ mask: BinaryMask, in region: BinaryMask, random: inout RandomStream, attempts: Int = 400) -> (x: Int, y: Int)? {
    var points: [(Int, Int)] = []
    var sx = 0.0, sy = 0.0
    for y in 0..<mask.height { for x in 0..<mask.width where mask[x, y] { points.append((x, y)); sx += Double(x); sy += Double(y) } }
    guard !points.isEmpty else { return nil }
    // Reference pixel: the rounded centroid; radius: the farthest mask pixel from it.
    let rx = Int((sx / Double(points.count)).rounded()), ry = Int((sy / Double(points.count)).rounded())
    var radius2: Float = 0
    for (x, y) in points { radius2 = max(radius2, Float((x - rx) * (x - rx) + (y - ry) * (y - ry))) }
    let distance2 = squaredDistanceToOutside(region)
    var safe: [Int] = []
    for i in distance2.indices where distance2[i] > radius2 { safe.append(i) }
    if !safe.isEmpty {
        let t = safe[random.int(below: safe.count)]
        return (t % region.width - rx, t / region.width - ry)
    }
    var inside: [Int] = []
    for i in region.bits.indices where region.bits[i] != 0 { inside.append(i) }
    if inside.isEmpty { return nil }
    for _ in 0..<attempts {
        let t = inside[random.int(below: inside.count)]
        let ox = t % region.width - rx, oy = t / region.width - ry
        if maskFits(points, ox, oy, region) { return (ox, oy) }
    }
    return nil
}

func maskFits(_ points: [(Int, Int)], _ ox: Int, _ oy: Int, _ region: BinaryMask) -> Bool {
    for (x, y) in points {
        let tx = ox + x, ty = oy + y
        if tx < 0 || ty < 0 || tx >= region.width || ty >= region.height || !region[tx, ty] { return false }
    }
    return true
}

/// Removes from `region` every pixel within `spacing` pixels (Euclidean) of `pixels`, so later
/// lesions keep that distance from this one.
func reserve(_ pixels: [Int], spacing: Int, in region: inout BinaryMask) {
    guard !pixels.isEmpty else { return }
    let w = region.width, h = region.height
    var x0 = Int.max, y0 = Int.max, x1 = Int.min, y1 = Int.min
    for p in pixels { x0 = min(x0, p % w); x1 = max(x1, p % w); y0 = min(y0, p / w); y1 = max(y1, p / w) }
    let s = max(0, spacing)
    let wx0 = max(0, x0 - s - 1), wy0 = max(0, y0 - s - 1), wx1 = min(w - 1, x1 + s + 1), wy1 = min(h - 1, y1 + s + 1)
    var window = BinaryMask(width: wx1 - wx0 + 1, height: wy1 - wy0 + 1)
    for p in pixels { window[p % w - wx0, p / w - wy0] = true }
    let grown = dilate(window, radius: Float(s))
    for y in 0..<window.height {
        for x in 0..<window.width where grown[x, y] { region[wx0 + x, wy0 + y] = false }
    }
}
