import Foundation
import Core
import Engine

// MARK: - The utility study: real vs real + synthetic, over several seeds, with confidence intervals
//
// One run of the utility classifier is a noisy number (a few test images per class, one random
// initialisation). The study repeats it for seeds s = seed, seed+1, …: each repetition draws a
// fresh per-class split of the real data into training and held-out test images (unless a fixed
// test folder is given), a fresh initialisation and batch order, and trains one classifier per
// training set (real only; real + each synthetic set) for the same number of steps. Each score is
// reported as mean and a 95 % Student-t interval over the repetitions, mean ± t(0.975, n−1) · s/√n,
// and each synthetic set's gain over real only as the same interval of the paired differences
// (the same split and initialisation on both sides), which is narrower than comparing two intervals.

/// What `medsynth utility` is asked to compare.
public struct UtilityStudyRequest {
    /// Real labelled images, one subfolder per class.
    public var data: URL
    /// Synthetic sets (class subfolders named as in `data`), each compared with real only.
    public var synthetic: [URL]
    /// A fixed held-out real test set; when nil, each repetition holds out `testFraction` of every class of `data`.
    public var test: URL?
    public var testFraction = 0.25
    public var repetitions = 5
    public var seed: UInt64 = 0
    public var settings = UtilitySettings()
    public init(data: URL, synthetic: [URL]) { self.data = data; self.synthetic = synthetic }
}

/// Mean, sample standard deviation and 95 % t-interval of one score over the repetitions.
public struct ScoreSummary: Codable, Equatable {
    public var mean: Double
    public var std: Double
    /// mean ± t(0.975, n − 1) · std / √n; equal to the mean when n = 1 (no interval).
    public var ci95_low: Double
    public var ci95_high: Double
    public var values: [Double]

    public init(_ values: [Double]) {
        let n = Double(values.count)
        mean = values.reduce(0, +) / max(n, 1)
        let m = mean
        std = values.count > 1 ? (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (n - 1)).squareRoot() : 0
        let half = values.count > 1 ? studentT975(degreesOfFreedom: values.count - 1) * std / n.squareRoot() : 0
        ci95_low = mean - half; ci95_high = mean + half
        self.values = values
    }

