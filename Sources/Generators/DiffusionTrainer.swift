import Foundation
import Core
import Engine
import Layers
import Imaging

// MARK: - Diffusion training: ε- or v-prediction MSE on a U-Net, AdamW, EMA, CFG label dropout
//
// The defaults are a recipe that converges on a few hundred images on a CPU (issue 12); each
// choice cites its paper, and the numbers that decided it are in scripts/experiments/
// diffusion_recipe.sh and the README.

/// How the per-sample loss is weighted across noise levels.
public enum DiffusionLossWeighting: String, Codable, CaseIterable {
    /// Plain MSE on the prediction target.
    case uniform
    /// Min-SNR-γ (Hang et al. 2023, eq. 6–8): the x₀-space weight min(SNR, γ), expressed for the
    /// target: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v.
    case minSNR = "min-snr"
    /// Min-SNR-γ with Salimans & Ho's (2022, §4) truncation below: x₀-space weight
    /// clamp(SNR, 1, γ), i.e. plain v-loss (weight SNR + 1 ≥ 1) where SNR < 1 and min-SNR-γ above.
    /// Plain min-SNR gives high-noise steps almost no weight (≈ SNR), which is where small runs
    /// fail: the first DDIM steps' x₀ estimates.
    case minSNRTruncated = "min-snr-truncated"
}

/// Settings of diffusion training, stored in the run's checkpoint. Fields added after the first
/// release decode to their old behaviour when missing, so old runs resume identically.
public struct DiffusionTrainingOptions: Codable, Equatable {
    /// Peak AdamW learning rate; 1e-3 suits U-Nets of a few hundred thousand parameters with warm-up and clipping.
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 0.01
    /// Nichol & Dhariwal 2021 (cosine); the cosine ᾱ keeps a non-zero SNR at t = T − 1, so the
    /// model's first sampling step is where it was trained (Lin et al. 2024 discuss the gap).
    public var schedule: NoiseScheduleKind = .cosine
    public var timesteps: Int = 1000
    /// v-prediction (Salimans & Ho 2022, §4): the x₀ estimate α·x − σ·v̂ stays well conditioned at
    /// high noise, where ε-prediction's (x − σ·ε̂)/α multiplies ε errors by 1/α (≈ 34 at t = 980).
    public var target: PredictionTarget = .v
    /// Classifier-free guidance: labels are replaced by the null token with this probability.
    public var labelDropout: Float = 0.1
    /// EMA decay (with the warm-up min(decay, (1+s)/(10+s))); 0.999 averages over ≈ 1,000 steps.
    public var emaDecay: Float = 0.999
    public var lossWeighting: DiffusionLossWeighting = .minSNRTruncated
    /// γ of min-SNR-γ weighting (Hang et al. 2023 recommend 5).
    public var minSNRGamma: Float = 5
    /// Linear learning-rate warm-up over this many steps (Goyal et al. 2017); 0 = none.
    public var warmupSteps: Int = 100
    /// Global gradient-norm clipping threshold (Pascanu et al. 2013); 0 = none.
    public var gradientClipNorm: Float = 1
    /// Zero-initialise each residual branch's last layer and the output conv (Ho et al. 2020's code).
    public var zeroInitialization = true
    /// Factor applied to the N(0, 1) class-embedding table at initialisation.
    public var classEmbeddingScale: Float = 0.1
    /// Random horizontal flips of training images (off by default: anatomy is not mirror-symmetric).
    public var augmentFlips = false
    /// Random shifts of up to this many pixels (edge pixels repeated); 0 = off.
    public var augmentShift = 0
    /// Multiplier of the schedule's signal-to-noise ratio at every step (see `NoiseSchedule`); 1 = unshifted.
    public var snrShift: Double = 1
    /// Cosine learning-rate decay to 0 at this step (Loshchilov & Hutter 2017, without restarts),
    /// after the warm-up; 0 = constant rate.
    public var cosineDecaySteps = 0
    /// Input perturbation γ (Ning et al. 2023, "Input Perturbation Reduces Exposure Bias in
    /// Diffusion Models"): the network sees x_t made with ε + γ·ξ (ξ a second normal draw) but
    /// still predicts the target of ε, so it learns to correct inputs that are slightly off, as
    /// its own samples are at sampling time. The paper uses 0.1; 0 = off.
    public var inputPerturbation: Float = 0

