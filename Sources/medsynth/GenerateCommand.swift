import ArgumentParser
import Foundation
import Core
import Engine
import Generators

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a trained model (GAN or diffusion), reproducibly per sample.",
        discussion: """
        Sample i depends only on (--seed, i): any --batch and any --shard layout give the same files.
        --shard K/N makes samples K, K+N, K+2N, … and writes manifest.shard-K-of-N.jsonl; merge shards with
        `medsynth manifest merge`.
        """)

    @Option(help: "A run folder (uses its model.safetensors) or a checkpoint file.") var model: String
    @Option(help: "Total number of samples of the whole run (all shards).") var count: Int
    @Option(help: "Output folder.") var out: String
    @Option(name: .customLong("class"), help: "Class to generate (conditional models); default: cycle through classes.") var className: String?
    @Option(help: "Seed; sample i uses stream i of it.") var seed: UInt64 = 0
    @Option(name: .customLong("batch"), help: "Images per forward pass (does not change the images).") var batchSize: Int = 32
    @Option(help: "Do this shard K/N of the run (0 <= K < N).") var shard: Shard = .whole
    @Option(help: "PNG bit depth: 8 or 16.") var bitDepth: Int = 8
    @Flag(help: "Keep existing samples (each checked: decodes, right size and depth) and make only the missing or invalid ones.") var resume = false
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard bitDepth == 8 || bitDepth == 16 else { throw ValidationError("--bit-depth must be 8 or 16") }
    }

    func run() throws {
        runtime.apply()
        var request = GenerationRequest(model: model, count: count, out: URL(fileURLWithPath: out))
        request.className = className; request.seed = seed; request.batchSize = batchSize
        request.shard = shard; request.bitDepth = bitDepth; request.resume = resume
        request.sampling = sampling.settings
        let report = try generateImages(request, progress: runtime.progress)
        if !report.removedTemporaries.isEmpty {
            print("removed \(report.removedTemporaries.count) temporary file(s) left by an interrupted run")
        }
        for (file, reason) in report.replaced { print("made again: \(file.path): \(reason)") }
        print("wrote \(report.written) image(s)\(report.skipped > 0 ? ", kept \(report.skipped) existing" : ""); manifest: \(report.manifest.path)")
    }
}
