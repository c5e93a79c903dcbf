import Foundation
import Core
import Engine
import Imaging
import Evaluation

// MARK: - Filters for generated samples before they join a balanced dataset
//
// 1. Memorisation (always on): a generated sample is rejected when it is nearer to a real image of
//    the dataset than the memorisation check's threshold — the 5th percentile of the real images'
//    distances to their nearest other real image of the same class, in `medsynth-random-cnn-v1` feature space — or
//    is a pixel copy (RMS ≤ 1/255), exactly the test `medsynth evaluate` flags. A copy of a training
//    image adds no information and leaks it; it must never be added.
// 2. Confidence (optional): the fixed utility classifier, trained on the real images, gives each
//    sample a probability for the class it was generated for; samples below `minConfidence` are
//    rejected (off-class or ambiguous images, which hurt more than they help in few-shot balancing).
// Rejected samples are kept under OUT/.rejected/<class>/ with a manifest line that says why.

/// The optional filter settings of `balance --model`.
public struct BalanceFilterSettings: Equatable {
    /// Reject samples the real-data classifier gives a probability below this for their class (nil: off).
    public var minConfidence: Double?
    /// Passes over the real images when training that classifier.
    public var classifierEpochs = 15
    /// Give up after this many candidates per requested image.
    public var maxCandidatesPerImage = 4
    public init() {}
}

/// What the filters did to one class.
public struct BalanceFilterCounts: Equatable {
    /// Candidates generated and judged.
    public var generated = 0
    public var rejectedMemorised = 0
    public var rejectedUnsure = 0
    public init() {}
}

/// Why a candidate was turned away (nil: accepted).
enum FilterVerdict: Equatable {
    case memorised(nearest: String, featureDistance: Double, threshold: Double, pixelRMS: Double)
    case unsure(confidence: Double, minimum: Double)
}

/// The filters' reference: the real images (all classes), their features, and optionally the classifier.
final class SampleFilter {
    let reference: ImageSet
    let referenceFeatures: Matrix
    let referenceNeighbours: NearestNeighbours
    let network = FeatureNetwork()
    let classifier: UtilityClassifier?
    let minConfidence: Double?

    init(data: URL, settings: BalanceFilterSettings, seed: UInt64, style: ProgressStyle) throws {
        reference = try ImageSet(root: data)
        guard reference.count >= 2 else {
            throw MedSynthError(file: data.path, "the memorisation filter needs at least 2 real images")
        }
        referenceFeatures = reference.features(network)
        referenceNeighbours = nearestNeighbours(referenceFeatures, in: referenceFeatures, k: 5, excludingSelf: true)
        minConfidence = settings.minConfidence
        if settings.minConfidence != nil {
            var utility = UtilitySettings()
            utility.epochs = settings.classifierEpochs
            var stream = RandomStream(seed: seed).split(.balanceFilterClassifier)
            utility.seed = stream.nextUInt64()
            let steps = utility.epochs * ((reference.count + utility.batch_size - 1) / utility.batch_size)
            let reporter = ProgressReporter(label: "filter classifier", total: steps, unit: "step", style: style)
            classifier = trainUtilityClassifier(images: reference.pixels, labels: reference.labels, classes: reference.classNames.count,
                                                steps: steps, settings: utility) { step, loss in
                reporter.update(done: step, items: step * utility.batch_size, values: [("loss", loss)])
            }.model
        } else {
            classifier = nil
        }
    }

    /// The verdict on every image of `candidates` (all generated for class `className`), in its order.
    func judge(_ candidates: ImageSet, className: String) -> [FilterVerdict?] {
        let features = candidates.features(network)
        let memo = memorisationCheck(train: reference, trainFeatures: referenceFeatures, synthetic: candidates,
                                     syntheticFeatures: features, trainNeighbours: referenceNeighbours)
        let threshold = memo.report.threshold_feature_distance
        var probabilities: [[Double]] = []
        if let classifier { probabilities = utilityClassProbabilities(classifier, images: candidates.pixels) }
        let classIndex = reference.classNames.firstIndex(of: className)
        return (0..<candidates.count).map { i in
            let n = memo.nearest[i]
            if n.feature_distance < threshold || n.pixel_distance <= 1.0 / 255 {
                return .memorised(nearest: n.training, featureDistance: n.feature_distance, threshold: threshold, pixelRMS: n.pixel_distance)
            }
            if let minConfidence, !probabilities.isEmpty {
                // A class the real data does not have cannot be vouched for: confidence 0.
                let p = classIndex.map { probabilities[i][$0] } ?? 0
                if p < minConfidence { return .unsure(confidence: p, minimum: minConfidence) }
            }
            return nil
        }
    }
}