    /// The noise schedule these options train and sample with.
    public var noiseSchedule: NoiseSchedule { NoiseSchedule(kind: schedule, steps: timesteps, snrShift: snrShift) }

    public init() {}

    /// The recipe before issue 12 (ε, LR 2e-4, uniform weighting, no warm-up/clipping, default init).
    public static var legacy: DiffusionTrainingOptions {
        var o = DiffusionTrainingOptions()
        o.learningRate = 2e-4; o.target = .epsilon; o.lossWeighting = .uniform; o.warmupSteps = 0
        o.gradientClipNorm = 0; o.zeroInitialization = false; o.classEmbeddingScale = 1
        return o
    }

    enum CodingKeys: String, CodingKey {
        case learningRate, weightDecay, schedule, timesteps, target, labelDropout, emaDecay
        case lossWeighting, minSNRGamma, warmupSteps, gradientClipNorm, zeroInitialization, classEmbeddingScale
        case augmentFlips, augmentShift, snrShift, cosineDecaySteps, inputPerturbation
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let old = DiffusionTrainingOptions.legacy
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? old.learningRate
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? old.weightDecay
        schedule = try c.decodeIfPresent(NoiseScheduleKind.self, forKey: .schedule) ?? old.schedule
        timesteps = try c.decodeIfPresent(Int.self, forKey: .timesteps) ?? old.timesteps
        target = try c.decodeIfPresent(PredictionTarget.self, forKey: .target) ?? old.target
        labelDropout = try c.decodeIfPresent(Float.self, forKey: .labelDropout) ?? old.labelDropout
        emaDecay = try c.decodeIfPresent(Float.self, forKey: .emaDecay) ?? old.emaDecay
        lossWeighting = try c.decodeIfPresent(DiffusionLossWeighting.self, forKey: .lossWeighting) ?? old.lossWeighting
        minSNRGamma = try c.decodeIfPresent(Float.self, forKey: .minSNRGamma) ?? old.minSNRGamma
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? old.warmupSteps
        gradientClipNorm = try c.decodeIfPresent(Float.self, forKey: .gradientClipNorm) ?? old.gradientClipNorm
        zeroInitialization = try c.decodeIfPresent(Bool.self, forKey: .zeroInitialization) ?? old.zeroInitialization
        classEmbeddingScale = try c.decodeIfPresent(Float.self, forKey: .classEmbeddingScale) ?? old.classEmbeddingScale
        augmentFlips = try c.decodeIfPresent(Bool.self, forKey: .augmentFlips) ?? old.augmentFlips
        augmentShift = try c.decodeIfPresent(Int.self, forKey: .augmentShift) ?? old.augmentShift
        snrShift = try c.decodeIfPresent(Double.self, forKey: .snrShift) ?? old.snrShift
        cosineDecaySteps = try c.decodeIfPresent(Int.self, forKey: .cosineDecaySteps) ?? old.cosineDecaySteps
        inputPerturbation = try c.decodeIfPresent(Float.self, forKey: .inputPerturbation) ?? old.inputPerturbation
    }