    /// "0.812 [0.778, 0.846]", or just the mean for one repetition.
    public var text: String {
        values.count > 1 ? String(format: "%.3f [%.3f, %.3f]", mean, ci95_low, ci95_high) : String(format: "%.3f", mean)
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom: a table for df ≤ 30 (to 3
/// decimals, as printed in every statistics text), the Cornish-Fisher expansion in 1/df above
/// (Abramowitz & Stegun 26.7.5; error below 1e-4 there).
public func studentT975(degreesOfFreedom df: Int) -> Double {
    precondition(df >= 1, "studentT975: degrees of freedom must be ≥ 1")
    let table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
    if df <= table.count { return table[df - 1] }
    let z = 1.959963984540054, n = Double(df)
    let z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z
    return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n)
}

/// One training set's scores over the repetitions.
public struct UtilityStudyRow: Codable {
    /// "real" or the synthetic folder.
    public var training_data: String
    /// Training images in each repetition.
    public var training_images: [Int]
    public var balanced_accuracy: ScoreSummary
    public var accuracy: ScoreSummary
    public var per_class_recall: [String: ScoreSummary]
    /// This row minus real only, paired by repetition (nil for the real row).
    public var balanced_accuracy_gain: ScoreSummary?
    public var per_class_recall_gain: [String: ScoreSummary]?
    /// Test images by true class (rows) and predicted class (columns), both in the report's
    /// `classes` order, summed over the repetitions: where each class's misses go.
    public var confusion: [[Int]]
    /// With a fixed test folder: every test image some repetition got wrong, the most often
    /// missed first, so the images behind a low recall can be looked at.
    public var misclassified: [MisclassifiedTestImage]?
}

/// A fixed-test-folder image that at least one repetition's classifier got wrong.
public struct MisclassifiedTestImage: Codable, Equatable {
    /// Path relative to the test folder.
    public var file: String
    public var true_class: String
    /// The predicted class in each repetition, in the order of the report's `seeds`.
    public var predicted: [String]
}

public struct UtilityStudyReport: Codable {
    public var version = MedSynthVersion.current
    public var data: String
    public var test: String?
    /// How the test images were chosen.
    public var split: String
    public var classes: [String]
    /// Classifier seed of each repetition (the split of repetition r uses the same seed).
    public var seeds: [UInt64]
    /// Test images in each repetition.
    public var test_images: [Int]
    public var rows: [UtilityStudyRow]
    public var settings: UtilitySettings
    public var notes: [String]
}

extension ImageSet {
    /// The images at `indices`, in that order (same root and classes).
    func subset(_ indices: [Int]) -> ImageSet {
        ImageSet(root: root, classNames: classNames, hasClassFolders: hasClassFolders, labels: indices.map { labels[$0] },
                 names: indices.map { names[$0] }, pixels: indices.map { pixels[$0] }, channels: channels)
    }

    init(root: URL, classNames: [String], hasClassFolders: Bool, labels: [Int], names: [String], pixels: [[Float]], channels: Set<Int>) {
        self.root = root; self.classNames = classNames; self.hasClassFolders = hasClassFolders
        self.labels = labels; self.names = names; self.pixels = pixels; self.channels = channels
    }
}

/// The synthetic images of a folder: when it holds a `balance` manifest, the files it marks as
/// real are left out (they would count the real images twice). Returns the set and a note.
func syntheticOnly(_ set: ImageSet) throws -> (set: ImageSet, note: String?) {
    let manifest = set.root.appendingPathComponent("manifest.jsonl")
    guard let text = try? String(contentsOf: manifest, encoding: .utf8) else { return (set, nil) }
    var real = Set<String>()
    for line in text.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
        if object["source"] as? String == "real", let file = object["file"] as? String { real.insert(file) }
    }
    guard !real.isEmpty else { return (set, nil) }
    let keep = set.names.indices.filter { !real.contains(set.names[$0]) }
    guard !keep.isEmpty else { throw MedSynthError(file: set.root.path, "its manifest marks every image as real: no synthetic images to add") }
    return (set.subset(keep), "\(set.root.path): \(set.count - keep.count) images its manifest marks as real were left out; \(keep.count) synthetic images used")
}

/// Per class, a seeded `fraction` of the images (at least one, when the class has two or more)
/// goes to the test split. Returns (train indices, test indices).
func stratifiedSplit(_ set: ImageSet, fraction: Double, seed: UInt64) -> (train: [Int], test: [Int]) {
    let root = RandomStream(seed: seed).split(.utilityHeldOutSplit)
    var train: [Int] = [], test: [Int] = []
    for c in set.classNames.indices {
        let members = set.labels.indices.filter { set.labels[$0] == c }
        var stream = root.split(UInt64(c))
        let order = stream.permutation(members.count).map { members[$0] }
        let held = members.count >= 2 ? min(members.count - 1, max(1, Int((fraction * Double(members.count)).rounded()))) : 0
        test += order[0..<held]; train += order[held...]
    }
    return (train.sorted(), test.sorted())
}

/// Runs the study; `progress(label, step, total, loss)` follows every classifier's training.
public func runUtilityStudy(_ request: UtilityStudyRequest, progress: (String, Int, Int, Double) -> Void = { _, _, _, _ in }) throws -> UtilityStudyReport {
    guard request.repetitions >= 1 else { throw MedSynthError("--seeds must be at least 1") }
    guard request.testFraction > 0, request.testFraction < 1 else { throw MedSynthError("--test-fraction must be in (0, 1)") }
    guard request.settings.epochs >= 1, request.settings.batch_size >= 1, request.settings.learning_rate > 0 else {
        throw MedSynthError("utility settings: epochs and batch size must be ≥ 1 and the learning rate positive")
    }
    guard !request.synthetic.isEmpty else { throw MedSynthError("give at least one --synthetic folder") }
    let data = try ImageSet(root: request.data)
    guard data.hasClassFolders, data.classNames.count >= 2 else {
        throw MedSynthError(file: request.data.path, "the utility study needs at least two class subfolders (one per class)")
    }
    let classes = data.classNames
    var notes: [String] = []
    var syntheticSets: [(name: String, set: ImageSet, labels: [Int])] = []
    for url in request.synthetic {
        let (set, note) = try syntheticOnly(try ImageSet(root: url))
        if let note { notes.append(note) }
        syntheticSets.append((url.path, set, try labels(of: set, in: classes, role: "synthetic")))
    }
    let fixedTest = try request.test.map { try ImageSet(root: $0) }
    let fixedTestLabels = try fixedTest.map { try labels(of: $0, in: classes, role: "test") }
    if fixedTest == nil {
        notes.append("test images are held out from \(request.data.path) by the seed; synthetic images made from all of it (SMOTE parents, copies, a generator trained on it) may derive from test images and flatter the synthetic rows: pass --test with images the generator and the balancer never saw for an honest number")
    }

    var seeds: [UInt64] = [], testCounts: [Int] = []
    var scores: [[ClassifierScores]] = Array(repeating: [], count: 1 + syntheticSets.count)
    var confusion = Array(repeating: Array(repeating: Array(repeating: 0, count: classes.count), count: classes.count), count: 1 + syntheticSets.count)
    var predictions: [[[Int]]] = Array(repeating: [], count: 1 + syntheticSets.count)
    for r in 0..<request.repetitions {
        let seed = request.seed &+ UInt64(r)
        seeds.append(seed)
        var settings = request.settings
        settings.seed = seed
        let trainIndices: [Int], testImages: [[Float]], testLabels: [Int]
        if let fixedTest, let fixedTestLabels {
            trainIndices = Array(0..<data.count); testImages = fixedTest.pixels; testLabels = fixedTestLabels
        } else {
            let split = stratifiedSplit(data, fraction: request.testFraction, seed: seed)
            trainIndices = split.train; testImages = split.test.map { data.pixels[$0] }; testLabels = split.test.map { data.labels[$0] }
        }
        testCounts.append(testImages.count)
        let realImages = trainIndices.map { data.pixels[$0] }, realLabels = trainIndices.map { data.labels[$0] }
        let steps = settings.epochs * ((realImages.count + settings.batch_size - 1) / settings.batch_size)
        func run(_ name: String, _ images: [[Float]], _ labels: [Int]) -> (scores: ClassifierScores, predicted: [Int]) {
            let (model, loss) = trainUtilityClassifier(images: images, labels: labels, classes: classes.count, steps: steps, settings: settings) {
                progress("\(name) seed \(seed)", $0, steps, $1)
            }
            let s = scoreUtilityClassifier(model, images: testImages, labels: testLabels, classNames: classes)
            return (ClassifierScores(training_images: images.count, accuracy: s.accuracy, balanced_accuracy: s.balanced,
                                     per_class_recall: s.recall, final_training_loss: loss), s.predicted)
        }
        for k in 0...syntheticSets.count {
            let result = k == 0 ? run("real", realImages, realLabels)
                : run(URL(fileURLWithPath: syntheticSets[k - 1].name).lastPathComponent,
                      realImages + syntheticSets[k - 1].set.pixels, realLabels + syntheticSets[k - 1].labels)
            scores[k].append(result.scores)
            for (truth, guess) in zip(testLabels, result.predicted) { confusion[k][truth][guess] += 1 }
            if fixedTest != nil { predictions[k].append(result.predicted) }
        }
    }
    // Recall is defined for the classes present in every repetition's test split.
    let tested = classes.filter { c in scores[0].allSatisfy { $0.per_class_recall[c] != nil } }
    if tested.count < classes.count {
        notes.append("no test images (in some repetition) for: \(classes.filter { !tested.contains($0) }.joined(separator: ", ")); their recall is not reported")
    }
    func misclassified(_ k: Int) -> [MisclassifiedTestImage]? {
        guard let fixedTest, let fixedTestLabels else { return nil }
        let missed = fixedTest.names.indices.compactMap { i -> (misses: Int, image: MisclassifiedTestImage)? in
            let guesses = predictions[k].map { $0[i] }
            let misses = guesses.filter { $0 != fixedTestLabels[i] }.count
            guard misses > 0 else { return nil }
            return (misses, MisclassifiedTestImage(file: fixedTest.names[i], true_class: classes[fixedTestLabels[i]], predicted: guesses.map { classes[$0] }))
        }
        return missed.sorted { $0.misses != $1.misses ? $0.misses > $1.misses : $0.image.file < $1.image.file }.map(\.image)
    }
    func row(_ k: Int, _ name: String, _ s: [ClassifierScores], baseline: [ClassifierScores]?) -> UtilityStudyRow {
        var recall: [String: ScoreSummary] = [:], gain: [String: ScoreSummary] = [:]
        for c in tested {
            recall[c] = ScoreSummary(s.map { $0.per_class_recall[c]! })
            if let baseline { gain[c] = ScoreSummary(zip(s, baseline).map { $0.per_class_recall[c]! - $1.per_class_recall[c]! }) }
        }
        return UtilityStudyRow(training_data: name, training_images: s.map(\.training_images),
                               balanced_accuracy: ScoreSummary(s.map(\.balanced_accuracy)), accuracy: ScoreSummary(s.map(\.accuracy)),
                               per_class_recall: recall,
                               balanced_accuracy_gain: baseline.map { b in ScoreSummary(zip(s, b).map { $0.balanced_accuracy - $1.balanced_accuracy }) },
                               per_class_recall_gain: baseline == nil ? nil : gain,
                               confusion: confusion[k], misclassified: misclassified(k))
    }
    var rows = [row(0, "real", scores[0], baseline: nil)]
    for (k, synthetic) in syntheticSets.enumerated() { rows.append(row(k + 1, "real + " + synthetic.name, scores[k + 1], baseline: scores[0])) }
    let split = request.test == nil
        ? "per class, a seeded \(request.testFraction) of the images of \(request.data.path) (at least one per class with ≥ 2) held out, a new split per seed"
        : "the fixed test folder \(request.test!.path); seeds change the classifier's initialisation and batch order only"
    return UtilityStudyReport(data: request.data.path, test: request.test?.path, split: split, classes: classes, seeds: seeds,
                              test_images: testCounts, rows: rows, settings: request.settings, notes: notes)
}

/// The table the CLI prints.
public func utilityStudySummary(_ report: UtilityStudyReport) -> String {
    let n = report.seeds.count
    var lines = ["utility: \(report.classes.count) classes, \(n) seed(s), \(report.test_images.min() ?? 0)–\(report.test_images.max() ?? 0) test images; mean" + (n > 1 ? " [95% t-interval]" : "")]
    let recallClasses = report.classes.filter { report.rows[0].per_class_recall[$0] != nil }
    for row in report.rows {
        lines.append("\(row.training_data) (\(row.training_images.min() ?? 0)–\(row.training_images.max() ?? 0) training images)")
        lines.append("  balanced accuracy \(row.balanced_accuracy.text)" + (row.balanced_accuracy_gain.map { "   gain over real \($0.text)" } ?? ""))
        for c in recallClasses {
            lines.append("  recall \(c): \(row.per_class_recall[c]!.text)" + (row.per_class_recall_gain?[c].map { "   gain \($0.text)" } ?? ""))
        }
        let confusions = mostFrequentConfusions(row.confusion, classes: report.classes, limit: 3)
        if !confusions.isEmpty { lines.append("  most frequent misses (true → predicted, all seeds): " + confusions.joined(separator: ", ")) }
    }
    for note in report.notes { lines.append("note: \(note)") }
    return lines.joined(separator: "\n")
}

/// The `limit` largest off-diagonal cells of a confusion matrix as "a → b ×n", largest first.
func mostFrequentConfusions(_ confusion: [[Int]], classes: [String], limit: Int) -> [String] {
    var cells: [(truth: Int, guess: Int, count: Int)] = []
    for (truth, row) in confusion.enumerated() {
        for (guess, count) in row.enumerated() where guess != truth && count > 0 { cells.append((truth, guess, count)) }
    }
    cells.sort { $0.count != $1.count ? $0.count > $1.count : ($0.truth, $0.guess) < ($1.truth, $1.guess) }
    return cells.prefix(limit).map { "\(classes[$0.truth]) → \(classes[$0.guess]) ×\($0.count)" }
}
