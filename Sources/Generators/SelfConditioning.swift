import Foundation
import Core
import Imaging

// MARK: - Self-conditioning (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs")
//
// A GAN trained on a few hundred images drops whole kinds of image (on mni64: most sagittal and
// axial slices). Clustering each class's images and conditioning G and D on the cluster makes D
// ask for every cluster, so G cannot leave one out. The paper clusters D's features and
// re-clusters during training; here the clusters are fixed before training, from the images'
// 16×16 block means, so a run and its resumption see the same labels without extra state.

/// The self-conditioning labels of a dataset: for every image, class · K + its cluster, and for
/// every such label its share of the class's images (the prior a sample's cluster is drawn from).
public struct SelfConditioningClusters: Equatable {
    public let clustersPerClass: Int
    public let labels: [Int]
    public let weights: [Float]
}

/// Lloyd's k-means runs per class; the lowest within-cluster sum of squares wins.
let selfConditioningRestarts = 4
let selfConditioningIterations = 50

/// Clusters every class of `dataset` (the whole set as one class when `conditional` is false)
/// into `clustersPerClass` groups with k-means++ (Arthur & Vassilvitskii 2007) on 16×16 block
/// means. Deterministic in `seed`; a class with fewer images than clusters leaves the rest empty
/// (weight 0, never sampled).
public func selfConditioningClusters(_ dataset: ImageFolderDataset, clustersPerClass k: Int, conditional: Bool,
                                     seed: UInt64) throws -> SelfConditioningClusters {
    precondition(k >= 1, "selfConditioningClusters: k must be positive")
    let classes = conditional ? dataset.classNames.count : 1
    let block = max(1, dataset.imageSize / 16), grid = dataset.imageSize / block
    var descriptors: [[Double]] = []
    descriptors.reserveCapacity(dataset.count)
    for index in 0..<dataset.count {
        descriptors.append(blockMeans(try dataset.tensorData(at: index), channels: dataset.channels, side: dataset.imageSize,
                                      block: block, grid: grid))
    }
    var labels = [Int](repeating: 0, count: dataset.count)
    var weights = [Float](repeating: 0, count: classes * k)
    for c in 0..<classes {
        let members = (0..<dataset.count).filter { !conditional || dataset.entries[$0].classIndex == c }
        guard !members.isEmpty else { continue }
        let assignment = kMeans(members.map { descriptors[$0] }, k: k, stream: RandomStream(seed: seed).split(.selfConditioning).split(UInt64(c)))
        var counts = [Int](repeating: 0, count: k)
        for (member, cluster) in zip(members, assignment) {
            labels[member] = c * k + cluster
            counts[cluster] += 1
        }
        for j in 0..<k { weights[c * k + j] = Float(counts[j]) / Float(members.count) }
    }
    return SelfConditioningClusters(clustersPerClass: k, labels: labels, weights: weights)
}

/// Channel-averaged means of block×block squares on a grid×grid lattice from the top left.
func blockMeans(_ chw: [Float], channels: Int, side: Int, block: Int, grid: Int) -> [Double] {
    var out = [Double](repeating: 0, count: grid * grid)
    let scale = 1 / Double(channels * block * block)
    for ch in 0..<channels {
        for y in 0..<grid * block {
            for x in 0..<grid * block { out[(y / block) * grid + x / block] += Double(chw[(ch * side + y) * side + x]) }
        }
    }
    return out.map { $0 * scale }
}

/// Cluster index of every point: k-means++ seeding, then Lloyd iterations until no point moves,
/// best of `selfConditioningRestarts`. With fewer distinct points than k some clusters stay empty.
func kMeans(_ points: [[Double]], k: Int, stream: RandomStream) -> [Int] {
    let n = points.count
    func distance(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { let d = a[i] - b[i]; s += d * d }
        return s
    }
    var best: (cost: Double, assignment: [Int])? = nil
    for restart in 0..<selfConditioningRestarts {
        var draws = stream.split(UInt64(restart))
        var centres = [points[draws.int(below: n)]]
        var nearest = points.map { distance($0, centres[0]) }
        while centres.count < min(k, n) {
            let total = nearest.reduce(0, +)
            guard total > 0 else { break }   // every point sits on a centre already
            var u = draws.uniformDouble() * total, pick = n - 1
            for (i, d) in nearest.enumerated() where d > 0 {
                if u < d { pick = i; break }
                u -= d
            }
            centres.append(points[pick])
            for i in 0..<n { nearest[i] = min(nearest[i], distance(points[i], points[pick])) }
        }
        var assignment = [Int](repeating: -1, count: n)
        for _ in 0..<selfConditioningIterations {
            var moved = false
            for i in 0..<n {
                var bestCentre = 0, bestDistance = Double.infinity
                for (j, centre) in centres.enumerated() {
                    let d = distance(points[i], centre)
                    if d < bestDistance { bestDistance = d; bestCentre = j }
                }
                if assignment[i] != bestCentre { assignment[i] = bestCentre; moved = true }
            }
            if !moved { break }
            // New centres in one pass over the points; an empty cluster keeps its centre.
            var sums = [[Double]](repeating: [Double](repeating: 0, count: points[0].count), count: centres.count)
            var sizes = [Int](repeating: 0, count: centres.count)
            for i in 0..<n {
                sizes[assignment[i]] += 1
                for d in sums[assignment[i]].indices { sums[assignment[i]][d] += points[i][d] }
            }
            for j in centres.indices where sizes[j] > 0 { centres[j] = sums[j].map { $0 / Double(sizes[j]) } }
        }
        let cost = (0..<n).reduce(0.0) { $0 + distance(points[$1], centres[assignment[$1]]) }
        if best == nil || cost < best!.cost { best = (cost, assignment) }
    }
    return best!.assignment
}
