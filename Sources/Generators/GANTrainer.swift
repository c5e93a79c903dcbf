import Core
import Engine
import Layers

// MARK: - GAN losses (free functions) and the alternating update

public enum GANLoss: String, Codable, CaseIterable {
    /// Non-saturating BCE (Goodfellow et al. 2014): D maximises log D(x) + log(1 − D(G(z))), G maximises log D(G(z)).
    case bce
    /// Hinge (Lim & Ye 2017; Miyato et al. 2018).
    case hinge
}

func discriminatorLoss(_ kind: GANLoss, real: Tensor, fake: Tensor) -> Tensor {
    switch kind {
    case .bce:
        return add(bceWithLogits(real, targets: [Float](repeating: 1, count: real.count)),
                   bceWithLogits(fake, targets: [Float](repeating: 0, count: fake.count)))
    case .hinge:
        return add(mean(relu(scale(real, -1) + Tensor(filled: 1, shape: real.shape))),
                   mean(relu(fake + Tensor(filled: 1, shape: fake.shape))))
    }
}

func generatorLoss(_ kind: GANLoss, fake: Tensor) -> Tensor {
    switch kind {
    case .bce: return bceWithLogits(fake, targets: [Float](repeating: 1, count: fake.count))
    case .hinge: return scale(mean(fake), -1)
    }
}

/// Numbers reported after each step.
public struct GANStepStats {
    public var discriminatorLoss: Float
    public var generatorLoss: Float
    /// Mean of σ(D(x)) on real images and σ(D(G(z))) on fakes, before the D update.
    public var dReal: Float
    public var dFake: Float
    /// Augmentation probability used in this step (1: every op always, 0: none).
    public var augmentProbability: Float = 1
    /// Mean sign of D's logits on the (augmented) reals of this step: ADA's overfitting signal.
    public var realSign: Float = 0
}

