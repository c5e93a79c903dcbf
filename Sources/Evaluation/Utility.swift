import Foundation
import Core
import Engine
import Layers

// MARK: - Downstream utility: does adding synthetic images help a classifier?
//
// Two copies of one small CNN, from the same seeded initial weights, are trained with Adam for
// the same number of steps: (a) on the real training images, (b) on the real plus the synthetic
// images (classes matched by folder name). Both are tested on a held-out real set. Equal steps
// keep the comparison about the data, not about extra training.

/// Settings of the utility experiment (saved in report.json).
public struct UtilitySettings: Codable, Equatable {
    /// Passes over the real training set; both classifiers take epochs · ⌈n_real / batch⌉ steps.
    public var epochs = 15
    public var batch_size = 32
    public var learning_rate = 1e-3
    public var seed: UInt64 = 0
    public var architecture = UtilityClassifier.architecture
    public init() {}
}

/// Test-set scores of one classifier.
public struct ClassifierScores: Codable, Equatable {
    public var training_images: Int
    public var accuracy: Double
    /// Mean of the per-class recalls (classes present in the test set).
    public var balanced_accuracy: Double
    /// Recall (sensitivity) of each class present in the test set.
    public var per_class_recall: [String: Double]
    /// Mean cross-entropy over the last pass's worth of steps.
    public var final_training_loss: Double
}

public struct UtilityReport: Codable {
    public var classes: [String]
    public var test_images: Int
    public var real_only: ClassifierScores
    public var real_plus_synthetic: ClassifierScores
    public var settings: UtilitySettings
}

// MARK: - The classifier

/// The utility classifier: 64×64 gray input, four 3×3 stride-2 convolutions (1→16→32→64→64,
/// padding 1, LeakyReLU 0.2), global average pooling, a linear layer to the class logits.
public final class UtilityClassifier: Module {
    public static let architecture = "conv3x3s2 16-32-64-64 + LeakyReLU(0.2), global average pool, linear"
    let convs: [Conv2d]
    let head: Linear

    public init(classes: Int, stream: inout RandomStream) {
        let widths = [1, 16, 32, 64, 64]
        convs = (0..<4).map { Conv2d(widths[$0], widths[$0 + 1], kernel: 3, stride: 2, padding: 1, stream: &stream) }
        head = Linear(widths.last!, classes, stream: &stream)
    }

    public func namedTensors() -> [NamedTensor] {
        gather(convs.enumerated().map { ("conv\($0.offset)", $0.element as Module) } + [("head", head)])
    }

    /// Logits (N×classes) of N×1×64×64 images.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for conv in convs { h = leakyRelu(conv(h), slope: 0.2) }
        return head(globalAveragePool(h))
    }
}

// MARK: - Training and scoring

/// Trains a fresh classifier (initial weights from `settings.seed`) for `steps` Adam steps on
/// `images` (64×64 gray CHW in [−1, 1]); batches come from reshuffled passes over the images.
/// Returns the model and the mean loss over its last ⌈n / batch⌉ steps.
public func trainUtilityClassifier(images: [[Float]], labels: [Int], classes: Int, steps: Int, settings: UtilitySettings,
                                   progress: (Int, Double) -> Void = { _, _ in }) -> (model: UtilityClassifier, finalLoss: Double) {
    precondition(!images.isEmpty && images.count == labels.count, "trainUtilityClassifier: \(images.count) images for \(labels.count) labels")
    var initStream = RandomStream(seed: settings.seed).split(.utilityClassifierInitialisation)
    let model = UtilityClassifier(classes: classes, stream: &initStream)
    let optimiser = Adam(model.parameters(), learningRate: Float(settings.learning_rate))
    let batch = min(settings.batch_size, images.count), item = images[0].count
    let side = Int(Double(item).squareRoot())
    var order: [Int] = [], position = 0, pass: UInt64 = 0
    let orderRoot = RandomStream(seed: settings.seed).split(.utilityClassifierOrder)
    let window = max(1, (images.count + batch - 1) / batch)
    var recent: [Double] = []
    for step in 0..<steps {
        var x = [Float](), y = [Int]()
        x.reserveCapacity(batch * item)
        for _ in 0..<batch {
            if position == order.count {
                var s = orderRoot.split(pass); pass += 1
                order = s.permutation(images.count); position = 0
            }
            x += images[order[position]]; y.append(labels[order[position]]); position += 1
        }
        model.zeroGrad()
        let loss = softmaxCrossEntropy(model(Tensor(shape: [batch, 1, side, side], data: x)), labels: y)
        loss.backward()
        optimiser.update()
        recent.append(Double(loss.scalar))
        if recent.count > window { recent.removeFirst() }
        progress(step + 1, Double(loss.scalar))
    }
    return (model, recent.reduce(0, +) / Double(max(recent.count, 1)))
}

