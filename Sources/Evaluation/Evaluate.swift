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
    /// Standard deviation of KID over its subsets; nil (JSON null) when both sets are no larger
    /// than the subset size, so every subset is the whole of both sets and there is no spread.
    public var kid_std: Double?
    /// Distinct subsets KID averaged over: 1 when every subset would be the whole of both sets.
    public var kid_subsets: Int
    public var prdc: PRDC
    /// Mean and covariance parts of `fid` and the spread ratios (absent from reports before 0.x).
    public var fid_breakdown: FrechetBreakdown?

    enum CodingKeys: String, CodingKey { case real_images, synthetic_images, fid, kid_mean, kid_std, kid_subsets, prdc, fid_breakdown }

    /// Written by hand so that a missing spread is an explicit `null`, not a missing key.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(real_images, forKey: .real_images); try c.encode(synthetic_images, forKey: .synthetic_images)
        try c.encode(fid, forKey: .fid); try c.encode(kid_mean, forKey: .kid_mean)
        try c.encode(kid_std, forKey: .kid_std); try c.encode(kid_subsets, forKey: .kid_subsets); try c.encode(prdc, forKey: .prdc)
        try c.encodeIfPresent(fid_breakdown, forKey: .fid_breakdown)
    }

    /// "0.83 means + 16.06 spreads; main directions 0.70×, outside 2.11×" (the breakdown in words).
    public var breakdownText: String? {
        guard let b = fid_breakdown else { return nil }
        func ratio(_ r: Double?) -> String { r.map { String(format: "%.2f×", $0) } ?? "n/a" }
        return String(format: "%.3f means + %.3f spreads; spread vs real along its %d main directions %@, outside them %@",
                      b.mean_term, b.covariance_term, b.principal_directions, ratio(b.spread_ratio_principal), ratio(b.spread_ratio_outside))
    }

    /// "0.01234 ± 0.00056", or "0.01234 ± n/a (one subset)" when there is no spread to report.
    public var kidText: String {
        guard kid_mean.isFinite else { return "n/a" }
        return String(format: "%.5f ± ", kid_mean) + (kid_std.map { String(format: "%.5f", $0) } ?? "n/a (one subset)")
    }
}

/// Pixel-value quantiles (network inputs, [−1, 1]) of the real and the synthetic set.
public struct IntensityQuantiles: Codable, Equatable {
    public static let defaultLevels = [0.5, 0.75, 0.9, 0.99]
    public var levels: [Double]
    public var real: [Double]
    public var synthetic: [Double]

    /// "p50/p75/p90/p99 real −0.99/0.12/… synthetic …".
    public var text: String {
        func row(_ v: [Double]) -> String { v.map { String(format: "%.3f", $0) }.joined(separator: "/") }
        return levels.map { "p" + String(format: "%g", $0 * 100) }.joined(separator: "/") + ": real " + row(real) + ", synthetic " + row(synthetic)
    }
}

/// The real-vs-real baseline: the same metrics between two seeded, equal halves of the real set.
public struct RealBaseline: Codable {
    /// Images in each half (⌊n/2⌋; with an odd count one image sits out).
    public var half_images: Int
    public var metrics: SetMetrics
    /// The synthetic set against the first half with as many synthetic images as a half holds
    /// (a seeded draw): both comparisons have the same sizes, so the Fréchet distance's small-sample
    /// bias is the same in both and their ratio can be read directly. Nil when the synthetic set is
    /// smaller than a half.
    public var synthetic_same_size: SetMetrics?
    /// synthetic_same_size's Fréchet distance over the baseline's.
    public var fid_ratio_same_size: Double?
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
    /// Real-vs-real baseline of the whole real set (nil below 4 real images) and of each class
    /// with per-class metrics and ≥ 4 real images.
    public var real_vs_real: RealBaseline?
    public var per_class_real_vs_real: [String: RealBaseline]
    /// Wasserstein-1 between the pixel-value histograms of the network inputs, in [−1, 1] units.
    public var intensity_w1: Double
    /// Pixel values of the network inputs at the same cumulative fractions of both sets: where the
    /// synthetic tissue is darker or brighter than the real one (W1 says how much, not where).
    public var intensity_quantiles: IntensityQuantiles?
    public var memorisation: MemorisationReport
    public var utility: UtilityReport?
    public var warnings: [String]
    public var seconds: [String: Double]
}

