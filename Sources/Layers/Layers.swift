import Core
import Engine

// MARK: - Convolutions

/// What Conv2d and ConvTranspose2d share: weight, optional bias, stride, padding, and PyTorch's
/// default initialisation (uniform ±1/√fanIn for both).
public class ConvolutionModule: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int, padding: Int

    init(weightShape: [Int], fanIn: Int, outChannels: Int, bias: Bool, stride: Int, padding: Int, stream: inout RandomStream) {
        self.weight = defaultUniform(weightShape, fanIn: fanIn, stream: &stream)
        self.bias = bias ? defaultUniform([outChannels], fanIn: fanIn, stream: &stream) : nil
        self.stride = stride; self.padding = padding
    }

    public func namedTensors() -> [NamedTensor] {
        [NamedTensor("weight", weight)] + (bias.map { [NamedTensor("bias", $0)] } ?? [])
    }
}

/// 2-D convolution; weight OC×C×K×K, optional bias OC (PyTorch `Conv2d` names: weight, bias).
public final class Conv2d: ConvolutionModule {
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true, stream: inout RandomStream) {
        super.init(weightShape: [outChannels, inChannels, kernel, kernel], fanIn: inChannels * kernel * kernel, outChannels: outChannels,
                   bias: bias, stride: stride, padding: padding, stream: &stream)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding) }

    /// conv(x) + residual, the add fused into the convolution's output pass.
    public func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual)
    }
}

/// Transposed 2-D convolution; weight C×OC×K×K (PyTorch `ConvTranspose2d` layout).
public final class ConvTranspose2d: ConvolutionModule {
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true, stream: inout RandomStream) {
        // PyTorch computes fan-in from weight.shape[1] · K · K for transposed convolutions.
        super.init(weightShape: [inChannels, outChannels, kernel, kernel], fanIn: outChannels * kernel * kernel, outChannels: outChannels,
                   bias: bias, stride: stride, padding: padding, stream: &stream)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
}

/// Fully connected layer: y = x Wᵀ + b, weight out×in.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, stream: inout RandomStream) {
        self.weight = defaultUniform([outFeatures, inFeatures], fanIn: inFeatures, stream: &stream)
        self.bias = bias ? defaultUniform([outFeatures], fanIn: inFeatures, stream: &stream) : nil
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }

    public func namedTensors() -> [NamedTensor] {
        [NamedTensor("weight", weight)] + (bias.map { [NamedTensor("bias", $0)] } ?? [])
    }
}

/// Lookup table of `count` vectors of `dimension` values, initialised N(0, 1) like PyTorch.
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dimension: Int, stream: inout RandomStream) {
        self.weight = Tensor(randomNormal: [count, dimension], stream: &stream, requiresGrad: true)
    }

    public func callAsFunction(_ indices: [Int]) -> Tensor { embedding(indices, table: weight) }
    public func namedTensors() -> [NamedTensor] { [NamedTensor("weight", weight)] }
}

// MARK: - Normalisation

/// BatchNorm2d with PyTorch's state: weight, bias, running_mean, running_var, num_batches_tracked.
public final class BatchNorm2d: Module {
    public let weight: Tensor, bias: Tensor
    public let runningMean: Tensor, runningVar: Tensor
    public let batchesTracked = Tensor(zeros: [])
    public var training = true
    public let momentum: Float, eps: Float

    public init(_ channels: Int, momentum: Float = 0.1, eps: Float = 1e-5) {
        weight = Tensor(filled: 1, shape: [channels], requiresGrad: true)
        bias = Tensor(zeros: [channels], requiresGrad: true)
        runningMean = Tensor(zeros: [channels])
        runningVar = Tensor(filled: 1, shape: [channels])
        self.momentum = momentum; self.eps = eps
    }

    /// With `activationSlope`, LeakyReLU with that slope (ReLU for 0) fused into the norm's pass.
    public func callAsFunction(_ x: Tensor, activationSlope: Float? = nil) -> Tensor {
        if training { batchesTracked.data[0] += 1 }
        return batchNorm(x, gamma: weight, beta: bias, runningMean: runningMean, runningVar: runningVar,
                         training: training, momentum: momentum, eps: eps, activationSlope: activationSlope)
    }

    public func setTraining(_ training: Bool) { self.training = training }

    public func namedTensors() -> [NamedTensor] {
        [NamedTensor("weight", weight), NamedTensor("bias", bias),
         NamedTensor("running_mean", runningMean, isParameter: false), NamedTensor("running_var", runningVar, isParameter: false),
         NamedTensor("num_batches_tracked", batchesTracked, isParameter: false, isInteger: true)]
    }
}

/// GroupNorm with affine weight and bias per channel.
public final class GroupNorm: Module {
    public let groups: Int
    public let weight: Tensor, bias: Tensor
    public let eps: Float

    public init(groups: Int, channels: Int, eps: Float = 1e-5) {
        precondition(channels % groups == 0, "GroupNorm: \(channels) channels do not split into \(groups) groups")
        self.groups = groups; self.eps = eps
        weight = Tensor(filled: 1, shape: [channels], requiresGrad: true)
        bias = Tensor(zeros: [channels], requiresGrad: true)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { groupNorm(x, groups: groups, gamma: weight, beta: bias, eps: eps) }
    /// SiLU(GroupNorm(x)) in one fused pass.
    public func withSiLU(_ x: Tensor) -> Tensor { groupNorm(x, groups: groups, gamma: weight, beta: bias, eps: eps, fusedSiLU: true) }
    public func namedTensors() -> [NamedTensor] { [NamedTensor("weight", weight), NamedTensor("bias", bias)] }
}

// MARK: - Spectral normalisation

/// The persistent power-iteration state of one spectrally normalised weight (Miyato et al. 2018,
/// Algorithm 1): u (one value per row of the weight viewed as shape[0] × rest), saved with the
/// training state, and the v of the last iteration.
public final class SpectralNormalizer: Module {
    /// The raw weight, owned by its layer (the optimiser updates it).
    public let weight: Tensor
    public let u: Tensor
    var v: [Float]

    public init(_ weight: Tensor, stream: inout RandomStream) {
        self.weight = weight
        var values = [Float](repeating: 0, count: weight.shape[0])
        values.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: 1) }
        let norm = max(values.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        u = Tensor(shape: [weight.shape[0]], data: values.map { $0 / norm })
        v = spectralPowerIteration(weight, u: u.data).v
    }

    /// u ← W v / ‖W v‖ after v ← Wᵀu / ‖Wᵀu‖: one iteration, once per training step.
    public func powerIteration() {
        let (newU, newV) = spectralPowerIteration(weight, u: u.data)
        u.data = newU; v = newV
    }

    /// σ = uᵀ W v, the current estimate of the largest singular value.
    public var sigma: Float { spectralSigma(weight, u: u.data, v: v) }

    /// W / σ, differentiable w.r.t. W (u and v constant).
    public func normalized() -> Tensor { spectralNormalize(weight, u: u.data, v: v) }

    public func namedTensors() -> [NamedTensor] { [NamedTensor("weight_u", u, isParameter: false)] }
}
