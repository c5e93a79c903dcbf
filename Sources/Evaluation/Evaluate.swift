import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - The evaluation run: features, metrics, memorisation, per-class results, utility, report

/// What to evaluate and how; the CLI fills it from its flags.
public struct EvaluationRequest {
    public var real: URL
    public var synthetic: URL
    /// The generator's training set: the memorisation check's reference and the utility
    /// classifier's real training data (default: `real`).
    public var train: URL?
    /// Held-out real images for the utility test; the test runs when this is set.
    public var test: URL?
    public var out: URL
    public var featuresOut: URL?
    /// Element type of the .npy feature files (the network computes in float32).
    public var featuresType: NPYType = .float32
    public var featureWeights: URL?
    /// Seed of KID's subsets and of the utility classifiers.
    public var seed: UInt64 = 0
    /// k of precision/recall/density/coverage.
    public var k = 5
    public var kidSubsets = 100
    /// KID subset size (default min(1000, n)).
    public var kidSubsetSize: Int?
    public var utility = UtilitySettings()
    public init(real: URL, synthetic: URL, out: URL) { self.real = real; self.synthetic = synthetic; self.out = out }
}

/// Distribution metrics of one synthetic set against one real set.
public struct SetMetrics: Codable {
    public var real_images: Int
    public var synthetic_images: Int
    /// Fréchet distance of the Gaussian fits (the FID formula, on this report's features).
    public var fid: Double
    public var kid_mean: Double
    public var kid_std: Double
    public var prdc: PRDC
}

/// Every setting that shapes the numbers.
public struct EvaluationSettings: Codable {
    public var real: String
    public var synthetic: String
    public var train: String
    public var test: String?
    public var feature_network: String
    public var feature_dimension: Int
    public var feature_input: String
    public var k: Int
    public var kid_subsets: Int
    public var kid_subset_size: Int
    public var kid_kernel: String
    public var seed: UInt64
    public var memorisation_threshold: String
    public var intensity_histogram_bins: Int
}

public struct EvaluationReport: Codable {
    public var version = MedSynthVersion.current
    public var settings: EvaluationSettings
    public var overall: SetMetrics
    /// Per class (both sets have class subfolders), for classes with ≥ 2 images on each side.
    public var per_class: [String: SetMetrics]
    /// Wasserstein-1 between the pixel-value histograms of the network inputs, in [−1, 1] units.
    public var intensity_w1: Double
    public var memorisation: MemorisationReport
    public var utility: UtilityReport?
    public var warnings: [String]
    public var seconds: [String: Double]
}

/// FD, KID and PRDC of one pair of feature matrices, and each synthetic row's nearest real row.
func setMetrics(real: Matrix, synthetic: Matrix, request: EvaluationRequest, realNeighbours: NearestNeighbours? = nil) throws -> (metrics: SetMetrics, nearestReal: NearestNeighbours) {
    let fid = try frechetDistance(real, synthetic)
    let kid = kernelInceptionDistance(real, synthetic, subsets: request.kidSubsets, subsetSize: request.kidSubsetSize, seed: request.seed)
    let (prdc, nearestReal) = prdcWithNearestReal(real: real, fake: synthetic, k: request.k, realNeighbours: realNeighbours)
    return (SetMetrics(real_images: real.rows, synthetic_images: synthetic.rows, fid: fid, kid_mean: kid.mean, kid_std: kid.std, prdc: prdc), nearestReal)
}

/// The rows `rows` of `m`.
func subset(_ m: Matrix, rows: [Int]) -> Matrix {
    var values = [Double]()
    values.reserveCapacity(rows.count * m.columns)
    for r in rows { values += m.row(r) }
    return Matrix(rows: rows.count, columns: m.columns, values: values)
}

/// Everything `writeHTMLReport` shows besides the report's numbers.
struct ReportMaterial {
    var real: ImageSet, synthetic: ImageSet, train: ImageSet
    var memorisation: MemorisationResult
}

