import ArgumentParser
import Foundation
import Engine
import Evaluation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare synthetic images with real ones: Fréchet distance, KID, precision/recall/density/coverage, memorisation, HTML report.",
        discussion: """
        Features come from medsynth-random-cnn-v1, a fixed seeded random CNN on 64×64 gray inputs (see
        Sources/Evaluation/FeatureNetwork.swift), or from --feature-weights. With class subfolders in both
        sets the metrics are also given per class. Writes OUT/report.json and OUT/report.html.
        """)

    @Option(help: "Folder of real images (classes = subfolders).") var real: String
    @Option(help: "Folder of synthetic images.") var synthetic: String
    @Option(help: "The generator's training set, for the memorisation check (default: --real).") var train: String?
    @Option(help: "Output folder for report.json and report.html.") var out: String = "evaluation"
    @Option(help: "Also write real_features.npy and synthetic_features.npy here.") var featuresOut: String?
    @Option(help: "A safetensors file with trained weights for the feature network's layout.") var featureWeights: String?
    @Option(help: "k for the nearest-neighbour metrics.") var k: Int = 5
    @Option(help: "Seed for KID's subsets.") var seed: UInt64 = 0
    @Option(help: "Progress display: human, json or none.") var progress: ProgressStyle = .human

    func run() throws {
        var request = EvaluationRequest(real: URL(fileURLWithPath: real), synthetic: URL(fileURLWithPath: synthetic), out: URL(fileURLWithPath: out))
        request.train = train.map { URL(fileURLWithPath: $0) }
        request.featuresOut = featuresOut.map { URL(fileURLWithPath: $0) }
        request.featureWeights = featureWeights.map { URL(fileURLWithPath: $0) }
        request.k = k
        request.seed = seed
        let report = try evaluate(request, progress: progress)
        let o = report.overall
        print(String(format: "FD %.3f  KID %.5f ± %.5f  precision %.3f  recall %.3f  density %.3f  coverage %.3f  memorised %.1f%%",
                     o.fid, o.kid_mean, o.kid_std, o.prdc.precision, o.prdc.recall, o.prdc.density, o.prdc.coverage,
                     100 * report.memorisation.fraction_below_threshold))
        print("report: \(URL(fileURLWithPath: out).appendingPathComponent("report.html").path)")
    }
}