/// FD, KID and PRDC of one pair of feature matrices, and each synthetic row's nearest real row.
func setMetrics(real: Matrix, synthetic: Matrix, request: EvaluationRequest, realNeighbours: NearestNeighbours? = nil) throws -> (metrics: SetMetrics, nearestReal: NearestNeighbours) {
    let (realMean, realCovariance) = meanAndCovariance(real), (syntheticMean, syntheticCovariance) = meanAndCovariance(synthetic)
    let fid = try frechetDistance(mean1: realMean, cov1: realCovariance, mean2: syntheticMean, cov2: syntheticCovariance)
    let breakdown = try frechetBreakdown(realMean: realMean, realCovariance: realCovariance, syntheticMean: syntheticMean,
                                         syntheticCovariance: syntheticCovariance, fid: fid)
    let kid = kernelInceptionDistance(real, synthetic, subsets: request.kidSubsets, subsetSize: request.kidSubsetSize, seed: request.seed)
    let (prdc, nearestReal) = prdcWithNearestReal(real: real, fake: synthetic, k: request.k, realNeighbours: realNeighbours)
    let subsetSize = min(request.kidSubsetSize ?? 1000, real.rows, synthetic.rows)
    let oneSubset = real.rows == subsetSize && synthetic.rows == subsetSize
    return (SetMetrics(real_images: real.rows, synthetic_images: synthetic.rows, fid: fid, kid_mean: kid.mean,
                       kid_std: kid.std.isFinite ? kid.std : nil, kid_subsets: oneSubset ? 1 : request.kidSubsets, prdc: prdc, fid_breakdown: breakdown), nearestReal)
}

