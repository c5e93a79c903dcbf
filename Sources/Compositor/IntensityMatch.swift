// MARK: - Intensity matching

/// How a patch's intensities are adapted to the background before blending.
public enum IntensityMatch: String, Sendable, CaseIterable {
    /// Lesion mean set to the local background mean times (1 + contrast), the patch's
    /// surroundings to the local mean, spread scaled by the same ratio of levels.
    case local
    /// The patch as it is (only rescaled between 8- and 16-bit units).
    case none
}

/// Mean and standard deviation of `values[i]` over the indices where `include(i)` holds.
func meanAndSpread(_ values: [Float], where include: (Int) -> Bool) -> (mean: Double, std: Double, count: Int) {
    var sum = 0.0, sumSquares = 0.0, n = 0
    for i in values.indices where include(i) {
        let v = Double(values[i])
        sum += v; sumSquares += v * v; n += 1
    }
    if n == 0 { return (0, 0, 0) }
    let mean = sum / Double(n)
    return (mean, max(0, sumSquares / Double(n) - mean * mean).squareRoot(), n)
}

/// Adapts `planes` (a transformed patch in target units, same size as `mask`) to the background
/// under the patch rectangle at `(x, y)`, and returns the lesion's contrast against that local
/// background, (mean lesion − mean background) / mean background, measured on the gray average.
///
/// With `.local`, per channel: lesion pixels L ↦ μ_b (1 + C) + k (L − μ_L) and surroundings
/// S ↦ μ_b + k (S − μ_S), where C is `contrast` (or, when nil, the patch's own contrast
/// (μ_L − μ_S)/μ_S, or 0 without surroundings) times `jitter`. The gain k = μ_b / μ_S (without
/// surroundings μ_b (1 + C) / μ_L) scales the spread with the level, so texture keeps its size
/// relative to the tissue. (Matching σ_S to σ_b instead blows up patches with near-flat
/// surroundings, such as procedural ones, into the anatomy's much larger spread.)
func matchIntensity(_ planes: inout [Plane], mask: BinaryMask, background: [Plane], x: Int, y: Int,
                    match: IntensityMatch, contrast: Double?, jitter: Double) -> Double {
    let w = mask.width, h = mask.height
    let tw = background[0].width, th = background[0].height
    // Local background: the target pixels under the patch rectangle.
    var local: [Int] = []
    for yy in max(0, y)..<min(th, y + h) {
        for xx in max(0, x)..<min(tw, x + w) { local.append(yy * tw + xx) }
    }
    let isLesion = { (i: Int) in mask.bits[i] != 0 }
    let isSurround = { (i: Int) in mask.bits[i] == 0 }
    func grayMean(_ ps: [Plane], _ indices: (Int) -> Bool) -> Double {
        ps.map { meanAndSpread($0.values, where: indices).mean }.reduce(0, +) / Double(ps.count)
    }
    func localStats(_ plane: Plane) -> (mean: Double, std: Double) {
        var sum = 0.0, sumSquares = 0.0
        for i in local { let v = Double(plane.values[i]); sum += v; sumSquares += v * v }
        let n = Double(max(1, local.count)), mean = sum / n
        return (mean, max(0, sumSquares / n - mean * mean).squareRoot())
    }
    let backgroundMean = background.map { localStats($0).mean }.reduce(0, +) / Double(background.count)
    if match == .local {
        let surroundCount = mask.bits.count - mask.count
        let lesionMean = grayMean(planes, isLesion), surroundMean = grayMean(planes, isSurround)
        var c = contrast ?? (surroundCount > 0 && surroundMean > 0 ? (lesionMean - surroundMean) / surroundMean : 0)
        c *= jitter
        for ch in planes.indices {
            let b = localStats(background[ch])
            let l = meanAndSpread(planes[ch].values, where: isLesion)
            let s = meanAndSpread(planes[ch].values, where: isSurround)
            let gain = s.count > 0 && s.mean > 0 ? b.mean / s.mean : (l.mean > 0 ? b.mean * (1 + c) / l.mean : 1)
            let lesionTarget = b.mean * (1 + c)
            planes[ch].values.withUnsafeMutableBufferPointer { v in
                for i in v.indices {
                    v[i] = mask.bits[i] != 0
                        ? Float(lesionTarget + gain * (Double(v[i]) - l.mean))
                        : Float(b.mean + gain * (Double(v[i]) - s.mean))
                }
            }
        }
    }
    let achieved = grayMean(planes, isLesion)
    return backgroundMean > 0 ? (achieved - backgroundMean) / backgroundMean : 0
}
