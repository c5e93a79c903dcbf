import ArgumentParser
import Foundation
import Core
import Engine
import Evaluation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare synthetic images with real ones: Fréchet distance, KID, precision/recall/density/coverage, memorisation, utility, HTML report.",
        discussion: """
        Features come from medsynth-random-cnn-v1, a fixed seeded random CNN on 64×64 gray inputs (see
        Sources/Evaluation/FeatureNetwork.swift), or from --feature-weights. With class subfolders in both
        sets the metrics are also given per class. Writes OUT/report.json, OUT/report.html and
        OUT/nearest_training.csv. --utility trains a small classifier on --train (default --real) with and
        without the synthetic images and tests both on --test.
        """)

    @Option(help: "Folder of real images (classes = subfolders).") var real: String
    @Option(help: "Folder of synthetic images.") var synthetic: String
    @Option(help: "The generator's training set: memorisation reference and utility training data (default: --real).") var train: String?
    @Option(help: "Output folder for report.json, report.html and nearest_training.csv.") var out: String = "evaluation"
    @Option(help: "Also write real_features.npy and synthetic_features.npy (and train_features.npy) here.") var featuresOut: String?
    @Flag(help: "Write the .npy feature files as float64 instead of float32.") var featuresFloat64 = false
    @Option(help: "A safetensors file with trained weights for the feature network's layout.") var featureWeights: String?
    @Option(help: "k for precision/recall/density/coverage.") var k: Int = 5
    @Option(help: "Number of KID subsets.") var kidSubsets: Int = 100
    @Flag(help: "Run the downstream-utility test (needs --test; classes = subfolders).") var utility = false
    @Option(help: "Held-out real images for --utility.") var test: String?
    @Option(help: "Epochs of the utility classifiers.") var utilityEpochs: Int = 15
    @Option(help: "Seed for KID's subsets and the utility classifiers.") var seed: UInt64 = 0
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if utility && test == nil { throw ValidationError("--utility needs --test DIR (held-out real images, one subfolder per class)") }
        if test != nil && !utility { throw ValidationError("--test is only used with --utility") }
        if k < 1 { throw ValidationError("--k must be at least 1") }
        if kidSubsets < 1 { throw ValidationError("--kid-subsets must be at least 1") }
        if utilityEpochs < 1 { throw ValidationError("--utility-epochs must be at least 1") }
    }

    func run() throws {
        runtime.apply()
        var request = EvaluationRequest(real: URL(fileURLWithPath: real), synthetic: URL(fileURLWithPath: synthetic), out: URL(fileURLWithPath: out))
        request.train = train.map { URL(fileURLWithPath: $0) }
        request.test = test.map { URL(fileURLWithPath: $0) }
        request.featuresOut = featuresOut.map { URL(fileURLWithPath: $0) }
        request.featuresType = featuresFloat64 ? .float64 : .float32
        request.featureWeights = featureWeights.map { URL(fileURLWithPath: $0) }
        request.k = k
        request.kidSubsets = kidSubsets
        request.seed = seed
        request.utility.epochs = utilityEpochs
        let report = try evaluate(request, progress: runtime.progress)
        print(evaluationSummary(report))
        print("report: \(URL(fileURLWithPath: out).appendingPathComponent("report.html").path)")
        if Profiler.isEnabled { FileHandle.standardError.write(Data("time per op (MEDSYNTH_PROFILE=1):\n\(Profiler.report())\n".utf8)) }
    }
}
