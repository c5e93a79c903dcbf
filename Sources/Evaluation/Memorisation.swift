import Foundation
import Core
import Engine

// MARK: - Memorisation: is a synthetic image a copy of a training image?
//
// Each synthetic image is matched to its nearest training image in feature space. What counts as
// "close" comes from the training set itself: the distance from each training image to its
// nearest *other* training image of its class (the real-vs-real baseline). A generator that samples new
// images from the training distribution should rarely land closer to a training image than
// training images lie to each other; one that memorised lands at (nearly) zero.

/// One synthetic image and its nearest training image.
public struct NearestTraining: Codable, Equatable {
    /// Path of the synthetic image below its folder.
    public var synthetic: String
    /// Path of the nearest training image (in feature space) below its folder.
    public var training: String
    /// Euclidean distance between the two feature vectors.
    public var feature_distance: Double
    /// RMS difference of the two 64×64 gray network inputs, in [−1, 1] units (one 8-bit grey
    /// level is 2/255 ≈ 0.0078).
    public var pixel_distance: Double
}

/// The memorisation check's numbers (all distances in feature space unless named pixel).
public struct MemorisationReport: Codable {
    /// Training images compared against, and synthetic images checked.
    public var training_images: Int
    public var synthetic_images: Int
    /// Training images whose nearest training neighbour is a pixel copy (duplicated files).
    public var training_duplicates: Int
    /// Median of the real-vs-real baseline (each training image's distance to its nearest other of its class).
    public var real_vs_real_median: Double
    /// Flag threshold: the 5th percentile of the real-vs-real baseline.
    public var threshold_feature_distance: Double
    /// Fraction of synthetic images nearer to a training image than the baseline's median.
    public var fraction_closer_than_median: Double
    /// Fraction of synthetic images flagged: nearer than the threshold, or a pixel copy.
    public var fraction_below_threshold: Double
    /// Synthetic images whose nearest training image is the same picture up to half an 8-bit
    /// grey level (pixel RMS ≤ 1/255), whatever the feature distance.
    public var pixel_copies: Int
    public var flagged_count: Int
    /// The flagged images, closest first (at most 200; all of them are in nearest_training.csv).
    public var flagged: [NearestTraining]
    /// The closest pairs overall, shown side by side in the report.
    public var closest: [NearestTraining]
    /// Median feature distance from a synthetic image to its nearest training image.
    public var synthetic_to_training_median: Double
}

/// The check's report plus the per-image numbers behind it (for the CSV and the chart).
public struct MemorisationResult {
    public var report: MemorisationReport
    /// One entry per synthetic image, in the synthetic set's order.
    public var nearest: [NearestTraining]
    /// The real-vs-real baseline: each training image's distance to its nearest other one of its class
    /// (the nearest that is not a pixel copy).
    public var baseline: [Double]
}

/// RMS difference between two equally long pixel arrays (pixel copies are ≤ 1/255: half an
/// 8-bit grey level in [−1, 1] units).
func rmsDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "rmsDifference: \(a.count) vs \(b.count) values")
    var s = 0.0
    a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
        for i in 0..<a.count { let d = Double(a[i] - b[i]); s += d * d }
    } }
    return (s / Double(max(a.count, 1))).squareRoot()
}

/// Value at fraction `q` of a sorted array (nearest rank).
func quantile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * q).rounded(.down))))]
}

/// The real-vs-real baseline: each training image's distance to its nearest other training image
/// that is not a pixel copy (the k-th if all of them are; those images are counted as duplicates).
/// With several classes the neighbour is sought within the image's own class: when one class is
/// made from another (lesions composited into the healthy scans) every image's nearest neighbour
/// is its own twin in the other class, which pulled the threshold to nearly 0 and let copies of
/// the scans through. A class of one image uses its nearest image of any class.
func memorisationBaseline(train: ImageSet, trainFeatures: Matrix, allNeighbours: NearestNeighbours?) -> (distances: [Double], duplicates: Int) {
    let copyLimit = 1.0 / 255
    var duplicates = 0
    var baseline = [Double](repeating: 0, count: train.count)
    /// Fills the baseline of `members` (training indices) from their neighbours among `pool`.
    func measure(_ members: [Int], _ neighbours: NearestNeighbours, pool: [Int]) {
        for (local, i) in members.enumerated() {
            var value: Double?
            for j in 0..<neighbours.k where rmsDifference(train.pixels[i], train.pixels[pool[neighbours.index(local, j)]]) > copyLimit {
                if j > 0 { duplicates += 1 }
                value = neighbours.distance(local, j)
                break
            }
            if value == nil { duplicates += 1 }
            baseline[i] = value ?? neighbours.distance(local, neighbours.k - 1)
        }
    }
    let everyone = Array(0..<train.count)
    let classes = Set(train.labels)
    if classes.count <= 1 {
        measure(everyone, allNeighbours ?? nearestNeighbours(trainFeatures, in: trainFeatures, k: 5, excludingSelf: true), pool: everyone)
        return (baseline, duplicates)
    }
    var singletons: [Int] = []
    for label in classes.sorted() {
        let members = everyone.filter { train.labels[$0] == label }
        guard members.count >= 2 else { singletons += members; continue }
        let columns = trainFeatures.columns
        let features = Matrix(rows: members.count, columns: columns, values: members.flatMap { trainFeatures.row($0) })
        measure(members, nearestNeighbours(features, in: features, k: 5, excludingSelf: true), pool: members)
    }
    if !singletons.isEmpty {
        let all = allNeighbours ?? nearestNeighbours(trainFeatures, in: trainFeatures, k: 5, excludingSelf: true)
        let rows = NearestNeighbours(k: all.k, distances: singletons.flatMap { i in (0..<all.k).map { all.distance(i, $0) } },
                                     indices: singletons.flatMap { i in (0..<all.k).map { all.index(i, $0) } })
        measure(singletons, rows, pool: everyone)
    }
    return (baseline, duplicates)
}