    public func validate() throws {
        // The schedule holds one entry per step: bound it before anything is allocated.
        try requireRange("timesteps", timesteps, 1...ModelConfigLimits.maxTimesteps)
        guard weightDecay.isFinite, weightDecay >= 0 else { throw MedSynthError("weightDecay is \(weightDecay), must be finite and >= 0") }
        guard learningRate > 0, learningRate.isFinite else { throw MedSynthError("--learning-rate must be positive, got \(learningRate)") }
        guard minSNRGamma > 0 else { throw MedSynthError("--min-snr-gamma must be positive, got \(minSNRGamma)") }
        guard warmupSteps >= 0 else { throw MedSynthError("--warmup-steps must be ≥ 0, got \(warmupSteps)") }
        guard gradientClipNorm >= 0 else { throw MedSynthError("--grad-clip must be ≥ 0 (0 = off), got \(gradientClipNorm)") }
        guard emaDecay >= 0, emaDecay < 1 else { throw MedSynthError("--ema-decay must be in [0, 1), got \(emaDecay)") }
        guard (0...1).contains(labelDropout) else { throw MedSynthError("--label-dropout must be in [0, 1], got \(labelDropout)") }
        guard snrShift.isFinite, (1e-3...1e3).contains(snrShift) else { throw MedSynthError("--snr-shift must be in [0.001, 1000], got \(snrShift)") }
        guard cosineDecaySteps >= 0 else { throw MedSynthError("cosine decay steps must be ≥ 0 (0 = constant rate), got \(cosineDecaySteps)") }
        guard inputPerturbation.isFinite, (0...1).contains(inputPerturbation) else { throw MedSynthError("--input-perturbation must be in [0, 1], got \(inputPerturbation)") }
        guard augmentShift >= 0, augmentShift <= 16 else { throw MedSynthError("--augment-shift must be 0...16 pixels, got \(augmentShift)") }
    }
}

public final class DiffusionTrainer {
    public let config: UNetConfig
    public let options: DiffusionTrainingOptions
    public let schedule: NoiseSchedule
    public let model: UNet
    public let emaModel: UNet
    public let optimizer: Adam
    public let ema: ParameterEMA
    /// DDIM steps of the run's sample grids.
    public var gridSamplingSteps = 25
    /// Global gradient norm of the last step, before clipping.
    public private(set) var lastGradientNorm: Float = 0

    public init(config: UNetConfig, options: DiffusionTrainingOptions, seed: UInt64) {
        self.config = config
        self.options = options
        schedule = options.noiseSchedule
        var stream = RandomStream(seed: seed).split(.diffusionInitialisation)
        model = UNet(config, stream: &stream)
        emaModel = UNet(config, stream: &stream)
        if options.zeroInitialization { model.zeroInitializeResidualOutputs() }
        if options.classEmbeddingScale != 1 { model.scaleClassEmbedding(by: options.classEmbeddingScale) }
        emaModel.copyValues(from: model)
        optimizer = Adam.adamW(model.parameters(), learningRate: options.learningRate, weightDecay: options.weightDecay)
        ema = ParameterEMA(model, decay: options.emaDecay)
    }

    /// Per-sample loss weights for timesteps `t` (Hang et al. 2023, min-SNR-γ in the target's form).
    public func lossWeights(_ t: [Int]) -> [Float] {
        guard options.lossWeighting != .uniform else { return [Float](repeating: 1, count: t.count) }
        let gamma = Double(options.minSNRGamma)
        return t.map { step in
            let a = schedule.alphaBar(step), snr = a / (1 - a)
            var x0Weight = min(snr, gamma)
            if options.lossWeighting == .minSNRTruncated { x0Weight = max(x0Weight, 1) }
            // ε-MSE = SNR·x₀-MSE and v-MSE = (SNR + 1)·x₀-MSE (Salimans & Ho 2022, §4).
            switch options.target {
            case .epsilon: return Float(x0Weight / snr)
            case .v: return Float(x0Weight / (snr + 1))
            }
        }
    }