/// The metrics between two halves of the real rows, drawn by a seeded permutation
/// (`RandomStream(seed).split(.realBaselineSplit)`): what the numbers look like for two samples of
/// the *same* distribution, so synthetic numbers have something to be read against. Each half has
/// ⌊n/2⌋ rows, fewer than the synthetic comparison's n: the Fréchet distance is biased upwards at
/// small n, so this floor is if anything high; KID is unbiased. `synthetic` is then scored against
/// the first half at the same size. Nil below 4 rows (2 per half).
func realBaseline(_ real: Matrix, synthetic: Matrix, request: EvaluationRequest) throws -> RealBaseline? {
    guard real.rows >= 4 else { return nil }
    var stream = RandomStream(seed: request.seed).split(.realBaselineSplit)
    let order = stream.permutation(real.rows), half = real.rows / 2
    let a = subset(real, rows: Array(order[0..<half])), b = subset(real, rows: Array(order[half..<2 * half]))
    var baseline = RealBaseline(half_images: half, metrics: try setMetrics(real: a, synthetic: b, request: request).metrics)
    if synthetic.rows >= half {
        var draw = RandomStream(seed: request.seed).split(.realBaselineSyntheticDraw)
        let drawn = subset(synthetic, rows: Array(draw.permutation(synthetic.rows)[0..<half]))
        let sameSize = try setMetrics(real: a, synthetic: drawn, request: request).metrics
        baseline.synthetic_same_size = sameSize
        if baseline.metrics.fid > 0 { baseline.fid_ratio_same_size = sameSize.fid / baseline.metrics.fid }
    }
    return baseline
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
    let baseline = try realBaseline(realFeatures, synthetic: syntheticFeatures, request: request)
    if baseline == nil { warnings.append("the real set has \(real.count) images: no real-vs-real baseline (needs ≥ 4, two per half)") }
    var perClass: [String: SetMetrics] = [:], perClassBaseline: [String: RealBaseline] = [:]
    if real.hasClassFolders && synthetic.hasClassFolders {
        for name in Set(real.classNames).intersection(synthetic.classNames).sorted() {
            let ri = real.indices(ofClass: name), si = synthetic.indices(ofClass: name)
            guard ri.count >= 2, si.count >= 2 else {
                warnings.append("class '\(name)' has \(ri.count) real and \(si.count) synthetic images: no per-class metrics (need ≥ 2 each)")
                continue
            }
            perClass[name] = try setMetrics(real: subset(realFeatures, rows: ri), synthetic: subset(syntheticFeatures, rows: si), request: request).metrics
            perClassBaseline[name] = try realBaseline(subset(realFeatures, rows: ri), synthetic: subset(syntheticFeatures, rows: si), request: request)
        }
        let unmatched = Set(real.classNames).symmetricDifference(synthetic.classNames).sorted()
        if !unmatched.isEmpty { warnings.append("classes in only one of the sets (no per-class metrics): \(unmatched.joined(separator: ", "))") }
    }
    let realPixels = real.pixels.flatMap { $0 }, syntheticPixels = synthetic.pixels.flatMap { $0 }
    let w1 = histogramWasserstein(realPixels, syntheticPixels)
    let levels = IntensityQuantiles.defaultLevels
    let quantiles = IntensityQuantiles(levels: levels, real: intensityQuantiles(realPixels, levels: levels),
                                       synthetic: intensityQuantiles(syntheticPixels, levels: levels))
    lap("metrics")

    log.note("memorisation: nearest training image of each synthetic image")
    let memo = memorisationCheck(train: train, trainFeatures: trainFeatures, synthetic: synthetic, syntheticFeatures: syntheticFeatures,
                                 trainNeighbours: trainIsReal ? realNeighbours : nil, syntheticNeighbours: trainIsReal ? syntheticToReal : nil)
    lap("memorisation")
    if trainIsReal {
        warnings.append("no --train: the memorisation check measures closeness to the --real images, with a threshold from their own nearest-neighbour distances (a smaller or sparser real set gives a looser threshold and more flags); pass --train with the generator's training images to check for copies of them")
    }
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
    var report = EvaluationReport(settings: settings, overall: overall, per_class: perClass,
                                  real_vs_real: baseline, per_class_real_vs_real: perClassBaseline, intensity_w1: w1, intensity_quantiles: quantiles,
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
    func metricsLine(_ m: SetMetrics) -> String {
        String(format: "FD %.3f  KID %@  precision %.3f  recall %.3f  density %.3f  coverage %.3f",
               m.fid, m.kidText, m.prdc.precision, m.prdc.recall, m.prdc.density, m.prdc.coverage)
    }
    var lines = ["synthetic vs real: " + metricsLine(o) + String(format: "  intensity W1 %.4f", report.intensity_w1)]
    if let text = o.breakdownText { lines.append("  FD = " + text) }
    if let q = report.intensity_quantiles { lines.append("  pixel values (network input, [−1, 1]) " + q.text) }
    if let b = report.real_vs_real {
        lines.append("real vs real (baseline, two halves of \(b.half_images)): " + metricsLine(b.metrics))
        if let text = b.metrics.breakdownText { lines.append("  FD = " + text) }
        if let same = b.synthetic_same_size, let ratio = b.fid_ratio_same_size {
            lines.append(String(format: "synthetic vs the first half, %d images (the baseline's sizes): FD %.3f = %.2f× the baseline's  KID %@",
                                same.synthetic_images, same.fid, ratio, same.kidText))
        }
    }
    lines.append(String(format: "memorisation: %d of %d synthetic images flagged (%.1f%%), %d pixel copies",
                        m.flagged_count, m.synthetic_images, 100 * m.fraction_below_threshold, m.pixel_copies))
    for (name, c) in report.per_class.sorted(by: { $0.key < $1.key }) {
        lines.append(String(format: "  %@: FD %.3f  KID %@  precision %.3f  recall %.3f", name, c.fid, c.kidText, c.prdc.precision, c.prdc.recall)
                     + (report.per_class_real_vs_real[name].map { b in
                         String(format: "   (real vs real: FD %.3f  KID %@", b.metrics.fid, b.metrics.kidText)
                             + (b.synthetic_same_size.map { String(format: "; synthetic at its sizes: FD %.3f", $0.fid) } ?? "") + ")"
                     } ?? ""))
    }
    if let u = report.utility {
        lines.append(String(format: "utility: balanced accuracy %.3f real → %.3f real+synthetic (accuracy %.3f → %.3f, %d test images)",
                            u.real_only.balanced_accuracy, u.real_plus_synthetic.balanced_accuracy,
                            u.real_only.accuracy, u.real_plus_synthetic.accuracy, u.test_images))
    }
    // Listed here too: with --progress none the notes on stderr are not printed.
    lines += report.warnings.map { "warning: \($0)" }
    return lines.joined(separator: "\n")
}
