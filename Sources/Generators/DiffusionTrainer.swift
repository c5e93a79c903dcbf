import Foundation
import Core
import Engine
import Layers

// MARK: - Diffusion training: ε- or v-prediction MSE on a U-Net, AdamW, EMA, CFG label dropout

/// Settings of diffusion training, stored in the run's checkpoint.
public struct DiffusionTrainingOptions: Codable, Equatable {
    public var learningRate: Float = 2e-4
    public var weightDecay: Float = 0.01
    public var schedule: NoiseScheduleKind = .cosine
    public var timesteps: Int = 1000
    public var target: PredictionTarget = .epsilon
    /// Classifier-free guidance: labels are replaced by the null token with this probability.
    public var labelDropout: Float = 0.1
    public var emaDecay: Float = 0.999
    public init() {}
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

    public init(config: UNetConfig, options: DiffusionTrainingOptions, seed: UInt64) {
        self.config = config
        self.options = options
        schedule = NoiseSchedule(kind: options.schedule, steps: options.timesteps)
        var stream = RandomStream(seed: seed).split(.diffusionInitialisation)
        model = UNet(config, stream: &stream)
        emaModel = UNet(config, stream: &stream)
        emaModel.copyValues(from: model)
        optimizer = Adam.adamW(model.parameters(), learningRate: options.learningRate, weightDecay: options.weightDecay)
        ema = ParameterEMA(model, decay: options.emaDecay)
    }

    /// The loss of one batch (x0: N×C×H×W in [−1, 1]); timesteps, noise and label dropout from `stream`.
    public func loss(x0: Tensor, labels: [Int]?, stream: inout RandomStream) -> Tensor {
        let n = x0.shape[0]
        let t = (0..<n).map { _ in stream.int(below: schedule.steps) }
        var noise = [Float](repeating: 0, count: x0.count)
        noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
        let xt = schedule.addNoise(x0.data, noise: noise, timesteps: t)
        var y: [Int]? = nil
        if config.numClasses > 0, let labels {
            y = labels.map { stream.uniform() < options.labelDropout ? config.numClasses : $0 }
        }
        let prediction = model(Tensor(shape: x0.shape, data: xt), timesteps: t, labels: y)
        let target = schedule.trainingTarget(options.target, x0: x0.data, noise: noise, timesteps: t)
        return mseLoss(prediction, Tensor(shape: x0.shape, data: target))
    }

    /// One AdamW step; returns the loss.
    public func step(x0: Tensor, labels: [Int]?, stream: inout RandomStream) -> Float {
        model.zeroGrad()
        let l = loss(x0: x0, labels: labels, stream: &stream)
        l.backward()
        optimizer.update()
        ema.update(from: model, step: optimizer.step)
        return l.scalar
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