/// Loads the sets, computes every metric and writes `out/report.json`, `out/report.html` and
/// `out/nearest_training.csv` (plus the .npy feature matrices when `featuresOut` is set).
/// Progress and warnings go to stderr in `style`.
@discardableResult
public func evaluate(_ request: EvaluationRequest, progress style: ProgressStyle = .human) throws -> EvaluationReport {
    let log = ProgressReporter(label: "evaluate", total: 1, unit: "", style: style)
    var seconds: [String: Double] = [:]
    var clock = Date()
    func lap(_ name: String) { seconds[name] = Date().timeIntervalSince(clock); clock = Date() }

    func load(_ url: URL, _ role: String) throws -> ImageSet {
        // The total is known once the folder is scanned, at the first call.
        var reporter: ProgressReporter?
        return try ImageSet(root: url) { done, total in
            if reporter == nil { reporter = ProgressReporter(label: "load \(role)", total: total, unit: "images", style: style) }
            reporter!.update(done: done, items: done)
        }
    }
    let real = try load(request.real, "real")
    let synthetic = try load(request.synthetic, "synthetic")
    let train = try request.train.map { try load($0, "train") } ?? real
    let test = try request.test.map { try load($0, "test") }
    lap("load")
    for (set, role) in [(real, "real"), (synthetic, "synthetic"), (train, "training")] where set.count < 2 {
        throw MedSynthError(file: set.root.path, "the \(role) set has \(set.count) image; the distance metrics need at least 2")
    }
    if real.channels.count == 1, synthetic.channels.count == 1, real.channels != synthetic.channels {
        throw MedSynthError(file: request.synthetic.path, "synthetic images have \(synthetic.channels.first!) channel(s) but the real ones have \(real.channels.first!); convert one set first (medsynth convert --channels)")
    }

    let network = try request.featureWeights.map { try FeatureNetwork(weights: $0) } ?? FeatureNetwork()
    var warnings: [String] = []
    for (name, set) in [("real", real), ("synthetic", synthetic)] where set.count <= network.dimension {
        warnings.append("the \(name) set has \(set.count) images for \(network.dimension) feature dimensions: its covariance is rank-deficient. The Fréchet distance is still computed as pytorch-fid does, but at this size it is strongly biased upwards; compare KID (unbiased) instead")
    }
    for w in warnings { log.note("warning: \(w)") }
    let rankWarnings = warnings.count
    let trainIsReal = request.train == nil
    let featureTotal = real.count + synthetic.count + (trainIsReal ? 0 : train.count)
    let featureReporter = ProgressReporter(label: "features", total: featureTotal, unit: "images", style: style)
    var featuresDone = 0
    func features(_ set: ImageSet) -> Matrix {
        let base = featuresDone
        let m = set.features(network) { featureReporter.update(done: base + $0, items: base + $0) }
        featuresDone += set.count
        return m
    }
    let realFeatures = features(real), syntheticFeatures = features(synthetic)
    let trainFeatures = trainIsReal ? realFeatures : features(train)
    for (m, set) in [(realFeatures, real), (syntheticFeatures, synthetic), (trainFeatures, train)] where !m.values.allSatisfy(\.isFinite) {
        throw MedSynthError(file: request.featureWeights?.path ?? set.root.path, "the feature network gave NaN or infinite features for these images (weights that diverged?)")
    }
    lap("features")

    log.note("metrics: Fréchet distance, KID (\(request.kidSubsets) subsets), precision/recall/density/coverage (k = \(request.k))")
    let kk = max(1, min(request.k, real.count - 1, synthetic.count - 1))
    let realNeighbours = nearestNeighbours(realFeatures, in: realFeatures, k: kk, excludingSelf: true)
    let (overall, syntheticToReal) = try setMetrics(real: realFeatures, synthetic: syntheticFeatures, request: request, realNeighbours: realNeighbours)
    var perClass: [String: SetMetrics] = [:]
    if real.hasClassFolders && synthetic.hasClassFolders {
        for name in Set(real.classNames).intersection(synthetic.classNames).sorted() {
            let ri = real.indices(ofClass: name), si = synthetic.indices(ofClass: name)
            guard ri.count >= 2, si.count >= 2 else {
                warnings.append("class '\(name)' has \(ri.count) real and \(si.count) synthetic images: no per-class metrics (need ≥ 2 each)")
                continue
            }
            perClass[name] = try setMetrics(real: subset(realFeatures, rows: ri), synthetic: subset(syntheticFeatures, rows: si), request: request).metrics
        }
        let unmatched = Set(real.classNames).symmetricDifference(synthetic.classNames).sorted()
        if !unmatched.isEmpty { warnings.append("classes in only one of the sets (no per-class metrics): \(unmatched.joined(separator: ", "))") }
    }
    let w1 = histogramWasserstein(real.pixels.flatMap { $0 }, synthetic.pixels.flatMap { $0 })
    lap("metrics")

    log.note("memorisation: nearest training image of each synthetic image")
    let memo = memorisationCheck(train: train, trainFeatures: trainFeatures, synthetic: synthetic, syntheticFeatures: syntheticFeatures,
                                 trainNeighbours: trainIsReal ? realNeighbours : nil, syntheticNeighbours: trainIsReal ? syntheticToReal : nil)
    lap("memorisation")
    if memo.report.training_duplicates > 0 {
        warnings.append("\(memo.report.training_duplicates) training images have a pixel-identical copy in the training set (duplicated files?); the memorisation baseline skips these copies")
    }

    var utility: UtilityReport?
    if let test {
        var settings = request.utility
        settings.seed = request.seed
        var reporters: [String: ProgressReporter] = [:]
        utility = try downstreamUtility(train: train, synthetic: synthetic, test: test, settings: settings) { name, step, total, loss in
            let r = reporters[name] ?? ProgressReporter(label: "utility \(name)", total: total, unit: "step", style: style)
            reporters[name] = r
            r.update(done: step, items: step * settings.batch_size, values: [("loss", loss)])
        }
        lap("utility")
    }
    for w in warnings.dropFirst(rankWarnings) { log.note("warning: \(w)") }

    let settings = EvaluationSettings(
        real: request.real.path, synthetic: request.synthetic.path, train: train.root.path, test: request.test?.path,
        feature_network: network.source, feature_dimension: network.dimension,
        feature_input: "64x64 gray (BT.601 luma), centre-cropped square, values in [-1, 1]",
        k: overall.prdc.k, kid_subsets: request.kidSubsets,
        kid_subset_size: min(request.kidSubsetSize ?? 1000, real.count, synthetic.count), kid_kernel: "(x.y/d + 1)^3",
        seed: request.seed, memorisation_threshold: "5th percentile of training-vs-training nearest-neighbour feature distances, or pixel RMS <= 1/255",
        intensity_histogram_bins: 256)
    var report = EvaluationReport(settings: settings, overall: overall, per_class: perClass, intensity_w1: w1,
                                  memorisation: memo.report, utility: utility, warnings: warnings, seconds: seconds)

    try FileManager.default.createDirectory(at: request.out, withIntermediateDirectories: true)
    if let featuresOut = request.featuresOut {
        try FileManager.default.createDirectory(at: featuresOut, withIntermediateDirectories: true)
        try writeNPY(realFeatures, to: featuresOut.appendingPathComponent("real_features.npy"), as: request.featuresType)
        try writeNPY(syntheticFeatures, to: featuresOut.appendingPathComponent("synthetic_features.npy"), as: request.featuresType)
        if !trainIsReal { try writeNPY(trainFeatures, to: featuresOut.appendingPathComponent("train_features.npy"), as: request.featuresType) }
    }
    try writeAtomically(Data(nearestTrainingCSV(memo.nearest).utf8), to: request.out.appendingPathComponent("nearest_training.csv"))
    try writeHTMLReport(report, ReportMaterial(real: real, synthetic: synthetic, train: train, memorisation: memo),
                        to: request.out.appendingPathComponent("report.html"))
    lap("report")
    report.seconds = seconds
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    // JSON has no NaN or infinity; spell them out rather than fail after all the work.
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    try writeAtomically(try encoder.encode(report), to: request.out.appendingPathComponent("report.json"))
    return report
}

