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
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Noise schedule: cosine or linear.") var schedule: NoiseScheduleKind = .cosine
    @Option(help: "Prediction target: epsilon or v.") var target: PredictionTarget = .epsilon
    @Option(help: "AdamW learning rate.") var learningRate: Float = 2e-4
    @Option(help: "Probability of training a sample with the null label (classifier-free guidance).") var labelDropout: Float = 0.1
    @Option(help: "DDIM steps for the sample grids.") var gridSteps: Int = 25
    @Option(help: "Latent diffusion: a VAE run folder or model file; the U-Net learns its (scaled) latents and the saved model embeds it.") var autoencoder: String?

    func run() throws {
        runtime.apply()
        var options = DiffusionTrainingOptions()
        options.schedule = schedule
        options.target = target
        options.learningRate = learningRate
        options.labelDropout = labelDropout
        var request = common.request()
        request.autoencoder = autoencoder
        let out = URL(fileURLWithPath: common.out)
        // A resumed latent run needs no --autoencoder: its checkpoint says what it is.
        let latent = autoencoder != nil || (common.resume && runFolderKind(out) == .latentDiffusion)
        let result = latent
            ? try trainLatentDiffusion(request, options: options, out: out, resume: common.resume, progress: runtime.progress, gridSteps: gridSteps)
            : try trainDiffusion(request, options: options, out: out, resume: common.resume, progress: runtime.progress, gridSteps: gridSteps)
        print("trained to step \(result.finalStep); model: \(result.run.model.path)")
    }
}
