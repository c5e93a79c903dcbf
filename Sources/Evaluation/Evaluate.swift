import Foundation
import Engine
import Layers
import Imaging

// MARK: - The evaluation run: features, metrics, memorisation, per-class results, report

public struct EvaluationRequest {
    public var real: URL
    public var synthetic: URL
    /// The generator's training set, for the memorisation check (default: `real`).
    public var train: URL?
    public var out: URL
    public var featuresOut: URL?
    public var featureWeights: URL?
    public var seed: UInt64 = 0
    public var k = 5
    public var kidSubsets = 100
    public init(real: URL, synthetic: URL, out: URL) { self.real = real; self.synthetic = synthetic; self.out = out }
}

public struct SetMetrics: Codable {
    public var real_images: Int
    public var synthetic_images: Int
    public var fid: Double
    public var kid_mean: Double
    public var kid_std: Double
    public var prdc: PRDC
}

public struct NearestTraining: Codable {
    public var synthetic: String
    public var training: String
    public var feature_distance: Double
    public var pixel_distance: Double
}

public struct MemorisationReport: Codable {
    /// Flag threshold: the 5th percentile of training-vs-training nearest-neighbour feature distances.
    public var threshold_feature_distance: Double
    public var real_vs_real_median: Double
    public var fraction_below_threshold: Double
    public var flagged: [NearestTraining]
    public var closest: [NearestTraining]
}

public struct EvaluationReport: Codable {
    public var version = MedSynthVersion.current
    public var feature_network: String
    public var feature_dimension: Int
    public var settings: [String: String]
    public var overall: SetMetrics
    public var per_class: [String: SetMetrics]
    public var intensity_w1: Double
    public var memorisation: MemorisationReport
    public var warnings: [String]
}

func setMetrics(real: Matrix, synthetic: Matrix, request: EvaluationRequest) throws -> SetMetrics {
    let fid = try frechetDistance(real, synthetic)
    let kid = kernelInceptionDistance(real, synthetic, subsets: request.kidSubsets, seed: request.seed)
    let prdc = precisionRecallDensityCoverage(real: real, fake: synthetic, k: request.k)
    return SetMetrics(real_images: real.rows, synthetic_images: synthetic.rows, fid: fid, kid_mean: kid.mean, kid_std: kid.std, prdc: prdc)
}

func subset(_ m: Matrix, rows: [Int]) -> Matrix {
    Matrix(rows: rows.count, columns: m.columns, values: rows.flatMap { Array(m.row($0)) })
}

/// Memorisation: each synthetic image's nearest training image in feature space (and its pixel
/// distance, RMS over the 64×64 input), against the training set's own nearest-neighbour distances.
func memorisation(train: ImageSet, trainFeatures: Matrix, synthetic: ImageSet, syntheticFeatures: Matrix) -> MemorisationReport {
    let tt = pairwiseDistances(trainFeatures, trainFeatures)
    let baseline = kthNeighbourRadii(tt, k: 1).sorted()
    let threshold = baseline.isEmpty ? 0 : baseline[max(0, Int(Double(baseline.count) * 0.05) - 0)]
    let median = baseline.isEmpty ? 0 : baseline[baseline.count / 2]
    let st = pairwiseDistances(syntheticFeatures, trainFeatures)
    var pairs: [NearestTraining] = []
    for i in 0..<synthetic.count {
        var best = 0
        for j in 0..<train.count where st[i, j] < st[i, best] { best = j }
        let a = synthetic.pixels[i], b = train.pixels[best]
        let pixel = (zip(a, b).map { Double(($0 - $1) * ($0 - $1)) }.reduce(0, +) / Double(a.count)).squareRoot()
        pairs.append(NearestTraining(synthetic: synthetic.names[i], training: train.names[best], feature_distance: st[i, best], pixel_distance: pixel))
    }
    let flagged = pairs.filter { $0.feature_distance < threshold }
    return MemorisationReport(threshold_feature_distance: threshold, real_vs_real_median: median,
                              fraction_below_threshold: Double(flagged.count) / Double(max(pairs.count, 1)),
                              flagged: flagged.sorted { $0.feature_distance < $1.feature_distance },
                              closest: Array(pairs.sorted { $0.feature_distance < $1.feature_distance }.prefix(8)))
}

