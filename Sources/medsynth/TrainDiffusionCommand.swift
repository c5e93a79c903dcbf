import ArgumentParser
import Foundation
import Core
import Engine
import Generators

struct TrainDiffusion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffusion",
        abstract: "Train a U-Net diffusion model (DDPM; UNet-S layout), optionally class-conditional with classifier-free guidance.",
        discussion: """
        Conditional models add a label embedding to the time embedding; labels are dropped to the extra
        "no label" token with probability --label-dropout so `generate --guidance W` can steer at sampling.
        """)

    @OptionGroup var common: TrainingOptionsGroup
    @Option(help: "Noise schedule: cosine or linear.") var schedule: NoiseScheduleKind = .cosine
    @Option(help: "Prediction target: epsilon or v.") var target: PredictionTarget = .epsilon
    @Option(help: "AdamW learning rate.") var learningRate: Float = 2e-4
    @Option(help: "Probability of training a sample with the null label (classifier-free guidance).") var labelDropout: Float = 0.1
    @Option(help: "DDIM steps for the sample grids.") var gridSteps: Int = 25

    func run() throws {
        var options = DiffusionTrainingOptions()
        options.schedule = schedule; options.target = target
        options.learningRate = learningRate; options.labelDropout = labelDropout
        try common.train { try trainDiffusion($0, options: options, out: $1, resume: $2, progress: $3, gridSteps: gridSteps) }
    }
}