/// Settings of GAN training, stored in the run's checkpoint. `GANTrainingOptions()` is the best
/// combination measured on mni64 for issue 14 (README, "The GAN recipe"): the DCGAN recipe with a
/// resize-convolution G; spectral norm, hinge loss, TTUR and ADA are options. A checkpoint written
/// before a setting existed decodes it as `legacy`, i.e. as it was trained.
public struct GANTrainingOptions: Codable, Equatable {
    /// Adam learning rate of G (and of D unless `discriminatorLearningRate` is set).
    public var learningRate: Float = 2e-4
    /// Two time-scale update rule (Heusel et al. 2017): D's own rate; nil = `learningRate`.
    public var discriminatorLearningRate: Float? = nil
    public var beta1: Float = 0.5
    public var beta2: Float = 0.999
    public var loss: GANLoss = .bce
    /// Differentiable augmentation before D; nil: on below 2,000 images (decided when a run starts).
    public var augment: Bool? = nil
    public var augmentation = AugmentationOptions()
    /// EMA decay of G's weights, warmed up as min(decay, (1+s)/(10+s)) (see `ParameterEMA`).
    public var emaDecay: Float = 0.999
    /// Spectral normalisation of D's conv and projection weights (Miyato et al. 2018); D then has no BatchNorm.
    public var spectralNorm = false
    /// Adaptive augmentation probability (ADA, Karras et al. 2020): each DiffAugment op is applied
    /// per sample with probability p, adjusted every `adaInterval` steps towards r_t = `adaTarget`.
    /// Off: every op on every image (DiffAugment, Zhao et al. 2020).
    public var adaptiveAugmentation = false
    /// ADA's target for r_t = E[sign(D(real))] (the paper's 0.6).
    public var adaTarget: Float = 0.6
    /// Steps between adjustments of p (the paper's 4 minibatches).
    public var adaInterval: Int = 4
    /// Images over which p can move from 0 to 1. The paper's 500k suits runs of millions of images;
    /// a CPU run sees ~50k, so p must reach its level within the first ~10 % of training.
    public var adaSpeedImages: Int = 5_000
    /// G's upsampling; copied into the model config. Resize-convolution (Odena et al. 2016).
    public var upsample: GANUpsampling = .resize
    /// Both learning rates fall linearly to 0 over the last this many steps of the run (CycleGAN's
    /// schedule, Zhu et al. 2017); 0 keeps them constant. A resumed run may set it, so a run that
    /// has stopped improving can be finished with a decay (`--resume --steps N --lr-decay-steps K`).
    public var learningRateDecaySteps: Int = 0
    /// LeCam regularisation of D (Tseng et al. 2021, "Regularizing Generative Adversarial Networks
    /// under Limited Data"): λ · (E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²]) added to D's loss,
    /// with α_R, α_F moving averages of D's mean logit on reals and fakes. It keeps D's outputs on
    /// reals and fakes from drifting apart when D memorises a small training set. 0: off.
    public var lecamWeight: Float = 0
    /// Decay of the averages α_R, α_F (the paper's 0.99).
    public var lecamDecay: Float = 0.99
    /// Minibatch standard deviation before D's last conv (Karras et al. 2018, §3): D sees how varied
    /// each batch is, so a G that draws too few kinds of image loses. Off in files from before it existed.
    public var minibatchStd = false
    /// PacGAN (Lin et al. 2018): D judges this many samples at a time, stacked as channels, so a G
    /// that draws too few kinds of image is told apart by the lack of variety within a pack. 1: off.
    public var packing = 1
    /// G's width (ngf) when it differs from D's (`--width`); copied into the model config. nil: `--width`.
    public var generatorWidth: Int? = nil
    /// FastGAN's skip-layer excitation in G (Liu et al. 2021); copied into the model config.
    public var skipExcitation = false
    /// 3×3 convolutions G adds at full resolution and D before its first downsampling; copied into the model config.
    public var extraLayers = 0
    /// Self-conditioning (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs"):
    /// every class's images are clustered into this many groups before training (k-means on
    /// 16×16 block means) and G and D are conditioned on the cluster; copied into the model config. 1: off.
    public var selfConditionClusters = 1
    /// Weight λ of FastGAN's self-supervised reconstruction loss on D (Liu et al. 2021): two small
    /// decoders rebuild the real images D saw from its 8×8 and (one random quadrant of) its 16×16
    /// features, so D must keep a description of the whole image instead of a few telltale
    /// features of a small training set. 0: off.
    public var reconstructionWeight: Float = 0
    /// Weight λ of MSGAN's mode-seeking term added to G's loss (Mao et al. 2019; the paper's λ = 1):
    /// pairs of samples of one class are pushed apart in proportion to their latents' distance. 0: off.
    public var modeSeekingWeight: Float = 0
    /// The mode-seeking term compares block×block pixel means (1: pixels, as in the paper).
    public var modeSeekingBlock: Int = 1
    /// R1 gradient penalty γ/2 · E‖∇ₓD(x)‖² on reals (Mescheder et al. 2018), estimated without
    /// second derivatives: for ε ~ N(0, I), E[(∇D·ε)²] = ‖∇D‖², so (D(x + σε) − D(x))² / σ² with a
    /// small σ is an unbiased estimate in the limit and needs only one more D pass. Applied every
    /// `r1Interval` steps with γ scaled by the interval (StyleGAN2's lazy regularisation). 0: off.
    public var r1Gamma: Float = 0
    public var r1Interval: Int = 4
    /// σ of the finite difference, in pixel units of images in [−1, 1].
    public var r1Sigma: Float = 0.01

    public init() {}

    /// The recipe before issue 14: BCE, one learning rate 2e-4, Adam β = (0.5, 0.999), BatchNorm D,
    /// DiffAugment always on, transposed-conv G.
    public static var legacy: GANTrainingOptions {
        var o = GANTrainingOptions()
        o.learningRate = 2e-4; o.discriminatorLearningRate = nil; o.beta1 = 0.5; o.beta2 = 0.999; o.loss = .bce
        o.spectralNorm = false; o.adaptiveAugmentation = false; o.upsample = .transposed
        return o
    }

    /// The combination issue 14 asked for (measured worse on mni64 in short runs; see the README):
    /// hinge loss, spectral-norm D, TTUR (G 2e-4, D 4e-4), Adam β = (0, 0.9), ADA, resize-conv G.
    public static var spectralADA: GANTrainingOptions {
        var o = GANTrainingOptions()
        o.loss = .hinge; o.spectralNorm = true; o.discriminatorLearningRate = 4e-4; o.beta1 = 0; o.beta2 = 0.9
        o.adaptiveAugmentation = true; o.upsample = .resize
        return o
    }