/// The few lines the CLI prints after a run.
public func evaluationSummary(_ report: EvaluationReport) -> String {
    let o = report.overall, m = report.memorisation
    var lines = [String(format: "FD %.3f  KID %.5f ± %.5f  precision %.3f  recall %.3f  density %.3f  coverage %.3f  intensity W1 %.4f",
                        o.fid, o.kid_mean, o.kid_std, o.prdc.precision, o.prdc.recall, o.prdc.density, o.prdc.coverage, report.intensity_w1)]
    lines.append(String(format: "memorisation: %d of %d synthetic images flagged (%.1f%%), %d pixel copies",
                        m.flagged_count, m.synthetic_images, 100 * m.fraction_below_threshold, m.pixel_copies))
    for (name, c) in report.per_class.sorted(by: { $0.key < $1.key }) {
        lines.append(String(format: "  %@: FD %.3f  KID %.5f  precision %.3f  recall %.3f", name, c.fid, c.kid_mean, c.prdc.precision, c.prdc.recall))
    }
    if let u = report.utility {
        lines.append(String(format: "utility: balanced accuracy %.3f real → %.3f real+synthetic (accuracy %.3f → %.3f, %d test images)",
                            u.real_only.balanced_accuracy, u.real_plus_synthetic.balanced_accuracy,
                            u.real_only.accuracy, u.real_plus_synthetic.accuracy, u.test_images))
    }
    if !report.warnings.isEmpty { lines.append("\(report.warnings.count) warning(s): see above and report.json") }
    return lines.joined(separator: "\n")
}
