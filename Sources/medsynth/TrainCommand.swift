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
        abstract: "Train a DCGAN (Radford et al. 2015; 16 to 128 px, or on a VAE's latents), optionally class-conditional.",
        discussion: """
        Conditional models feed a one-hot label to the generator and use a projection discriminator
        (Miyato & Koyama 2018). Default recipe (issue 14, measured on mni64): BCE loss, Adam 2e-4 with
        β = (0.5, 0.999), BatchNorm D, resize-convolution upsampling in G (Odena et al. 2016),
        differentiable augmentation (translation, cutout, brightness, contrast; Zhao et al. 2020) on
        every image, on by default below 2,000 images; flips only with --flips (anatomy has a side).
        Options: --spectral-norm (Miyato et al. 2018), --ada (Karras et al. 2020), --d-learning-rate
        (TTUR, Heusel et al. 2017), --loss hinge, --upsample transposed, --lecam-weight (Tseng et al. 2021),
        --minibatch-std (Karras et al. 2018), --mode-seeking (Mao et al. 2019),
        --r1-gamma (Mescheder et al. 2018);
        --legacy is the recipe before issue 14.
        With --autoencoder VAE the DCGAN learns that VAE's latents instead of pixels (a latent GAN,
        as Achlioptas et al. 2018) and its samples are decoded by it; on mni64 the shipped VAE's 8×8×16
        latents with --width 256 --extra-layers 2 measured best (README, "The GAN recipe").
        """)

    @OptionGroup var common: TrainingOptionsGroup
    @Flag(help: "Start from the recipe before issue 14 (transposed-conv G); other flags still apply.") var legacy = false
    @Option(help: "Loss: bce (non-saturating, default) or hinge.") var loss: GANLoss?
    @Option(help: "Learning rate of G, and of D unless --d-learning-rate (default 2e-4).") var learningRate: Float?
    @Option(help: "Learning rate of D (two time-scale update rule, e.g. 4e-4; default: G's).") var dLearningRate: Float?
    @Option(help: "Adam β1 (default 0.5).") var beta1: Float?
    @Option(help: "Adam β2 (default 0.999).") var beta2: Float?
    @Option(help: "EMA decay of G's sampling weights (default 0.999, warmed up as (1+s)/(10+s)).") var emaDecay: Float?
    @Flag(inversion: .prefixedNo, help: "Spectral normalisation of D's weights (D then has no BatchNorm; default off).") var spectralNorm: Bool? = nil
    @Option(help: "G's upsampling: resize (nearest ×2 + 3×3 conv, default), bilinear (bilinear ×2 + 3×3 conv) or transposed (4×4 stride 2).") var upsample: GANUpsampling?
    @Flag(inversion: .prefixedNo, help: "Differentiable augmentation before D (default: on below 2,000 images).") var augment: Bool? = nil
    @Flag(inversion: .prefixedNo, help: "Adaptive augmentation probability (ADA; default off: every op on every image).") var ada: Bool? = nil
    @Option(help: "ADA's target for E[sign(D(real))] (default 0.6).") var adaTarget: Float?
    @Option(help: "ADA's speed: images over which p can move from 0 to 1 (default 5000).") var adaSpeed: Int?
    @Flag(help: "Allow horizontal flips in the augmentation.") var flips = false
    @Option(help: "Augmentation ops before D, comma-separated from brightness, contrast, colour (both), translation, cutout (default: all four).") var augmentOps: String?
    @Option(help: "Decay both learning rates linearly to 0 over the last N steps of --steps (Zhu et al. 2017; default 0 = constant). Also accepted with --resume, to finish a run that has stopped improving.") var lrDecaySteps: Int?

    @Option(help: "LeCam regularisation weight λ of D (Tseng et al. 2021, for limited data; e.g. 0.3; default 0 = off).") var lecamWeight: Float?
    @Option(help: "Decay of LeCam's moving averages of D's logits (default 0.99).") var lecamDecay: Float?
    @Option(help: "Weight λ of MSGAN's mode-seeking term in G's loss (Mao et al. 2019; e.g. 1; default 0 = off).") var modeSeeking: Float?
    @Option(help: "The mode-seeking term compares means of this many × this many pixels (default 1: pixels, as in the paper).") var modeSeekingBlock: Int?
    @Option(help: "R1 gradient penalty γ on reals (Mescheder et al. 2018), estimated by finite differences; e.g. 1; default 0 = off.") var r1Gamma: Float?
    @Option(help: "Steps between R1 penalties (lazy regularisation, γ scaled by it; default 4).") var r1Interval: Int?
    @Flag(inversion: .prefixedNo, help: "Minibatch standard deviation channel before D's last conv (Karras et al. 2018; default off).") var minibatchStd: Bool? = nil
    @Option(help: "G's width (ngf) when it should differ from D's (--width).") var generatorWidth: Int?
    @Option(help: "Weight λ of FastGAN's self-supervised reconstruction loss on D: decoders rebuild the real images from D's 8×8 and 16×16 features (Liu et al. 2021; 64 px or more; e.g. 1; default 0 = off).") var reconstructionWeight: Float?
    @Flag(help: "Skip-layer excitation in G: each block from the third on is gated per channel by the block two levels coarser (FastGAN, Liu et al. 2021; 32 px or more; default off).") var skipExcitation = false
    @Option(help: "Self-conditioning: cluster each class's images into K groups (k-means on 16×16 block means) and condition G and D on the group, so G keeps every kind of image (Liu et al. 2020; e.g. 10; default 1 = off: on mni64 it raised FD in the middle of a run but lowered recall).") var selfCondition: Int?
    @Option(help: "3×3 conv layers G adds at full resolution and D before its first downsampling (for a latent GAN's small grid; e.g. 2; default 0).") var extraLayers: Int?
    @Option(help: "Latent GAN (as Achlioptas et al. 2018): a VAE run folder or model file; G and D work on its latents (each channel scaled to mean 0, std 1), samples are decoded by it, and the saved model embeds it.") var autoencoder: String?
    @Option(help: "PacGAN: D judges this many samples at once, stacked as channels (Lin et al. 2018; 1 to 4; default 1 = off; --batch must be a multiple).") var packing: Int?

    func run() throws {
        var options = legacy ? GANTrainingOptions.legacy : GANTrainingOptions()
        if let loss { options.loss = loss }
        if let learningRate { options.learningRate = learningRate }
        if let dLearningRate { options.discriminatorLearningRate = dLearningRate }
        if let beta1 { options.beta1 = beta1 }
        if let beta2 { options.beta2 = beta2 }
        if let emaDecay { options.emaDecay = emaDecay }
        if let spectralNorm { options.spectralNorm = spectralNorm }
        if let upsample { options.upsample = upsample }
        if let ada { options.adaptiveAugmentation = ada }
        if let adaTarget { options.adaTarget = adaTarget }
        if let adaSpeed { options.adaSpeedImages = adaSpeed }
        options.augment = augment; options.augmentation.horizontalFlip = flips
        if let augmentOps {
            try options.augmentation.enableOnly(augmentOps.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        if let lrDecaySteps { options.learningRateDecaySteps = lrDecaySteps }
        if let lecamWeight { options.lecamWeight = lecamWeight }
        if let lecamDecay { options.lecamDecay = lecamDecay }
        if let minibatchStd { options.minibatchStd = minibatchStd }
        if let modeSeeking { options.modeSeekingWeight = modeSeeking }
        if let modeSeekingBlock { options.modeSeekingBlock = modeSeekingBlock }
        if let r1Gamma { options.r1Gamma = r1Gamma }
        if let r1Interval { options.r1Interval = r1Interval }
        if let packing { options.packing = packing }
        if let generatorWidth { options.generatorWidth = generatorWidth }
        if skipExcitation { options.skipExcitation = true }
        if let reconstructionWeight { options.reconstructionWeight = reconstructionWeight }
        if let selfCondition { options.selfConditionClusters = selfCondition }
        if let extraLayers { options.extraLayers = extraLayers }
        try options.validate()
        try common.train { request, out, resume, progress in
            var request = request
            request.autoencoder = autoencoder
            // A resumed latent run needs no --autoencoder: its checkpoint says what it is.
            if autoencoder != nil || (resume && runFolderKind(out) == .latentGAN) {
                return try trainLatentGAN(request, options: options, out: out, resume: resume, progress: progress)
            }
            return try trainGAN(request, options: options, out: out, resume: resume, progress: progress)
        }
    }
}