    enum CodingKeys: String, CodingKey {
        case learningRate, discriminatorLearningRate, beta1, beta2, loss, augment, augmentation, emaDecay
        case spectralNorm, adaptiveAugmentation, adaTarget, adaInterval, adaSpeedImages, upsample, learningRateDecaySteps
        case lecamWeight, lecamDecay, minibatchStd, packing, generatorWidth, modeSeekingWeight
        case r1Gamma, r1Interval, r1Sigma, modeSeekingBlock, skipExcitation, reconstructionWeight, selfConditionClusters, extraLayers
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let old = GANTrainingOptions.legacy
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? old.learningRate
        discriminatorLearningRate = try c.decodeIfPresent(Float.self, forKey: .discriminatorLearningRate) ?? old.discriminatorLearningRate
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? old.beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? old.beta2
        loss = try c.decodeIfPresent(GANLoss.self, forKey: .loss) ?? old.loss
        augment = try c.decodeIfPresent(Bool.self, forKey: .augment) ?? old.augment
        augmentation = try c.decodeIfPresent(AugmentationOptions.self, forKey: .augmentation) ?? old.augmentation
        emaDecay = try c.decodeIfPresent(Float.self, forKey: .emaDecay) ?? old.emaDecay
        spectralNorm = try c.decodeIfPresent(Bool.self, forKey: .spectralNorm) ?? old.spectralNorm
        adaptiveAugmentation = try c.decodeIfPresent(Bool.self, forKey: .adaptiveAugmentation) ?? old.adaptiveAugmentation
        adaTarget = try c.decodeIfPresent(Float.self, forKey: .adaTarget) ?? old.adaTarget
        adaInterval = try c.decodeIfPresent(Int.self, forKey: .adaInterval) ?? old.adaInterval
        adaSpeedImages = try c.decodeIfPresent(Int.self, forKey: .adaSpeedImages) ?? old.adaSpeedImages
        upsample = try c.decodeIfPresent(GANUpsampling.self, forKey: .upsample) ?? old.upsample
        learningRateDecaySteps = try c.decodeIfPresent(Int.self, forKey: .learningRateDecaySteps) ?? old.learningRateDecaySteps
        lecamWeight = try c.decodeIfPresent(Float.self, forKey: .lecamWeight) ?? old.lecamWeight
        lecamDecay = try c.decodeIfPresent(Float.self, forKey: .lecamDecay) ?? old.lecamDecay
        minibatchStd = try c.decodeIfPresent(Bool.self, forKey: .minibatchStd) ?? old.minibatchStd
        packing = try c.decodeIfPresent(Int.self, forKey: .packing) ?? old.packing
        generatorWidth = try c.decodeIfPresent(Int.self, forKey: .generatorWidth) ?? old.generatorWidth
        modeSeekingWeight = try c.decodeIfPresent(Float.self, forKey: .modeSeekingWeight) ?? old.modeSeekingWeight
        modeSeekingBlock = try c.decodeIfPresent(Int.self, forKey: .modeSeekingBlock) ?? old.modeSeekingBlock
        r1Gamma = try c.decodeIfPresent(Float.self, forKey: .r1Gamma) ?? old.r1Gamma
        r1Interval = try c.decodeIfPresent(Int.self, forKey: .r1Interval) ?? old.r1Interval
        r1Sigma = try c.decodeIfPresent(Float.self, forKey: .r1Sigma) ?? old.r1Sigma
        skipExcitation = try c.decodeIfPresent(Bool.self, forKey: .skipExcitation) ?? old.skipExcitation
        reconstructionWeight = try c.decodeIfPresent(Float.self, forKey: .reconstructionWeight) ?? old.reconstructionWeight
        selfConditionClusters = try c.decodeIfPresent(Int.self, forKey: .selfConditionClusters) ?? old.selfConditionClusters
        extraLayers = try c.decodeIfPresent(Int.self, forKey: .extraLayers) ?? old.extraLayers
    }

