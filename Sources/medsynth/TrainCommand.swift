import ArgumentParser
import Foundation
import Core
import Engine
import Generators

/// Options every trainer takes, so a user switches models with one word.
struct TrainingOptionsGroup: ParsableArguments {
    @Option(help: "Dataset folder (one subfolder per class, or images directly inside).") var data: String
    @Option(help: "Run folder: checkpoints, sample grids, losses.csv, model.safetensors.") var out: String
    @Option(help: "Image side in pixels.") var imageSize: Int = 64
    @Option(help: "1 (grayscale) or 3 (RGB).") var channels: Int = 1
    @Option(help: "Total training steps (a resumed run continues up to this).") var steps: Int = 2000
    @Option(name: .customLong("batch"), help: "Batch size.") var batchSize: Int = 32
    @Option(help: "Seed for every random choice of the run.") var seed: UInt64 = 0
    @Flag(help: "Condition on the class subfolders.") var conditional = false
    @Flag(help: "Continue the run in --out from its last checkpoint.") var resume = false
    @Option(help: "Keep a numbered checkpoint every N steps (latest.safetensors is refreshed then too).") var checkpointEvery: Int = 500
    @Option(help: "Write a sample grid every N steps.") var sampleEvery: Int = 250
    @Option(help: "Network width: DCGAN ngf = ndf (default 64), U-Net base width (default 32).") var width: Int?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard channels == 1 || channels == 3 else { throw ValidationError("--channels must be 1 or 3") }
        guard steps > 0, batchSize > 0, checkpointEvery > 0, sampleEvery > 0 else {
            throw ValidationError("--steps, --batch, --checkpoint-every and --sample-every must be positive")
        }
    }

    /// Applies --threads, runs `train` on the parsed request and says where the model went.
    func train(_ train: (_ request: TrainingRequest, _ out: URL, _ resume: Bool, _ progress: ProgressStyle) throws -> TrainingRunResult) throws {
        runtime.apply()
        let result = try train(request(), URL(fileURLWithPath: out), resume, runtime.progress)
        print("trained to step \(result.finalStep); model: \(result.run.model.path)")
    }

    func request() -> TrainingRequest {
        var r = TrainingRequest(data: data)
        r.imageSize = imageSize; r.channels = channels; r.steps = steps; r.batchSize = batchSize; r.seed = seed
        r.conditional = conditional; r.checkpointEvery = checkpointEvery; r.sampleEvery = sampleEvery; r.width = width
        return r
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a generator on a dataset folder.",
        subcommands: [TrainGAN.self, TrainDiffusion.self, TrainVAE.self])
}

struct TrainGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Train a DCGAN (Radford et al. 2015; 32, 64 or 128 px), optionally class-conditional.",
        discussion: """
        Conditional models feed a one-hot label to the generator and use a projection discriminator
        (Miyato & Koyama 2018). Differentiable augmentation (translation, cutout, brightness, contrast)
        is on by default below 2,000 images; flips only with --flips (anatomy has a side).
        """)

    @OptionGroup var common: TrainingOptionsGroup
    @Option(help: "Loss: bce (non-saturating) or hinge.") var loss: GANLoss = .bce
    @Option(help: "Learning rate for both networks.") var learningRate: Float = 2e-4
    @Flag(inversion: .prefixedNo, help: "Differentiable augmentation before D (default: on below 2,000 images).") var augment: Bool? = nil
    @Flag(help: "Allow horizontal flips in the augmentation.") var flips = false

    func run() throws {
        var options = GANTrainingOptions()
        options.loss = loss; options.learningRate = learningRate
        options.augment = augment; options.augmentation.horizontalFlip = flips
        try common.train { try trainGAN($0, options: options, out: $1, resume: $2, progress: $3) }
    }
}
