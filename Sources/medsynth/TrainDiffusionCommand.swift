import ArgumentParser
import Foundation
import Core
import Engine
import Generators

extension DiffusionLossWeighting: ExpressibleByArgument {}

struct TrainDiffusion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffusion",
        abstract: "Train a U-Net diffusion model (DDPM; UNet-S layout), optionally class-conditional with classifier-free guidance.",
        discussion: """
        Conditional models add a label embedding to the time embedding; labels are dropped to the extra
        "no label" token with probability --label-dropout so `generate --guidance W` can steer at sampling.
        The defaults are the fast CPU recipe: v-prediction, min-SNR-5 weighting truncated below at 1 (Salimans & Ho), learning rate 1e-3 with
        100 warm-up steps, gradient clipping at 1, zero-initialised residual outputs; --legacy-recipe
        starts from the old defaults (ε, 2e-4, no weighting/warm-up/clipping) instead.
        """)

    @OptionGroup var common: TrainingOptionsGroup
    @Flag(help: "Start from the pre-issue-12 recipe (ε, LR 2e-4, uniform loss, no warm-up/clipping/zero-init); other options still apply.")
    var legacyRecipe = false
    @Option(help: "Noise schedule: cosine or linear.") var schedule: NoiseScheduleKind?
    @Option(help: "Prediction target: epsilon or v (default v).") var target: PredictionTarget?
    @Option(help: "AdamW peak learning rate (default 1e-3).") var learningRate: Float?
    @Option(help: "Loss weighting over noise levels: uniform, min-snr or min-snr-truncated (default min-snr-truncated).") var lossWeighting: DiffusionLossWeighting?
    @Option(help: "γ of min-SNR-γ weighting (default 5).") var minSnrGamma: Float?
    @Option(help: "Linear learning-rate warm-up steps (default 100; 0 = none).") var warmupSteps: Int?
    @Option(help: "Global gradient-norm clipping threshold (default 1; 0 = none).") var gradClip: Float?
    @Option(help: "EMA decay of the sampling weights (default 0.999).") var emaDecay: Float?
    @Option(help: "Zero-initialise residual outputs and the output conv: true or false (default true).") var zeroInit: Bool?
    @Option(help: "Scale of the initial class embedding (default 0.1).") var classEmbeddingScale: Float?
    @Flag(help: "Augment with random horizontal flips (off by default: anatomy is not mirror-symmetric).") var augmentFlips = false
    @Option(help: "Augment with random shifts of up to this many pixels (default 0 = off).") var augmentShift: Int?
    @Option(help: "Multiply the noise schedule's signal-to-noise ratio at every step by this factor (Hoogeboom et al. 2023's shifted schedule; default 1; > 1 = less noise, for low-resolution inputs such as latents).")
    var snrShift: Double?
    @Option(help: "Input perturbation γ (Ning et al. 2023): train on x_t made with ε + γ·ξ while predicting ε's target, against the drift of the model's own samples (the paper uses 0.1; default 0 = off).")
    var inputPerturbation: Float?
    @Option(help: "U-Net width multiplier per level, comma-separated (default 1,2,4,4: four levels, each after the first at half the side).")
    var channelMultipliers: String?
    @Option(help: "Image (or latent) sides whose U-Net levels get self-attention, comma-separated (default: the coarsest level for pixel models, half the latent side for latent models).")
    var attentionResolutions: String?
    @Option(help: "Learning-rate schedule after the warm-up: 'constant' (default) or 'cosine' (Loshchilov & Hutter 2017: decays to 0 at the --steps the run started with; a resumed run keeps its saved schedule).")
    var lrSchedule: LearningRateSchedule?
    @Option(help: "Probability of training a sample with the null label (classifier-free guidance).") var labelDropout: Float = 0.1
    @Option(help: "DDIM steps for the sample grids.") var gridSteps: Int = 25
    @Option(help: "After training, print the x0 error per timestep against the exact optimal denoiser of the training set and the corner mean of this many samples per class (0 = no report).")
    var report: Int = 0
    @Option(help: "With --report: also sample with these timestep spacings (comma-separated: leading, trailing, linspace, log-snr) and write the samples as PNGs under this folder's <spacing>/<class>/.")
    var reportSpacings: String?
    @Option(help: "With --report: folder for the report's samples.") var reportOut: String?
    @Option(help: "Latent diffusion: a VAE run folder or model file; the U-Net learns its (scaled) latents and the saved model embeds it.") var autoencoder: String?
    @Option(help: "Latent diffusion: 'global' (one scale for all latent channels, 1/std of all values) 'channel' (each channel shifted and scaled to mean 0, std 1 over the training latents) or 'centred' (each channel shifted to mean 0, all scaled by the global factor). Default global.")
    var latentNormalisation: LatentNormalisation?

    enum LearningRateSchedule: String, ExpressibleByArgument { case constant, cosine }

    func parseIntegerList(_ text: String, option: String) throws -> [Int] {
        let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(option): expected comma-separated integers, got '\(text)'") }
        return values.map { $0! }
    }

    func run() throws {
        var options = legacyRecipe ? DiffusionTrainingOptions.legacy : DiffusionTrainingOptions()
        if let schedule { options.schedule = schedule }
        if let target { options.target = target }
        if let learningRate { options.learningRate = learningRate }
        if let lossWeighting { options.lossWeighting = lossWeighting }
        if let minSnrGamma { options.minSNRGamma = minSnrGamma }
        if let warmupSteps { options.warmupSteps = warmupSteps }
        if let gradClip { options.gradientClipNorm = gradClip }
        if let emaDecay { options.emaDecay = emaDecay }
        if let zeroInit { options.zeroInitialization = zeroInit }
        if let classEmbeddingScale { options.classEmbeddingScale = classEmbeddingScale }
        if augmentFlips { options.augmentFlips = true }
        if let augmentShift { options.augmentShift = augmentShift }
        if let snrShift { options.snrShift = snrShift }
        if let inputPerturbation { options.inputPerturbation = inputPerturbation }
        if lrSchedule == .cosine { options.cosineDecaySteps = common.steps }
        options.labelDropout = labelDropout
        try options.validate()
        var request = common.request()
        request.autoencoder = autoencoder
        request.channelMultipliers = try channelMultipliers.map { try parseIntegerList($0, option: "--channel-multipliers") }
        request.attentionResolutions = try attentionResolutions.map { try parseIntegerList($0, option: "--attention-resolutions") }
        if let latentNormalisation {
            guard autoencoder != nil else { throw ValidationError("--latent-normalisation needs --autoencoder") }
            request.latentNormalisation = latentNormalisation
        }
        var trained: TrainingRunResult? = nil
        try common.train { _, out, resume, progress in
            trained = try trainDiffusion(request, options: options, out: out, resume: resume, progress: progress, gridSteps: gridSteps)
            return trained!
        }
        if report > 0, let result = trained {
            var spacings: [TimestepSpacing?] = [nil]
            if let reportSpacings {
                spacings = try reportSpacings.split(separator: ",").map { name in
                    guard let spacing = TimestepSpacing(rawValue: String(name)) else {
                        throw ValidationError("--report-spacings: unknown spacing '\(name)' (leading, trailing, linspace, log-snr)")
                    }
                    return spacing
                }
            }
            print(try diffusionQualityReport(model: result.run.model, data: request.data, sampleCount: report,
                                             spacings: spacings, samplesOut: reportOut.map { URL(fileURLWithPath: $0) }))
        }
    }
}