    public func validate() throws {
        for (name, rate) in [("--learning-rate", learningRate), ("--d-learning-rate", discriminatorLearningRate ?? learningRate)] {
            guard rate > 0, rate.isFinite else { throw MedSynthError("\(name) must be positive, got \(rate)") }
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else { throw MedSynthError("Adam betas must be in [0, 1), got \(beta1), \(beta2)") }
        guard emaDecay >= 0, emaDecay < 1 else { throw MedSynthError("--ema-decay must be in [0, 1), got \(emaDecay)") }
        guard (-1...1).contains(adaTarget) else { throw MedSynthError("--ada-target must be in [-1, 1], got \(adaTarget)") }
        guard adaInterval > 0, adaSpeedImages > 0 else { throw MedSynthError("ADA interval and speed must be positive") }
        guard learningRateDecaySteps >= 0 else { throw MedSynthError("--lr-decay-steps must not be negative, got \(learningRateDecaySteps)") }
        guard lecamWeight >= 0, lecamWeight.isFinite else { throw MedSynthError("--lecam-weight must be 0 or positive, got \(lecamWeight)") }
        guard modeSeekingWeight >= 0, modeSeekingWeight.isFinite else { throw MedSynthError("--mode-seeking must be 0 or positive, got \(modeSeekingWeight)") }
        guard (1...64).contains(modeSeekingBlock) else { throw MedSynthError("--mode-seeking-block must be 1 to 64, got \(modeSeekingBlock)") }
        guard r1Gamma >= 0, r1Gamma.isFinite else { throw MedSynthError("--r1-gamma must be 0 or positive, got \(r1Gamma)") }
        guard reconstructionWeight >= 0, reconstructionWeight.isFinite else {
            throw MedSynthError("--reconstruction-weight must be 0 or positive, got \(reconstructionWeight)")
        }
        if reconstructionWeight > 0 && packing > 1 { throw MedSynthError("--reconstruction-weight does not work with --packing (D's features are per pack)") }
        guard r1Interval > 0 else { throw MedSynthError("--r1-interval must be positive, got \(r1Interval)") }
        guard r1Sigma > 0, r1Sigma.isFinite else { throw MedSynthError("--r1-sigma must be positive, got \(r1Sigma)") }
        guard lecamDecay >= 0, lecamDecay < 1 else { throw MedSynthError("--lecam-decay must be in [0, 1), got \(lecamDecay)") }
        if let generatorWidth, !(1...ModelConfigLimits.maxWidth).contains(generatorWidth) {
            throw MedSynthError("--generator-width must be 1 to \(ModelConfigLimits.maxWidth), got \(generatorWidth)")
        }
        guard (1...ModelConfigLimits.maxClusters).contains(selfConditionClusters) else {
            throw MedSynthError("--self-condition must be 1 to \(ModelConfigLimits.maxClusters) clusters per class, got \(selfConditionClusters)")
        }
        guard (0...GANConfig.maxExtraLayers).contains(extraLayers) else {
            throw MedSynthError("--extra-layers must be 0 to \(GANConfig.maxExtraLayers), got \(extraLayers)")
        }
        if extraLayers > 0 && (spectralNorm || reconstructionWeight > 0) {
            throw MedSynthError("--extra-layers does not work with --spectral-norm or --reconstruction-weight")
        }
        guard (1...GANTrainingOptions.maxPacking).contains(packing) else { throw MedSynthError("--packing must be 1 to \(GANTrainingOptions.maxPacking), got \(packing)") }
    }

    /// PacGAN's own experiments pack 2 to 4 samples.
    public static let maxPacking = 4

    /// The factor on both learning rates before update `step` (0-based) of a run of `totalSteps`.
    public func learningRateFactor(step: Int, totalSteps: Int) -> Float {
        guard learningRateDecaySteps > 0 else { return 1 }
        return max(0, min(1, (Float(totalSteps) - Float(step)) / Float(learningRateDecaySteps)))
    }
}

/// Owns G, D, their optimisers and the EMA generator; `step` is one D update then one G update,
/// as in the reference training step.
public final class GANTrainer {
    public let config: GANConfig
    public var options: GANTrainingOptions
    public let generator: DCGANGenerator
    public let discriminator: DCGANDiscriminator
    /// Exponential moving average of G's weights: what `generate` samples with.
    public let emaGenerator: DCGANGenerator
    public let optimizerG: Adam, optimizerD: Adam
    /// The run's length, for the learning-rate decay (set by the training driver); nil: rates as set.
    public var totalSteps: Int?
    /// Each dataset entry's self-conditioning label (class · K + cluster), set by `attach`.
    var selfConditioningLabels: [Int]? = nil
    public let ema: ParameterEMA
    /// ADA's p (starts at 0, as in the paper); part of the training state.
    public internal(set) var augmentProbability: Float = 0
    /// Σ sign(D(real)) and the number of logits since p was last adjusted.
    var realSignSum: Float = 0, realSignCount: Float = 0
    /// LeCam's moving averages of D's mean logit on reals and fakes (α_R, α_F), and whether they
    /// hold a value yet (the first step sets them); part of the training state.
    var lecamRealAverage: Float = 0, lecamFakeAverage: Float = 0, lecamStarted = false

