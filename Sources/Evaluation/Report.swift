import Foundation
import Core
import Engine
import Imaging

// MARK: - The HTML report: one self-contained file, pictures embedded as PNG data URIs

func dataURI(_ image: Image) throws -> String {
    "data:image/png;base64," + Data(try encodePNG(image)).base64EncodedString()
}

func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

/// Up to `count` indices spread evenly over 0..<n (a sample grid shows every class of a sorted set).
func spread(_ n: Int, _ count: Int) -> [Int] {
    n <= count ? Array(0..<n) : (0..<count).map { $0 * n / count }
}

func fmt(_ v: Double, _ digits: Int = 3) -> String { v.isFinite ? String(format: "%.\(digits)f", v) : "n/a" }

/// Normalised counts (fractions) so sets of different sizes share one chart.
func fractions(_ counts: [Double]) -> [Double] {
    let total = counts.reduce(0, +)
    return total > 0 ? counts.map { $0 / total } : counts
}

func writeHTMLReport(_ report: EvaluationReport, _ material: ReportMaterial, to url: URL) throws {
    let size = FeatureNetwork.inputSize
    func row(_ name: String, _ m: SetMetrics) -> String {
        "<tr><td>\(escape(name))</td><td>\(m.real_images)</td><td>\(m.synthetic_images)</td><td>\(fmt(m.fid))</td>"
            + "<td>\(escape(m.kidText))</td><td>\(fmt(m.prdc.precision))</td><td>\(fmt(m.prdc.recall))</td>"
            + "<td>\(fmt(m.prdc.density))</td><td>\(fmt(m.prdc.coverage))</td>" + breakdownCells(m.fid_breakdown) + "</tr>"
    }
    func breakdownCells(_ b: FrechetBreakdown?) -> String {
        guard let b else { return "<td>–</td><td>–</td>" }
        func ratio(_ r: Double?) -> String { r.map { String(format: "%.2f×", $0) } ?? "n/a" }
        return "<td>\(fmt(b.mean_term)) + \(fmt(b.covariance_term))</td>"
            + "<td>\(ratio(b.spread_ratio_principal)) / \(ratio(b.spread_ratio_outside)) (\(b.principal_directions))</td>"
    }
    var rows = row("all", report.overall)
    func baselineRows(_ prefix: String, _ b: RealBaseline) -> String {
        row("\(prefix): real vs real (baseline)", b.metrics)
            + (b.synthetic_same_size.map { row("\(prefix): synthetic vs the first half (baseline's sizes)", $0) } ?? "")
    }
    if let b = report.real_vs_real { rows += baselineRows("all", b) }
    for (name, m) in report.per_class.sorted(by: { $0.key < $1.key }) {
        rows += row(name, m)
        if let b = report.per_class_real_vs_real[name] { rows += baselineRows(name, b) }
    }
    let real = material.real, synthetic = material.synthetic, train = material.train
    let realGrid = try dataURI(makeGrid(images: spread(real.count, 32).map { real.pixels[$0] }, channels: 1, size: size, columns: 8))
    let synthGrid = try dataURI(makeGrid(images: spread(synthetic.count, 32).map { synthetic.pixels[$0] }, channels: 1, size: size, columns: 8))

    // Intensity histograms of the network inputs, 128 bins over [−1, 1], on a square-root scale
    // so the background's spike does not flatten the tissue's range.
    let intensity = try dataURI(histogramChart([
        ChartSeries(values: histogram(real.pixels.flatMap { $0 }, bins: 128).map { $0.squareRoot() }, colour: ChartColour.real),
        ChartSeries(values: histogram(synthetic.pixels.flatMap { $0 }, bins: 128).map { $0.squareRoot() }, colour: ChartColour.synthetic)]))

    // Nearest-neighbour distances: synthetic→training against the training set's own baseline.
    let memo = material.memorisation
    let nnValues = memo.nearest.map(\.feature_distance)
    let hi = max((nnValues + memo.baseline).filter(\.isFinite).max() ?? 1, 1e-12)
    let nnChart = try dataURI(histogramChart([
        ChartSeries(values: fractions(binCounts(memo.baseline, bins: 60, lo: 0, hi: hi)), colour: ChartColour.real),
        ChartSeries(values: fractions(binCounts(nnValues, bins: 60, lo: 0, hi: hi)), colour: ChartColour.synthetic)],
        marker: report.memorisation.threshold_feature_distance / hi))

    // Closest pairs: synthetic left, its nearest training image right.
    let synthIndex = Dictionary(synthetic.names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
    let trainIndex = Dictionary(train.names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
    var pairImages: [[Float]] = []
    for pair in report.memorisation.closest {
        if let s = synthIndex[pair.synthetic], let t = trainIndex[pair.training] {
            pairImages.append(synthetic.pixels[s]); pairImages.append(train.pixels[t])
        }
    }
    let pairs = try dataURI(makeGrid(images: pairImages, channels: 1, size: size, columns: 2))
    let pairRows = report.memorisation.closest.map {
        "<tr><td>\(escape($0.synthetic))</td><td>\(escape($0.training))</td><td>\(fmt($0.feature_distance))</td><td>\(fmt($0.pixel_distance, 4))</td></tr>"
    }.joined()
    let m = report.memorisation
    let warnings = report.warnings.map { "<li>\(escape($0))</li>" }.joined()

    var utilityHTML = ""
    if let u = report.utility {
        func scoreRow(_ name: String, _ s: ClassifierScores) -> String {
            "<tr><td>\(name)</td><td>\(s.training_images)</td><td>\(fmt(s.accuracy))</td><td>\(fmt(s.balanced_accuracy))</td>"
                + u.classes.map { "<td>\(s.per_class_recall[$0].map { fmt($0) } ?? "–")</td>" }.joined() + "<td>\(fmt(s.final_training_loss, 4))</td></tr>"
        }
        utilityHTML = """
        <h2>Downstream utility</h2>
        <p>A small CNN (\(escape(u.settings.architecture))) trained with Adam (lr \(u.settings.learning_rate), batch \(u.settings.batch_size), the same \(u.settings.epochs) epochs' worth of steps and the same initial weights for both rows), tested on \(u.test_images) held-out real images.</p>
        <table><tr><th>training data</th><th>images</th><th>accuracy</th><th>balanced accuracy</th>\(u.classes.map { "<th>recall \(escape($0))</th>" }.joined())<th>final loss</th></tr>
        \(scoreRow("real", u.real_only))\(scoreRow("real + synthetic", u.real_plus_synthetic))</table>
        """
    }

    let s = report.settings
    let html = """
    <!doctype html><html><head><meta charset="utf-8"><title>medsynth evaluation</title>
    <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img{image-rendering:pixelated;max-width:100%}.warn{color:#a40}.axis{font-size:85%;color:#555}</style></head><body>
    <h1>medsynth evaluation</h1>
    <p>Real: <code>\(escape(s.real))</code> · Synthetic: <code>\(escape(s.synthetic))</code> · Training set: <code>\(escape(s.train))</code><br>
    Features: <code>\(escape(s.feature_network))</code> (\(s.feature_dimension) dimensions; input \(escape(s.feature_input))) · seed \(s.seed) · medsynth \(escape(report.version))</p>
    \(warnings.isEmpty ? "" : "<ul class=\"warn\">\(warnings)</ul>")
    <h2>Metrics</h2>
    <table><tr><th>set</th><th>real</th><th>synthetic</th><th>Fréchet distance</th><th>KID (mean ± std)</th><th>precision</th><th>recall</th><th>density</th><th>coverage</th><th>FD = means + spreads</th><th>spread vs real: main directions / outside (how many)</th></tr>\(rows)</table>
    <p>Lower Fréchet distance and KID mean closer distributions (KID: \(s.kid_subsets) subsets of \(s.kid_subset_size), kernel \(escape(s.kid_kernel)); when both sets are no larger than that, every subset is the whole of both sets: KID is computed once and its spread is n/a). The <em>real vs real</em> rows compare two seeded halves of the real images (\(report.real_vs_real.map { "\($0.half_images) each" } ?? "not available")): what these numbers are for two samples of one distribution. The halves are smaller than the real set, so the baseline's Fréchet distance is if anything high (it is biased upwards at small sizes); KID is unbiased. The <em>synthetic vs the first half</em> rows score as many synthetic images as a half holds against the baseline's first half: the same sizes as the baseline, so the two Fréchet distances carry the same bias and can be compared directly\(report.real_vs_real?.fid_ratio_same_size.map { " (here " + fmt($0, 2) + "× the baseline's)" } ?? ""). Precision and density measure fidelity, recall and coverage diversity (k = \(s.k)). Intensity Wasserstein-1 (pixel values in [−1, 1]): \(fmt(report.intensity_w1, 4)).</p>
    <p>The Fréchet distance is a shift of the means plus a mismatch of the spreads. The spread columns compare the synthetic set's feature variance with the real set's along the real set's main directions (its fewest principal axes that hold \(Int(FrechetBreakdown.principalVarianceShare * 100)) % of its variance) and outside them: below 1× along the main directions, the synthetic images vary less than the real ones (fewer kinds of image, or averaged ones); above 1× outside them, they vary in ways the real images do not (texture, noise, artefacts). Two large samples of one distribution give about 1× on both; with few images the main directions fit the real sample's own scatter, so even real images read below 1× and above 1× (the baseline rows, from halves, show how far).</p>
    <h2>Samples</h2><h3>Real</h3><img src="\(realGrid)"><h3>Synthetic</h3><img src="\(synthGrid)">
    <h2>Intensity histograms</h2>
    <p><span style="color:#1f77b4">■ real</span> <span style="color:#ff7f0e">■ synthetic</span></p>
    <img src="\(intensity)"><div class="axis">x: pixel value from −1 (black) to 1 (white), 128 bins; y: √(fraction of pixels), 0 to the tallest bin</div>
    \(report.intensity_quantiles.map { "<p>Pixel values at the same fractions of both sets (" + escape($0.text) + "): a synthetic value below the real one at the upper fractions means darker tissue or less contrast.</p>" } ?? "")
    <h2>Memorisation</h2>
    <p>\(m.flagged_count) of \(m.synthetic_images) synthetic images (\(fmt(100 * m.fraction_below_threshold, 1))%) are flagged: nearer to a training image (in feature space) than \(fmt(m.threshold_feature_distance)), the 5th percentile of the training images' distances to their nearest other training image (of the same class when the training set has classes), or a pixel copy (\(m.pixel_copies)).\(m.training_duplicates > 0 ? " \(m.training_duplicates) training images have a pixel-identical copy in the training set; the baseline skips those copies." : "") \(fmt(100 * m.fraction_closer_than_median, 1))% are nearer than that baseline's median (\(fmt(m.real_vs_real_median))); the median synthetic-to-training distance is \(fmt(m.synthetic_to_training_median)). Every image's nearest training image is in <code>nearest_training.csv</code>.</p>
    <p><span style="color:#1f77b4">■ training → nearest other training image (same class)</span> <span style="color:#ff7f0e">■ synthetic → nearest training image</span> <span style="color:#d62728">┆ flag threshold</span></p>
    <img src="\(nnChart)"><div class="axis">x: feature distance from 0 to \(fmt(hi)), 60 bins; y: fraction of images, 0 to the tallest bin</div>
    <h3>Closest pairs (synthetic left, training right)</h3>
    <img src="\(pairs)"><table><tr><th>synthetic</th><th>nearest training image</th><th>feature distance</th><th>pixel RMS</th></tr>\(pairRows)</table>
    \(utilityHTML)
    </body></html>
    """
    try writeAtomically(Data(html.utf8), to: url)
}
