import ArgumentParser
import Foundation
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
    @Option(help: "Do this shard K/N of the run.") var shard: String = "0/1"
    @Option(help: "PNG bit depth: 8 or 16.") var bitDepth: Int = 8
    @Flag(help: "Keep existing samples (each checked: decodes, right size and depth) and make only the missing or invalid ones.") var resume = false
    @Option(help: "Diffusion sampler: ddim, ddpm or dpm (DPM-Solver++ 2M).") var sampler: String = "ddim"
    @Option(help: "Diffusion sampling steps.") var steps: Int = 50
    @Option(help: "Classifier-free guidance scale w (1 = plain conditional, 0 = unconditional).") var guidance: Double = 1
    @Option(help: "DDIM eta (0 = deterministic).") var eta: Double = 0
    @Option(help: "Progress display: human, json or none.") var progress: ProgressStyle = .human
    @Option(help: "Threads (default: all cores).") var threads: Int?

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        var request = GenerationRequest(model: model, count: count, out: URL(fileURLWithPath: out))
        request.className = className
        request.seed = seed
        request.batchSize = batchSize
        request.shard = try Shard(parsing: shard)
        request.bitDepth = bitDepth
        request.resume = resume
        request.diffusion.sampler = sampler
        request.diffusion.steps = steps
        request.diffusion.guidance = guidance
        request.diffusion.eta = eta
        let report = try generateImages(request, progress: progress)
        if !report.removedTemporaries.isEmpty {
            print("removed \(report.removedTemporaries.count) temporary file(s) left by an interrupted run")
        }
        for (file, reason) in report.replaced { print("made again: \(file.path): \(reason)") }
        print("wrote \(report.written) image(s)\(report.skipped > 0 ? ", kept \(report.skipped) existing" : ""); manifest: \(report.manifest.path)")
    }
}