/// Accuracy, balanced accuracy and per-class recall of `model` on labelled images, and its predicted class of each image.
public func scoreUtilityClassifier(_ model: UtilityClassifier, images: [[Float]], labels: [Int], classNames: [String])
    -> (accuracy: Double, balanced: Double, recall: [String: Double], predicted: [Int]) {
    let item = images.first?.count ?? 0, side = Int(Double(item).squareRoot())
    var correct = 0
    var hits = [Int](repeating: 0, count: classNames.count), totals = hits
    var predictions: [Int] = []
    predictions.reserveCapacity(images.count)
    var start = 0
    while start < images.count {
        let end = min(images.count, start + 128)
        let logits = withNoGrad { model(Tensor(shape: [end - start, 1, side, side], data: Array(images[start..<end].joined()))) }
        let c = classNames.count
        for i in start..<end {
            let row = logits.data[(i - start) * c..<(i - start + 1) * c]
            let predicted = row.indices.max { row[$0] < row[$1] }! - (i - start) * c
            predictions.append(predicted)
            totals[labels[i]] += 1
            if predicted == labels[i] { correct += 1; hits[labels[i]] += 1 }
        }
        start = end
    }
    var recall: [String: Double] = [:]
    for (k, name) in classNames.enumerated() where totals[k] > 0 { recall[name] = Double(hits[k]) / Double(totals[k]) }
    let balanced = recall.values.reduce(0, +) / Double(max(recall.count, 1))
    return (Double(correct) / Double(max(images.count, 1)), balanced, recall, predictions)
}

/// Softmax class probabilities of `model` for each image (64×64 gray CHW in [−1, 1]).
public func utilityClassProbabilities(_ model: UtilityClassifier, images: [[Float]]) -> [[Double]] {
    let item = images.first?.count ?? 0, side = Int(Double(item).squareRoot())
    var out: [[Double]] = []
    out.reserveCapacity(images.count)
    var start = 0
    while start < images.count {
        let end = min(images.count, start + 128)
        let logits = withNoGrad { model(Tensor(shape: [end - start, 1, side, side], data: Array(images[start..<end].joined()))) }
        let c = logits.shape[1]
        for i in 0..<(end - start) {
            let row = logits.data[i * c..<(i + 1) * c].map(Double.init)
            let top = row.max()!, e = row.map { exp($0 - top) }, total = e.reduce(0, +)
            out.append(e.map { $0 / total })
        }
        start = end
    }
    return out
}

/// Labels of `set` in the class order of `classNames`, matched by class folder name.
func labels(of set: ImageSet, in classNames: [String], role: String) throws -> [Int] {
    guard set.hasClassFolders else {
        throw MedSynthError(file: set.root.path, "the utility test needs class subfolders in the \(role) set (one folder per class, named as in the training set)")
    }
    let mapping = try set.classNames.map { name -> Int in
        guard let k = classNames.firstIndex(of: name) else {
            throw MedSynthError(file: set.root.appendingPathComponent(name).path, "class '\(name)' of the \(role) set is not a class of the training set (\(classNames.joined(separator: ", ")))")
        }
        return k
    }
    return set.labels.map { mapping[$0] }
}

/// The downstream-utility experiment: (a) real training images, (b) real plus synthetic, both
/// tested on `test`. Every set needs class subfolders named as the training set's classes.
public func downstreamUtility(train: ImageSet, synthetic: ImageSet, test: ImageSet, settings: UtilitySettings = UtilitySettings(),
                              progress: (String, Int, Int, Double) -> Void = { _, _, _, _ in }) throws -> UtilityReport {
    guard train.hasClassFolders, train.classNames.count >= 2 else {
        throw MedSynthError(file: train.root.path, "the utility test needs at least two class subfolders in the training set")
    }
    guard settings.epochs >= 1, settings.batch_size >= 1, settings.learning_rate > 0 else {
        throw MedSynthError("utility settings: epochs and batch size must be ≥ 1 and the learning rate positive")
    }
    let classes = train.classNames
    let trainLabels = try labels(of: train, in: classes, role: "training")
    let syntheticLabels = try labels(of: synthetic, in: classes, role: "synthetic")
    let testLabels = try labels(of: test, in: classes, role: "test")
    let steps = settings.epochs * ((train.count + settings.batch_size - 1) / settings.batch_size)
    func run(_ name: String, _ images: [[Float]], _ labels: [Int]) -> ClassifierScores {
        let (model, loss) = trainUtilityClassifier(images: images, labels: labels, classes: classes.count, steps: steps, settings: settings) {
            progress(name, $0, steps, $1)
        }
        let s = scoreUtilityClassifier(model, images: test.pixels, labels: testLabels, classNames: classes)
        return ClassifierScores(training_images: images.count, accuracy: s.accuracy, balanced_accuracy: s.balanced,
                                per_class_recall: s.recall, final_training_loss: loss)
    }
    let realOnly = run("real", train.pixels, trainLabels)
    let mixed = run("real+synthetic", train.pixels + synthetic.pixels, trainLabels + syntheticLabels)
    return UtilityReport(classes: classes, test_images: test.count, real_only: realOnly, real_plus_synthetic: mixed, settings: settings)
}