    public init(config: GANConfig, options: GANTrainingOptions, seed: UInt64) {
        self.config = config; self.options = options
        var stream = RandomStream(seed: seed).split(.ganInitialisation)
        generator = DCGANGenerator(config, stream: &stream)
        discriminator = DCGANDiscriminator(config, spectralNorm: options.spectralNorm, minibatchStd: options.minibatchStd,
                                           packing: options.packing, reconstruction: options.reconstructionWeight > 0, stream: &stream)
        emaGenerator = DCGANGenerator(config, stream: &stream)
        emaGenerator.copyValues(from: generator)
        optimizerG = Adam(generator.parameters(), learningRate: options.learningRate, beta1: options.beta1, beta2: options.beta2)
        optimizerD = Adam(discriminator.parameters(), learningRate: options.discriminatorLearningRate ?? options.learningRate,
                          beta1: options.beta1, beta2: options.beta2)
        ema = ParameterEMA(generator, decay: options.emaDecay)
    }

    var augments: Bool { options.augment ?? true }

    /// The probability the next step augments with: ADA's p, or 1 (every op always) without ADA.
    public var currentAugmentProbability: Float {
        guard augments else { return 0 }
        return options.adaptiveAugmentation ? augmentProbability : 1
    }

    /// Updates α_R, α_F with this step's mean logits, then E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²]
    /// (the authors' code; the paper's equation has no relu).
    func lecamPenalty(real: Tensor, fake: Tensor) -> Tensor {
        let realMean = real.data.reduce(0, +) / Float(max(real.count, 1))
        let fakeMean = fake.data.reduce(0, +) / Float(max(fake.count, 1))
        let decay = lecamStarted ? options.lecamDecay : 0
        lecamRealAverage = decay * lecamRealAverage + (1 - decay) * realMean
        lecamFakeAverage = decay * lecamFakeAverage + (1 - decay) * fakeMean
        lecamStarted = true
        let realExcess = relu(add(real, Tensor(filled: -lecamFakeAverage, shape: real.shape)))
        let fakeShortfall = relu(add(scale(fake, -1), Tensor(filled: lecamRealAverage, shape: fake.shape)))
        return add(mean(mul(realExcess, realExcess)), mean(mul(fakeShortfall, fakeShortfall)))
    }

    /// E over the batch of (D(x + σε) − D(x))² / σ², the finite-difference estimate of ‖∇ₓD(x)‖².
    func r1Penalty(realInput: Tensor, realLogits: Tensor, labels: [Int]?, stream: inout RandomStream) -> Tensor {
        let sigma = options.r1Sigma
        let noise = Tensor(randomNormal: realInput.shape, std: sigma, stream: &stream)
        let shifted = discriminator(add(realInput, noise), labels: labels)
        return scale(mseLoss(shifted, realLogits), 1 / (sigma * sigma))
    }

    /// ADA's update (Karras et al. 2020, §3): every `adaInterval` steps, r_t = E[sign(D_train(x))]
    /// over those steps; p ← clamp(p + sign(r_t − target) · images / adaSpeedImages, 0, 1).
    func adaptAugmentation(realLogits: Tensor, step: Int) {
        for value in realLogits.data { realSignSum += value > 0 ? 1 : (value < 0 ? -1 : 0) }
        realSignCount += Float(realLogits.count)
        guard step % options.adaInterval == 0, realSignCount > 0 else { return }
        let rt = realSignSum / realSignCount
        let direction: Float = rt > options.adaTarget ? 1 : (rt < options.adaTarget ? -1 : 0)
        augmentProbability = min(1, max(0, augmentProbability + direction * realSignCount / Float(options.adaSpeedImages)))
        realSignSum = 0; realSignCount = 0
    }

    /// The sample pairs of the mode-seeking term: consecutive samples of the same class (every class's
    /// samples in batch order), or (0, 1), (2, 3), … without classes.
    static func modeSeekingPairs(labels: [Int]?, count: Int) -> [(Int, Int)] {
        guard let labels else { return stride(from: 0, to: count - 1, by: 2).map { ($0, $0 + 1) } }
        var open: [Int: Int] = [:], pairs: [(Int, Int)] = []
        for (index, label) in labels.enumerated() {
            if let first = open.removeValue(forKey: label) { pairs.append((first, index)) } else { open[label] = index }
        }
        return pairs
    }

    /// Latent vectors for a batch, N×latentDim, from `stream`.
    public func latents(_ n: Int, stream: inout RandomStream) -> Tensor {
        Tensor(randomNormal: [n, config.latentDim], stream: &stream)
    }