    /// The loss of one batch (x0: N×C×H×W in [−1, 1]); timesteps, noise, label dropout and
    /// augmentation and the input perturbation from `stream` (in that order; augmentation and the
    /// perturbation draw nothing when off).
    public func loss(x0 x0In: Tensor, labels: [Int]?, stream: inout RandomStream) -> Tensor {
        let n = x0In.shape[0]
        let t = (0..<n).map { _ in stream.int(below: schedule.steps) }
        var noise = [Float](repeating: 0, count: x0In.count)
        noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
        var y: [Int]? = nil
        if config.numClasses > 0, let labels {
            y = labels.map { stream.uniform() < options.labelDropout ? config.numClasses : $0 }
        }
        let x0 = augment(x0In, stream: &stream)
        var inputNoise = noise
        if options.inputPerturbation > 0 {
            var xi = [Float](repeating: 0, count: noise.count)
            xi.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
            for j in inputNoise.indices { inputNoise[j] += options.inputPerturbation * xi[j] }
        }
        let xt = schedule.addNoise(x0.data, noise: inputNoise, timesteps: t)
        let prediction = model(Tensor(shape: x0.shape, data: xt), timesteps: t, labels: y)
        let target = schedule.trainingTarget(options.target, x0: x0.data, noise: noise, timesteps: t)
        guard options.lossWeighting != .uniform else { return mseLoss(prediction, Tensor(shape: x0.shape, data: target)) }
        // Σ w_i·(p − y)² = MSE(√w ⊙ p, √w ⊙ y), with √w broadcast per (sample, channel).
        let channels = x0.shape[1], per = x0.count / n
        let rootWeights = lossWeights(t).map { $0.squareRoot() }
        let perChannel = Tensor(shape: [n, channels], data: (0..<n * channels).map { rootWeights[$0 / channels] })
        var weightedTarget = target
        for i in 0..<n { for j in i * per..<(i + 1) * per { weightedTarget[j] *= rootWeights[i] } }
        return mseLoss(mul(prediction, perChannel), Tensor(shape: x0.shape, data: weightedTarget))
    }

