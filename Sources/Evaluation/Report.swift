import Foundation
import Engine
import Imaging

// MARK: - The HTML report: one self-contained file, pictures embedded as PNG data URIs

/// A bar chart of one or two histograms (real in blue, synthetic in orange), drawn into an RGB image.
func histogramChart(_ series: [[Double]], width: Int = 512, height: Int = 160) -> Image {
    var image = Image(width: width, height: height, channels: 3, bitDepth: 8,
                      samples: [UInt16](repeating: 255, count: width * height * 3))
    let colours: [[UInt16]] = [[31, 119, 180], [255, 127, 14]]
    let peak = series.flatMap { $0 }.max() ?? 1
    for (s, values) in series.enumerated() {
        let bins = values.count
        for x in 0..<width {
            let v = values[min(bins - 1, x * bins / width)]
            let top = height - 1 - Int(Double(height - 12) * v / max(peak, 1e-12))
            for y in max(top, 0)..<height {
                for c in 0..<3 {
                    // Overlap blends the two series so both stay visible.
                    let old = image[x, y, c]
                    image[x, y, c] = s == 0 ? colours[0][c] : (old == 255 ? colours[1][c] : (old + colours[1][c]) / 2)
                }
            }
        }
    }
    for x in 0..<width { for c in 0..<3 { image[x, height - 1, c] = 0 } }
    return image
}

func dataURI(_ image: Image) throws -> String {
    "data:image/png;base64," + Data(try encodePNG(image)).base64EncodedString()
}

func grid(_ set: ImageSet, indices: [Int]) -> Image {
    makeGrid(images: indices.map { set.pixels[$0] }, channels: 1, size: FeatureNetwork.inputSize, columns: 8)
}

func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

func writeHTMLReport(_ report: EvaluationReport, real: ImageSet, synthetic: ImageSet, train: ImageSet, to url: URL) throws {
    func row(_ name: String, _ m: SetMetrics) -> String {
        String(format: "<tr><td>%@</td><td>%d</td><td>%d</td><td>%.3f</td><td>%.5f ± %.5f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td></tr>",
               escape(name), m.real_images, m.synthetic_images, m.fid, m.kid_mean, m.kid_std,
               m.prdc.precision, m.prdc.recall, m.prdc.density, m.prdc.coverage)
    }
    var rows = row("all", report.overall)
    for (name, m) in report.per_class.sorted(by: { $0.key < $1.key }) { rows += row(name, m) }
    let realGrid = try dataURI(grid(real, indices: Array(0..<min(32, real.count))))
    let synthGrid = try dataURI(grid(synthetic, indices: Array(0..<min(32, synthetic.count))))
    let hist = try dataURI(histogramChart([histogram(real.pixels.flatMap { $0 }, bins: 128), histogram(synthetic.pixels.flatMap { $0 }, bins: 128)]))
    var pairImages: [[Float]] = []
    for pair in report.memorisation.closest {
        if let s = synthetic.names.firstIndex(of: pair.synthetic), let t = train.names.firstIndex(of: pair.training) {
            pairImages.append(synthetic.pixels[s]); pairImages.append(train.pixels[t])
        }
    }
    let pairs = try dataURI(makeGrid(images: pairImages, channels: 1, size: FeatureNetwork.inputSize, columns: 2))
    let pairRows = report.memorisation.closest.map {
        String(format: "<tr><td>%@</td><td>%@</td><td>%.3f</td><td>%.3f</td></tr>", escape($0.synthetic), escape($0.training), $0.feature_distance, $0.pixel_distance)
    }.joined()
    let warnings = report.warnings.map { "<li>\(escape($0))</li>" }.joined()
    let html = """
    <!doctype html><html><head><meta charset="utf-8"><title>medsynth evaluation</title>
    <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}img{image-rendering:pixelated;max-width:100%}.warn{color:#a40}</style></head><body>
    <h1>medsynth evaluation</h1>
    <p>Real: <code>\(escape(report.settings["real"] ?? ""))</code> · Synthetic: <code>\(escape(report.settings["synthetic"] ?? ""))</code> · Features: <code>\(escape(report.feature_network))</code> (\(report.feature_dimension) dims, 64×64 gray input) · medsynth \(report.version)</p>
    \(warnings.isEmpty ? "" : "<ul class=\"warn\">\(warnings)</ul>")
    <h2>Metrics</h2>
    <table><tr><th>set</th><th>real</th><th>synthetic</th><th>FD</th><th>KID</th><th>precision</th><th>recall</th><th>density</th><th>coverage</th></tr>\(rows)</table>
    <p>Intensity Wasserstein-1 (pixel values in [−1, 1]): \(String(format: "%.4f", report.intensity_w1)). Lower FD/KID is closer; precision ≈ fidelity, recall/coverage ≈ diversity (k = \(report.overall.prdc.k)).</p>
    <h2>Samples</h2><h3>Real</h3><img src="\(realGrid)"><h3>Synthetic</h3><img src="\(synthGrid)">
    <h2>Intensity histograms</h2><p><span style="color:#1f77b4">■ real</span> <span style="color:#ff7f0e">■ synthetic</span></p><img src="\(hist)">
    <h2>Memorisation</h2>
    <p>\(String(format: "%.1f%%", 100 * report.memorisation.fraction_below_threshold)) of synthetic images are closer to a training image than the 5th percentile of training-vs-training nearest-neighbour distances (\(String(format: "%.3f", report.memorisation.threshold_feature_distance)); median \(String(format: "%.3f", report.memorisation.real_vs_real_median))). Closest pairs (synthetic left, training right):</p>
    <img src="\(pairs)"><table><tr><th>synthetic</th><th>nearest training image</th><th>feature distance</th><th>pixel RMS</th></tr>\(pairRows)</table>
    </body></html>
    """
    try writeAtomically(Data(html.utf8), to: url)
}