/// Runs every metric and writes report.json and report.html in `out` (and .npy features when asked).
@discardableResult
public func evaluate(_ request: EvaluationRequest, progress style: ProgressStyle = .human) throws -> EvaluationReport {
    let reporter = ProgressReporter(label: "evaluate", total: 4, unit: "stage", style: style)
    let real = try ImageSet(root: request.real)
    let synthetic = try ImageSet(root: request.synthetic)
    let train = try request.train.map { try ImageSet(root: $0) } ?? real
    if real.channels != synthetic.channels, real.channels.count == 1, synthetic.channels.count == 1 {
        throw MedSynthError(file: request.synthetic.path, "synthetic images have \(synthetic.channels.first!) channel(s) but the real ones have \(real.channels.first!); convert one set first (medsynth convert --channels)")
    }
    let network = try request.featureWeights.map { try FeatureNetwork(weights: $0) } ?? FeatureNetwork()
    var warnings: [String] = []
    for (name, set) in [("real", real), ("synthetic", synthetic)] where set.count <= network.dimension {
        warnings.append("\(name) set has \(set.count) images for \(network.dimension) feature dimensions: its covariance is rank-deficient; the Fréchet distance is still computed as pytorch-fid does, but it is biased at this size — compare KID instead")
    }
    for w in warnings { reporter.note("warning: \(w)") }
    reporter.update(done: 1, items: real.count + synthetic.count)
    let realFeatures = real.features(network), syntheticFeatures = synthetic.features(network)
    let trainFeatures = request.train == nil ? realFeatures : train.features(network)
    reporter.update(done: 2, items: real.count + synthetic.count + (request.train == nil ? 0 : train.count))
    let overall = try setMetrics(real: realFeatures, synthetic: syntheticFeatures, request: request)
    var perClass: [String: SetMetrics] = [:]
    if real.classNames.count > 1 || synthetic.classNames.count > 1 {
        for name in Set(real.classNames).intersection(synthetic.classNames).sorted() {
            let ri = real.labels.indices.filter { real.classNames[real.labels[$0]] == name }
            let si = synthetic.labels.indices.filter { synthetic.classNames[synthetic.labels[$0]] == name }
            guard ri.count >= 2, si.count >= 2 else { continue }
            perClass[name] = try setMetrics(real: subset(realFeatures, rows: ri), synthetic: subset(syntheticFeatures, rows: si), request: request)
        }
    }
    let memo = memorisation(train: train, trainFeatures: trainFeatures, synthetic: synthetic, syntheticFeatures: syntheticFeatures)
    let w1 = histogramWasserstein(real.pixels.flatMap { $0 }, synthetic.pixels.flatMap { $0 })
    reporter.update(done: 3, items: real.count + synthetic.count)
    let report = EvaluationReport(
        feature_network: network.source, feature_dimension: network.dimension,
        settings: ["real": request.real.path, "synthetic": request.synthetic.path, "train": (request.train ?? request.real).path,
                   "k": String(request.k), "kid_subsets": String(request.kidSubsets), "seed": String(request.seed),
                   "input": "64x64 gray in [-1,1]"],
        overall: overall, per_class: perClass, intensity_w1: w1, memorisation: memo, warnings: warnings)
    try FileManager.default.createDirectory(at: request.out, withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try writeAtomically(try encoder.encode(report), to: request.out.appendingPathComponent("report.json"))
    if let featuresOut = request.featuresOut {
        try FileManager.default.createDirectory(at: featuresOut, withIntermediateDirectories: true)
        try writeNPY(realFeatures, to: featuresOut.appendingPathComponent("real_features.npy"))
        try writeNPY(syntheticFeatures, to: featuresOut.appendingPathComponent("synthetic_features.npy"))
    }
    try writeHTMLReport(report, real: real, synthetic: synthetic, train: train, to: request.out.appendingPathComponent("report.html"))
    reporter.update(done: 4, items: real.count + synthetic.count)
    return report
}