    /// Random flips / shifts (edge-replicating) per sample, when enabled.
    func augment(_ x: Tensor, stream: inout RandomStream) -> Tensor {
        guard options.augmentFlips || options.augmentShift > 0 else { return x }
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        var out = x.data
        let k = options.augmentShift
        for i in 0..<n {
            let flip = options.augmentFlips && stream.uniform() < 0.5
            let dx = k > 0 ? stream.int(below: 2 * k + 1) - k : 0
            let dy = k > 0 ? stream.int(below: 2 * k + 1) - k : 0
            for ch in 0..<c {
                let base = (i * c + ch) * h * w
                for yy in 0..<h {
                    let sy = min(h - 1, max(0, yy - dy))
                    for xx in 0..<w {
                        var sx = min(w - 1, max(0, xx - dx))
                        if flip { sx = w - 1 - sx }
                        out[base + yy * w + xx] = x.data[base + sy * w + sx]
                    }
                }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }

    /// The rate of the update made at optimizer step `step` (0-based): linear warm-up, then constant
    /// or a cosine decay that reaches 0 at `cosineDecaySteps`.
    public func learningRate(atStep step: Int) -> Float {
        var rate = options.learningRate
        if options.warmupSteps > 0 { rate *= min(1, Float(step + 1) / Float(options.warmupSteps)) }
        if options.cosineDecaySteps > 0 {
            let progress = min(1, Double(step) / Double(options.cosineDecaySteps))
            rate *= Float(0.5 * (1 + cos(Double.pi * progress)))
        }
        return rate
    }

    /// One AdamW step (warm-up learning rate, clipped gradients); returns the loss.
    public func step(x0: Tensor, labels: [Int]?, stream: inout RandomStream) -> Float {
        model.zeroGrad()
        let l = loss(x0: x0, labels: labels, stream: &stream)
        l.backward()
        clipGradients()
        optimizer.learningRate = learningRate(atStep: optimizer.step)
        optimizer.update()
        ema.update(from: model, step: optimizer.step)
        return l.scalar
    }

    /// Scales all gradients by min(1, clip/‖g‖) with ‖g‖ the global L2 norm.
    func clipGradients() {
        let parameters = model.parameters()
        var squares = 0.0
        for p in parameters { if let g = p.grad { for v in g { squares += Double(v) * Double(v) } } }
        lastGradientNorm = Float(squares.squareRoot())
        guard options.gradientClipNorm > 0, lastGradientNorm > options.gradientClipNorm else { return }
        let factor = options.gradientClipNorm / lastGradientNorm
        for p in parameters where p.grad != nil {
            for i in p.grad!.indices { p.grad![i] *= factor }
        }
    }

    public func samplingModel() -> UNet {
        ema.copy(into: emaModel)
        return emaModel
    }

    public func sampler(model: UNet) -> DiffusionSampler {
        DiffusionSampler(model: model, schedule: schedule, target: options.target, numClasses: config.numClasses,
                         sampleShape: [config.channels, config.imageSize, config.imageSize])
    }
}

// MARK: - Yardsticks: the exact optimal denoiser of a finite training set, and corner values

/// E[x₀ | x_t] for data that is exactly the images `data` (uniform mixture of Diracs):
/// Σ_i softmax_i(−‖x_t − √ᾱ·x_i‖² / (2(1−ᾱ)))·x_i. It is the minimiser of the x₀ MSE over all
/// functions, so no trained model can beat it on the data it was trained on (Karras et al.
/// 2022, App. B.3 use the same ideal denoiser).
public func optimalDenoiser(_ xt: [Float], t: Int, schedule: NoiseSchedule, data: [[Float]]) -> [Float] {
    let a = schedule.alphaBar(t), root = Float(a.squareRoot()), variance = 1 - a
    let logits = data.map { image -> Double in
        var d = 0.0
        for j in image.indices { let e = Double(xt[j] - root * image[j]); d += e * e }
        return -d / (2 * variance)
    }
    let top = logits.max() ?? 0
    let weights = logits.map { Foundation.exp($0 - top) }
    let total = weights.reduce(0, +)
    var out = [Float](repeating: 0, count: xt.count)
    for (image, w) in zip(data, weights) where w > 0 {
        let f = Float(w / total)
        for j in out.indices { out[j] += f * image[j] }
    }
    return out
}

/// One row of the x₀-error profile: per-pixel MSE of the model's and of the optimal x₀ estimate.
public struct X0ErrorRow: Equatable {
    public let timestep: Int
    public let modelError: Double
    public let optimalError: Double
}

/// Per-timestep x₀ error of `sampler`'s network on `images` (each noised with its own stream),
/// next to the exact optimal denoiser of `pool` (the training images of the same class).
public func x0ErrorProfile(sampler: DiffusionSampler, images: [[Float]], labels: [Int]?, pools: [[[Float]]],
                           timesteps: [Int], seed: UInt64) -> [X0ErrorRow] {
    var settings = SamplerSettings()
    settings.clipSample = false
    let per = sampler.perSample
    return timesteps.map { t in
        var stream = RandomStream(seed: seed).split(UInt64(t))
        var xt: [Float] = []
        for image in images {
            var noise = [Float](repeating: 0, count: per)
            noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
            xt += sampler.schedule.addNoise(image, noise: noise, timesteps: [t])
        }
        let estimate = sampler.estimate(xt, t: t, labels: labels, settings: settings).x0
        var modelError = 0.0, optimalError = 0.0
        for (i, image) in images.enumerated() {
            let slice = Array(xt[i * per..<(i + 1) * per])
            let best = optimalDenoiser(slice, t: t, schedule: sampler.schedule, data: pools[labels?[i] ?? 0])
            for j in 0..<per {
                let dm = Double(estimate[i * per + j] - image[j]), db = Double(best[j] - image[j])
                modelError += dm * dm; optimalError += db * db
            }
        }
        let count = Double(images.count * per)
        return X0ErrorRow(timestep: t, modelError: modelError / count, optimalError: optimalError / count)
    }
}

/// Mean of the four k×k corners of each image (N×C×H×W flattened, values in [−1, 1]): the
/// background of a brain slice is −1, so this is a cheap "does it make black backgrounds" check.
public func cornerMean(_ images: [Float], count: Int, channels: Int, size: Int, corner k: Int = 4) -> Double {
    var total = 0.0, n = 0
    let plane = size * size
    for i in 0..<count { for c in 0..<channels {
        let base = (i * channels + c) * plane
        for (y0, x0) in [(0, 0), (0, size - k), (size - k, 0), (size - k, size - k)] {
            for y in y0..<y0 + k { for x in x0..<x0 + k { total += Double(images[base + y * size + x]); n += 1 } }
        }
    } }
    return n > 0 ? total / Double(n) : 0
}

/// The quick report of issue 12 for a diffusion model on its training data: x₀ error per timestep
/// against the optimal denoiser, and, for each timestep spacing, the corner mean of samples of each
/// class and their mean distance (pixel MSE) to the nearest training image of the class. With
/// `samplesOut` the samples are also written as PNGs to samplesOut/<spacing>/<class>/ for `evaluate`.
public func diffusionQualityReport(model url: URL, data: String, sampleCount: Int = 16, samplerSettings: SamplerSettings = SamplerSettings(),
                                   spacings: [TimestepSpacing?] = [nil], samplesOut: URL? = nil,
                                   timesteps: [Int] = [100, 300, 500, 700, 900, 980, 999], seed: UInt64 = 0) throws -> String {
    let (sampler, config) = try loadDiffusionSampler(from: url)
    let dataset = try ImageFolderDataset(root: URL(fileURLWithPath: data), imageSize: config.imageSize, channels: config.channels)
    let classes = max(config.numClasses, 1)
    var pools = [[[Float]]](repeating: [], count: classes)
    var all: [[Float]] = []
    for index in 0..<dataset.count {
        let (x, label) = try loadBatch(dataset, indices: [index])
        all.append(x.data)
        pools[config.numClasses > 0 ? min(label[0], classes - 1) : 0].append(x.data)
    }
    // A fixed, spread-out subset of the training images (every k-th), at most 32.
    let stride = max(1, dataset.count / 32)
    let chosen = Swift.stride(from: 0, to: dataset.count, by: stride).prefix(32).map { $0 }
    let labels: [Int]? = config.numClasses > 0 ? chosen.map { dataset.entries[$0].classIndex } : nil
    let rows = x0ErrorProfile(sampler: sampler, images: chosen.map { all[$0] }, labels: labels, pools: pools, timesteps: timesteps, seed: seed)
    var lines = ["x0 MSE per pixel (model vs exact optimal denoiser of the \(dataset.count) training images):"]
    for r in rows { lines.append(String(format: "  t=%4d  model %.4f  optimal %.4f", r.timestep, r.modelError, r.optimalError)) }
    let per = config.channels * config.imageSize * config.imageSize
    for spacing in spacings {
        var settings = samplerSettings
        settings.spacing = spacing
        for c in 0..<classes {
            let sampleLabels: [Int]? = config.numClasses > 0 ? [Int](repeating: c, count: sampleCount) : nil
            let x = sampler.sample(indices: Array(0..<sampleCount), labels: sampleLabels, seed: seed, settings: settings)
            let name = config.classNames.indices.contains(c) ? config.classNames[c] : "all"
            var nearest = 0.0
            for i in 0..<sampleCount {
                let image = x[i * per..<(i + 1) * per]
                nearest += pools[c].map { pool in zip(image, pool).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(per) }.min() ?? 0
            }
            if let samplesOut {
                let folder = samplesOut.appendingPathComponent(settings.effectiveSpacing.rawValue).appendingPathComponent(name)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for i in 0..<sampleCount {
                    let image = Image(floatCHW: Array(x[i * per..<(i + 1) * per]), width: config.imageSize, height: config.imageSize,
                                      channels: config.channels, bitDepth: 8)
                    try writePNG(image, to: folder.appendingPathComponent(String(format: "%05d.png", i)))
                }
            }
            lines.append(String(format: "%@ %d steps, %@ spacing, %d %@ samples: corner mean (4x4) %.4f, MSE to nearest training image %.4f",
                                settings.kind.rawValue, settings.steps, settings.effectiveSpacing.rawValue, sampleCount, name,
                                cornerMean(x, count: sampleCount, channels: config.channels, size: config.imageSize), nearest / Double(sampleCount)))
        }
    }
    return lines.joined(separator: "\n")
}
