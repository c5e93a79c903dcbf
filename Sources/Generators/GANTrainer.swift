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
}

/// Settings of GAN training, stored in the run's checkpoint.
public struct GANTrainingOptions: Codable, Equatable {
    public var learningRate: Float = 2e-4
    public var beta1: Float = 0.5
    public var beta2: Float = 0.999
    public var loss: GANLoss = .bce
    /// Differentiable augmentation before D; nil: on below 2,000 images (decided when a run starts).
    public var augment: Bool? = nil
    public var augmentation = AugmentationOptions()
    public var emaDecay: Float = 0.999
    public init() {}
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
    public let ema: ParameterEMA

    public init(config: GANConfig, options: GANTrainingOptions, seed: UInt64) {
        self.config = config; self.options = options
        var stream = RandomStream(seed: seed).split(.ganInitialisation)
        generator = DCGANGenerator(config, stream: &stream)
        discriminator = DCGANDiscriminator(config, stream: &stream)
        emaGenerator = DCGANGenerator(config, stream: &stream)
        emaGenerator.copyValues(from: generator)
        optimizerG = Adam(generator.parameters(), learningRate: options.learningRate, beta1: options.beta1, beta2: options.beta2)
        optimizerD = Adam(discriminator.parameters(), learningRate: options.learningRate, beta1: options.beta1, beta2: options.beta2)
        ema = ParameterEMA(generator, decay: options.emaDecay)
    }

    /// Latent vectors for a batch, N×latentDim, from `stream`.
    public func latents(_ n: Int, stream: inout RandomStream) -> Tensor {
        Tensor(randomNormal: [n, config.latentDim], stream: &stream)
    }

    /// One D step on (real, G(z)) and one G step through D. `stream` supplies z, fake labels and
    /// augmentation draws, so a step is reproducible from the run seed and the step index.
    public func step(real: Tensor, labels: [Int]?, stream: inout RandomStream) -> GANStepStats {
        let n = real.shape[0]
        generator.setTraining(true); discriminator.setTraining(true)
        let z = latents(n, stream: &stream)
        let fakeLabels: [Int]? = config.numClasses > 0 ? (labels ?? (0..<n).map { _ in stream.int(below: config.numClasses) }) : nil
        let realLabels: [Int]? = config.numClasses > 0 ? labels : nil
        let fake = generator(z, labels: fakeLabels)
        func maybeAugment(_ x: Tensor) -> Tensor {
            options.augment ?? true ? diffAugment(x, options: options.augmentation, stream: &stream) : x
        }
        // Discriminator update on real and detached fake batches.
        discriminator.zeroGrad()
        let realLogits = discriminator(maybeAugment(real), labels: realLabels)
        let fakeLogits = discriminator(maybeAugment(fake.detached()), labels: fakeLabels)
        let lossD = discriminatorLoss(options.loss, real: realLogits, fake: fakeLogits)
        lossD.backward()
        optimizerD.update()
        // Generator update through D; D's own gradients are not needed here, so skip computing them.
        generator.zeroGrad()
        let dParameters = discriminator.parameters()
        for p in dParameters { p.requiresGrad = false }
        let lossG = generatorLoss(options.loss, fake: discriminator(maybeAugment(fake), labels: fakeLabels))
        lossG.backward()
        for p in dParameters { p.requiresGrad = true }
        optimizerG.update()
        ema.update(from: generator, step: optimizerG.step)
        func meanSigmoid(_ t: Tensor) -> Float { t.data.map { 1 / (1 + expf(-$0)) }.reduce(0, +) / Float(t.count) }
        return GANStepStats(discriminatorLoss: lossD.scalar, generatorLoss: lossG.scalar,
                            dReal: meanSigmoid(realLogits), dFake: meanSigmoid(fakeLogits))
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
