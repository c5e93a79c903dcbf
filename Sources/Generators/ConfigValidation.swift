import Engine
import Core
import Foundation

// MARK: - Bounds on model configs read from checkpoints
//
// A checkpoint's JSON config decides how big every layer is. Each field is checked against sane
// bounds before a model is built, so a hostile or damaged file gives one clear error naming the
// file instead of a crash (negative sizes), a division by zero (groups = 0) or an allocation of
// gigabytes (huge widths, negative diffusion timesteps).

/// Bounds shared by the model configs.
public enum ModelConfigLimits {
    public static let maxWidth = 1024
    public static let maxLatentDim = 4096
    public static let maxClasses = 10_000
    /// Self-conditioning clusters per class.
    public static let maxClusters = 256
    /// Weights (floats) of a whole model: 2^28 = 268 M, 1 GiB, some 70 times the shipped models.
    public static let maxParameters = 1 << 28
    public static let maxTimesteps = 100_000
}

func requireRange(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
    guard range.contains(value) else {
        throw MedSynthError("\(name) is \(value), must be \(range.lowerBound)...\(range.upperBound)")
    }
}

func requireParameterBudget(_ weights: Double, model: String) throws {
    guard weights <= Double(ModelConfigLimits.maxParameters) else {
        throw MedSynthError("\(model) config needs about \(Int(min(weights, 1e18))) weights, above the limit of \(ModelConfigLimits.maxParameters)")
    }
}

/// A config or options value stored in checkpoints; checked as it is read (`decodeJSON`).
protocol CheckpointValidated {
    func validate() throws
}

extension GANConfig: CheckpointValidated {}
extension UNetConfig: CheckpointValidated {}

// DiffusionTrainingOptions.validate() (DiffusionTrainer.swift) checks timesteps against
// ModelConfigLimits.maxTimesteps with the other training settings.
extension DiffusionTrainingOptions: CheckpointValidated {}

// MARK: - Bounds on training settings

/// Bounds on a training run's settings, for fresh input and for the settings a resumed run reads
/// back from its checkpoint (where a damaged or hostile file could otherwise ask for a negative
/// batch, a batch of 10^12 images or 10^6-pixel images before any model config is checked).
public enum TrainingLimits {
    /// The largest image any trainer accepts (VAE: 512; DCGAN and U-Net check their own, smaller, sizes).
    public static let imageSizes = 8...512
    public static let maxBatchSize = 4096
    public static let maxSteps = 1_000_000_000
    public static let maxLatentChannels = 64
    public static let maxDownsamplingFactor = 64
}

extension TrainingRequest: CheckpointValidated {
    /// Throws a one-line error for the first setting out of bounds.
    public func validate() throws {
        try requireRange("image size", imageSize, TrainingLimits.imageSizes)
        guard channels == 1 || channels == 3 else { throw MedSynthError("channels is \(channels), must be 1 or 3") }
        try requireRange("steps", steps, 1...TrainingLimits.maxSteps)
        try requireRange("batch size", batchSize, 1...TrainingLimits.maxBatchSize)
        try requireRange("checkpoint interval", checkpointEvery, 1...Int.max)
        try requireRange("sample grid interval", sampleEvery, 1...Int.max)
        if let width { try requireRange("width", width, 1...ModelConfigLimits.maxWidth) }
        if let latentChannels { try requireRange("latent channels", latentChannels, 1...TrainingLimits.maxLatentChannels) }
        if let downsamplingFactor { try requireRange("downsampling factor", downsamplingFactor, 1...TrainingLimits.maxDownsamplingFactor) }
    }
}