/// Runs the memorisation check. `trainNeighbours` may pass the training set's nearest
/// neighbours among itself (self excluded) when they were already computed (any k ≥ 1).
/// Training images that are pixel copies of each other (a duplicated file) are skipped when
/// the baseline is formed, else every duplicate would pull the threshold to 0; they are counted
/// in `training_duplicates`. Both sets need at least one image, and the training set two.
/// `syntheticNeighbours` may likewise pass each synthetic row's nearest training row.
public func memorisationCheck(train: ImageSet, trainFeatures: Matrix, synthetic: ImageSet, syntheticFeatures: Matrix,
                              trainNeighbours: NearestNeighbours? = nil, syntheticNeighbours: NearestNeighbours? = nil) -> MemorisationResult {
    precondition(train.count >= 2 && synthetic.count >= 1, "memorisationCheck: needs ≥ 2 training and ≥ 1 synthetic images")
    let copyLimit = 1.0 / 255
    let (baseline, duplicates) = memorisationBaseline(train: train, trainFeatures: trainFeatures, allNeighbours: trainNeighbours)
    let sortedBaseline = baseline.sorted()
    let threshold = quantile(sortedBaseline, 0.05), median = quantile(sortedBaseline, 0.5)
    let nn = syntheticNeighbours ?? nearestNeighbours(syntheticFeatures, in: trainFeatures, k: 1)
    var nearest: [NearestTraining] = []
    nearest.reserveCapacity(synthetic.count)
    for i in 0..<synthetic.count {
        let t = nn.index(i)
        nearest.append(NearestTraining(synthetic: synthetic.names[i], training: train.names[t], feature_distance: nn.distance(i),
                                       pixel_distance: rmsDifference(synthetic.pixels[i], train.pixels[t])))
    }
    // Pixel copies first, then by feature distance.
    func key(_ r: NearestTraining) -> Double { r.pixel_distance <= copyLimit ? -1 : r.feature_distance }
    let flagged = nearest.filter { $0.feature_distance < threshold || $0.pixel_distance <= copyLimit }.sorted { key($0) < key($1) }
    let byDistance = nearest.sorted { $0.feature_distance < $1.feature_distance }
    let n = Double(synthetic.count)
    let report = MemorisationReport(
        training_images: train.count, synthetic_images: synthetic.count, training_duplicates: duplicates,
        real_vs_real_median: median, threshold_feature_distance: threshold,
        fraction_closer_than_median: Double(nearest.filter { $0.feature_distance < median }.count) / n,
        fraction_below_threshold: Double(flagged.count) / n,
        pixel_copies: nearest.filter { $0.pixel_distance <= copyLimit }.count,
        flagged_count: flagged.count, flagged: Array(flagged.prefix(200)), closest: Array(byDistance.prefix(8)),
        synthetic_to_training_median: byDistance[byDistance.count / 2].feature_distance)
    return MemorisationResult(report: report, nearest: nearest, baseline: baseline)
}

/// CSV of every synthetic image's nearest training image (RFC 4180 quoting).
func nearestTrainingCSV(_ rows: [NearestTraining]) -> String {
    func quote(_ s: String) -> String { s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
    var out = "synthetic,nearest_training,feature_distance,pixel_rms\n"
    for r in rows { out += "\(quote(r.synthetic)),\(quote(r.training)),\(r.feature_distance),\(r.pixel_distance)\n" }
    return out
}