    /// One D step on (real, G(z)) and one G step through D. `stream` supplies z, fake labels and
    /// augmentation draws, so a step is reproducible from the run seed and the step index.
    public func step(real: Tensor, labels: [Int]?, stream: inout RandomStream) -> GANStepStats {
        let n = real.shape[0]
        if let totalSteps {
            let factor = options.learningRateFactor(step: optimizerG.step, totalSteps: totalSteps)
            optimizerG.learningRate = options.learningRate * factor
            optimizerD.learningRate = (options.discriminatorLearningRate ?? options.learningRate) * factor
        }
        generator.setTraining(true); discriminator.setTraining(true)
        if discriminator.usesSpectralNorm { discriminator.updateSpectralNorms() }
        let probability = currentAugmentProbability
        let z = latents(n, stream: &stream)
        let fakeLabels: [Int]? = config.conditioningClasses > 0 ? (labels ?? (0..<n).map { _ in stream.int(below: config.conditioningClasses) }) : nil
        let realLabels: [Int]? = config.conditioningClasses > 0 ? labels : nil
        let fake = generator(z, labels: fakeLabels)
        let adaptive = options.adaptiveAugmentation
        func maybeAugment(_ x: Tensor) -> Tensor {
            guard augments else { return x }
            return diffAugment(x, options: options.augmentation, probability: adaptive ? probability : nil, stream: &stream)
        }
        // Discriminator update on real and detached fake batches.
        discriminator.zeroGrad()
        let realInput = maybeAugment(real)
        let realLogits: Tensor
        var reconstruction: Tensor? = nil
        if options.reconstructionWeight > 0 {
            let judged = discriminator.logitsAndFeatures(realInput, labels: realLabels, sides: [8, 16])
            realLogits = judged.logits
            reconstruction = discriminator.reconstructionLoss(images: realInput, features: judged.features, quadrant: stream.int(below: 4))
        } else {
            realLogits = discriminator(realInput, labels: realLabels)
        }
        let fakeLogits = discriminator(maybeAugment(fake.detached()), labels: fakeLabels)
        var lossD = discriminatorLoss(options.loss, real: realLogits, fake: fakeLogits)
        if let reconstruction { lossD = add(lossD, scale(reconstruction, options.reconstructionWeight)) }
        if options.r1Gamma > 0, optimizerD.step % options.r1Interval == 0 {
            let penalty = r1Penalty(realInput: realInput.detached(), realLogits: realLogits, labels: realLabels, stream: &stream)
            lossD = add(lossD, scale(penalty, options.r1Gamma / 2 * Float(options.r1Interval)))
        }
        if options.lecamWeight > 0 { lossD = add(lossD, scale(lecamPenalty(real: realLogits, fake: fakeLogits), options.lecamWeight)) }
        lossD.backward()
        optimizerD.update()
        let realSign = realLogits.data.reduce(Float(0)) { $0 + ($1 > 0 ? 1 : ($1 < 0 ? -1 : 0)) } / Float(realLogits.count)
        if augments && adaptive { adaptAugmentation(realLogits: realLogits, step: optimizerD.step) }
        // Generator update through D; D's own gradients are not needed here, so skip computing them.
        generator.zeroGrad()
        let dParameters = discriminator.parameters()
        for p in dParameters { p.requiresGrad = false }
        var lossG = generatorLoss(options.loss, fake: discriminator(maybeAugment(fake), labels: fakeLabels))
        if options.modeSeekingWeight > 0 {
            let pairs = Self.modeSeekingPairs(labels: fakeLabels, count: n)
            if !pairs.isEmpty {
                let term = modeSeekingLoss(fake, latents: z.data, latentDim: config.latentDim, pairs: pairs, block: options.modeSeekingBlock)
                lossG = add(lossG, scale(term, options.modeSeekingWeight))
            }
        }
        lossG.backward()
        for p in dParameters { p.requiresGrad = true }
        optimizerG.update()
        ema.update(from: generator, step: optimizerG.step)
        func meanSigmoid(_ t: Tensor) -> Float { t.data.map { 1 / (1 + expf(-$0)) }.reduce(0, +) / Float(t.count) }
        return GANStepStats(discriminatorLoss: lossD.scalar, generatorLoss: lossG.scalar,
                            dReal: meanSigmoid(realLogits), dFake: meanSigmoid(fakeLogits),
                            augmentProbability: probability, realSign: realSign)
    }

    /// The EMA generator with the averaged weights, in eval mode.
    public func samplingGenerator() -> DCGANGenerator {
        ema.copy(into: emaGenerator)
        emaGenerator.setTraining(false)
        return emaGenerator
    }
}

#if canImport(Glibc)
import Glibc
#endif
