import ArgumentParser
import Foundation
import Core
import Engine
import Generators

extension ReconstructionLoss: ExpressibleByArgument {}

struct TrainVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Train a variational autoencoder (latent-diffusion layout: GroupNorm residual blocks, diagonal Gaussian latent).",
        discussion: """
        The run folder is like every trainer's; its sample grids show the dataset's first images above their
        reconstructions. model.safetensors records the latent scale factor (1 / std of the training latents)
        that `train diffusion --autoencoder` uses. `--width` is the base width (default 32).
        """)

    @OptionGroup var common: TrainingOptionsGroup
    @Option(help: "Downsampling factor: 2, 4 or 8 (64 px → 16×16 latent at 4).") var downsamplingFactor: Int = 4
    @Option(help: "Latent channels.") var latentChannels: Int = 4
    @Option(help: "Reconstruction loss: l1 or l2.") var reconstruction: ReconstructionLoss = .l1
    @Option(help: "KL weight relative to the per-image sum of reconstruction errors (Rombach et al. use 1e-6).") var klWeight: Float = 1e-6
    @Option(help: "Adam learning rate.") var learningRate: Float = 5e-4
    @Option(help: "Weight of the scale-equivariance term (Skorokhodov et al. 2025): decode the 2×2-pooled latent to the 2×2-pooled image, for latents a diffusion model learns more easily (default 0 = off).")
    var scaleEquivariance: Float = 0
    @Option(help: "Start a new run from this VAE model file's weights (fine-tuning); its configuration must match the run's.")
    var initFrom: String?
    @Option(help: "Latent denoising (Yang et al. 2025): the decoder learns to reconstruct from latents with Gaussian noise of up to this many latent standard deviations (per image uniform in [0, σ]; default 0 = off).")
    var decoderNoise: Float = 0
    @Flag(help: "Train the decoder only (with --init-from: latent models trained on that VAE's latents stay valid).")
    var freezeEncoder = false

    func validate() throws {
        guard [2, 4, 8].contains(downsamplingFactor) else { throw ValidationError("--downsampling-factor must be 2, 4 or 8") }
        guard latentChannels >= 1, latentChannels <= 64 else { throw ValidationError("--latent-channels must be 1...64") }
        guard klWeight >= 0, klWeight.isFinite, learningRate > 0, learningRate.isFinite else {
            throw ValidationError("--kl-weight must be >= 0 and --learning-rate positive")
        }
        guard scaleEquivariance >= 0, scaleEquivariance <= 100 else { throw ValidationError("--scale-equivariance must be in [0, 100]") }
        guard decoderNoise >= 0, decoderNoise <= 10 else { throw ValidationError("--decoder-noise must be in [0, 10]") }
    }

    func run() throws {
        common.runtime.apply()
        var request = common.request()
        request.downsamplingFactor = downsamplingFactor
        request.latentChannels = latentChannels
        var options = VAETrainingOptions()
        options.reconstruction = reconstruction
        options.klWeight = klWeight
        options.learningRate = learningRate
        options.scaleEquivariance = scaleEquivariance
        options.decoderNoise = decoderNoise
        options.freezeEncoder = freezeEncoder
        let result = try trainVAE(request, options: options, out: URL(fileURLWithPath: common.out), resume: common.resume,
                                  initialWeights: initFrom.map { URL(fileURLWithPath: $0) }, progress: common.runtime.progress)
        let psnr = result.lastValues?["psnr"].map { String(format: "; last batch PSNR %.2f dB", $0) } ?? ""
        print("trained to step \(result.finalStep)\(psnr); model: \(result.run.model.path)")
    }
}
