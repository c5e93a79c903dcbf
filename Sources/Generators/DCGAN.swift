import Core
import Engine
import Layers

// MARK: - DCGAN (Radford et al. 2015), as ../shared/reference ARCHITECTURES.md "DCGAN-64"
//
// Parameter names follow the PyTorch reference's state_dict (`net.<index>.<name>`, indices
// counting the activation layers too), so weights move both ways through safetensors.
// Sizes other than 64 drop or add one upsampling (downsampling) block at the top (bottom).

/// How G doubles the resolution after its 4×4 seed.
public enum GANUpsampling: String, Codable, CaseIterable {
    /// 4×4 stride-2 transposed convolution (DCGAN's own; uneven kernel overlap gives checkerboards).
    case transposed
    /// Nearest-neighbour ×2 then a 3×3 convolution (Odena et al. 2016, "Deconvolution and
    /// Checkerboard Artifacts"): every output pixel sees the same number of kernel taps.
    case resize
    /// Bilinear ×2 then a 3×3 convolution (the low-pass upsampling of StyleGAN, Karras et al. 2019,
    /// and of Karras et al. 2021 "Alias-Free GANs"): nearest ×2 repeats each pixel, which leaves
    /// energy at the new high frequencies for G's later layers to turn into speckle.
    case bilinear
}

/// Settings of a DCGAN, stored beside its weights.
public struct GANConfig: Codable, Equatable {
    public var imageSize: Int = 64
    public var channels: Int = 1
    public var latentDim: Int = 100
    public var generatorWidth: Int = 64       // ngf
    public var discriminatorWidth: Int = 64   // ndf
    /// 0 = unconditional. Conditional G takes [z, one-hot(label)]; D is a projection discriminator.
    public var numClasses: Int = 0
    public var classNames: [String] = []
    /// G's upsampling after the seed block; files written before it existed are `.transposed`.
    public var upsample: GANUpsampling = .transposed
    /// Skip-layer excitation in G (FastGAN, Liu et al. 2021): from the third block on, each block's
    /// channels are gated by a squeeze of the block two levels coarser. Needs 32 px or more.
    public var skipExcitation = false
    /// Self-conditioning (Liu et al. 2020): each class split into this many clusters of similar
    /// images, and G and D conditioned on the cluster, so G cannot drop a kind of image the data
    /// holds. 1 = off. A sample of class c draws its cluster by `clusterWeights`.
    public var clustersPerClass = 1
    /// Per conditioning label (class c's clusters at c·K ..< (c+1)·K), its share of the class's
    /// training images; empty when `clustersPerClass` is 1.
    public var clusterWeights: [Float] = []
    /// G ends in its last convolution, without tanh: a latent GAN draws a VAE's latents, which
    /// are not bounded to [−1, 1] (clamping them cost the latent diffusion model half its FD).
    public var linearOutput = false
    /// Depth for small grids (a latent GAN's 8×8 has one block each side): G doubles to full
    /// resolution with `generatorWidth` channels and adds this many 3×3 conv + BatchNorm + ReLU
    /// layers before its output conv; D starts with this many 3×3 conv layers (LeakyReLU, BatchNorm
    /// after the first) before its first downsampling. 0: DCGAN's own layers.
    public var extraLayers = 0
    public static let maxExtraLayers = 8

    public init(imageSize: Int = 64, channels: Int = 1, latentDim: Int = 100, generatorWidth: Int = 64,
                discriminatorWidth: Int = 64, numClasses: Int = 0, classNames: [String] = [],
                upsample: GANUpsampling = .transposed, skipExcitation: Bool = false) {
        self.imageSize = imageSize; self.channels = channels; self.latentDim = latentDim
        self.generatorWidth = generatorWidth; self.discriminatorWidth = discriminatorWidth
        self.numClasses = numClasses; self.classNames = classNames; self.upsample = upsample
        self.skipExcitation = skipExcitation
    }

    enum CodingKeys: String, CodingKey {
        case imageSize, channels, latentDim, generatorWidth, discriminatorWidth, numClasses, classNames, upsample, skipExcitation
        case clustersPerClass, clusterWeights, linearOutput, extraLayers
    }

    /// Missing keys take the defaults, so model files from before a setting existed load as they were trained.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GANConfig()
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
        latentDim = try c.decodeIfPresent(Int.self, forKey: .latentDim) ?? d.latentDim
        generatorWidth = try c.decodeIfPresent(Int.self, forKey: .generatorWidth) ?? d.generatorWidth
        discriminatorWidth = try c.decodeIfPresent(Int.self, forKey: .discriminatorWidth) ?? d.discriminatorWidth
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? d.numClasses
        classNames = try c.decodeIfPresent([String].self, forKey: .classNames) ?? d.classNames
        upsample = try c.decodeIfPresent(GANUpsampling.self, forKey: .upsample) ?? .transposed
        skipExcitation = try c.decodeIfPresent(Bool.self, forKey: .skipExcitation) ?? false
        clustersPerClass = try c.decodeIfPresent(Int.self, forKey: .clustersPerClass) ?? 1
        clusterWeights = try c.decodeIfPresent([Float].self, forKey: .clusterWeights) ?? []
        linearOutput = try c.decodeIfPresent(Bool.self, forKey: .linearOutput) ?? false
        extraLayers = try c.decodeIfPresent(Int.self, forKey: .extraLayers) ?? 0
    }

    /// Labels G and D are conditioned on: the classes, or with self-conditioning every class's
    /// clusters (an unconditional model's images form one class).
    public var conditioningClasses: Int { clustersPerClass > 1 ? max(numClasses, 1) * clustersPerClass : numClasses }

    /// The conditioning label of a sample of `classIndex` (nil: unconditional), drawing its cluster
    /// from `stream` by the clusters' weights when the model is self-conditioned.
    public func conditioningLabel(classIndex: Int?, stream: inout RandomStream) -> Int? {
        guard clustersPerClass > 1 else { return classIndex }
        let base = (classIndex ?? 0) * clustersPerClass
        let weights = clusterWeights[base..<base + clustersPerClass]
        var u = stream.uniform() * weights.reduce(0, +)
        for (j, w) in weights.enumerated() where w > 0 {
            if u < w { return base + j }
            u -= w
        }
        return base + weights.lastIndex(where: { $0 > 0 })!
    }

    /// Upsampling blocks between the 4×4 seed and the image: 1 for 8 px (latents), 2 for 16 px, 3 for 32, 4 for 64, 5 for 128.
    public var hiddenBlocks: Int { Int(log2(Double(imageSize)).rounded()) - 2 }

    public func validate() throws {
        if linearOutput {
            // A latent GAN's "images" are a VAE's latents: 8×8×16 for 64 px at factor 8.
            guard [8, 16, 32, 64, 128].contains(imageSize) else { throw MedSynthError("latent GAN side must be 8, 16, 32, 64 or 128, got \(imageSize)") }
            try requireRange("latent channels", channels, 1...TrainingLimits.maxLatentChannels)
        } else {
            guard [16, 32, 64, 128].contains(imageSize) else { throw MedSynthError("DCGAN image size must be 16, 32, 64 or 128, got \(imageSize)") }
            guard channels == 1 || channels == 3 else { throw MedSynthError("DCGAN channels must be 1 or 3, got \(channels)") }
        }
        guard numClasses >= 0, classNames.isEmpty || classNames.count == numClasses else {
            throw MedSynthError("DCGAN config: \(classNames.count) class names for \(numClasses) classes")
        }
        // Bounds before any layer is built: a negative or zero size crashed (out-of-bounds memset),
        // a huge one aborted in the allocator.
        try requireRange("latentDim", latentDim, 1...ModelConfigLimits.maxLatentDim)
        try requireRange("generatorWidth", generatorWidth, 1...ModelConfigLimits.maxWidth)
        try requireRange("discriminatorWidth", discriminatorWidth, 1...ModelConfigLimits.maxWidth)
        try requireRange("numClasses", numClasses, 0...ModelConfigLimits.maxClasses)
        try requireRange("clustersPerClass", clustersPerClass, 1...ModelConfigLimits.maxClusters)
        try requireRange("extraLayers", extraLayers, 0...GANConfig.maxExtraLayers)
        try requireRange("conditioning labels", conditioningClasses, 0...ModelConfigLimits.maxClasses)
        if clustersPerClass > 1 {
            guard clusterWeights.count == conditioningClasses else {
                throw MedSynthError("DCGAN config: \(clusterWeights.count) cluster weights for \(conditioningClasses) clusters")
            }
            for c in 0..<max(numClasses, 1) {
                let weights = clusterWeights[c * clustersPerClass..<(c + 1) * clustersPerClass]
                guard weights.allSatisfy({ $0.isFinite && $0 >= 0 }), weights.reduce(0, +) > 0 else {
                    throw MedSynthError("DCGAN config: class \(c)'s cluster weights must be finite, non-negative and not all 0")
                }
            }
        } else if !clusterWeights.isEmpty {
            throw MedSynthError("DCGAN config: cluster weights without self-conditioning (clustersPerClass 1)")
        }
        guard !skipExcitation || hiddenBlocks >= 3 else {
            throw MedSynthError("skip-layer excitation needs an image size of 32 or more (a third G block to gate), got \(imageSize)")
        }
        // Weights of the 4×4 (transposed) convolutions of G and D, in floats.
        let blocks = hiddenBlocks
        var weights = 0.0, cin = Double(latentDim + conditioningClasses)
        let taps = upsample == .transposed ? 16.0 : 9.0
        for i in 0..<blocks {
            let width = Double(generatorWidth) * Double(1 << (blocks - 1 - i))
            weights += cin * width * (i == 0 ? 16 : taps)
            cin = width
        }
        let g = Double(generatorWidth), d = Double(discriminatorWidth)
        // With extra layers G doubles to its own width, then 3×3 layers, then a 3×3 output conv.
        weights += extraLayers > 0 ? cin * g * taps + Double(extraLayers) * g * g * 9 + g * Double(channels) * 9 : cin * Double(channels) * taps
        if skipExcitation {
            for i in stride(from: 2, to: blocks, by: 1) {
                let small = Double(generatorWidth) * Double(1 << (blocks + 1 - i)), big = Double(generatorWidth) * Double(1 << (blocks - 1 - i))
                weights += small * big * 16 + big * big
            }
        }
        var din = Double(channels)
        if extraLayers > 0 {
            weights += din * d * 9 + Double(extraLayers - 1) * d * d * 9
            din = d
        }
        for i in 0..<blocks {
            let width = Double(discriminatorWidth) * Double(1 << i)
            weights += din * width * 16
            din = width
        }
        try requireParameterBudget(weights, model: "DCGAN")
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// DCGAN's initialisation: conv weights N(0, 0.02), BatchNorm γ ~ N(1, 0.02), β = 0.
func dcganInitialise(_ modules: [Module], stream: inout RandomStream) {
    for module in modules {
        if let conv = module as? ConvTranspose2d { conv.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: 0.02) } }
        if let conv = module as? Conv2d { conv.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: 0.02) } }
        if let bn = module as? BatchNorm2d {
            bn.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, mean: 1, std: 0.02) }
            bn.bias.data = [Float](repeating: 0, count: bn.bias.count)
        }
    }
}

/// x averaged over 2×2 blocks until its side is at most `side` (sides are powers of 2 here).
func averagePooled(_ x: Tensor, toSide side: Int) -> Tensor {
    var pooled = x
    while pooled.shape[2] > side { pooled = averagePool2x2(pooled) }
    return pooled
}

public final class DCGANGenerator: Module {
    public let config: GANConfig
    /// (upsampling conv, batch norm) per block; the last block has no norm and ends in tanh. The
    /// first block (1×1 → 4×4) is always a transposed conv; later ones follow `config.upsample`.
    let convs: [ConvolutionModule]
    let norms: [BatchNorm2d]
    /// Skip-layer excitation k gates block k + 2 by block k: a 4×4 valid conv of block k's output
    /// (average-pooled to 4×4) to block k + 2's channels, SiLU, a 1×1 conv, sigmoid (FastGAN's SLE).
    let excitations: [(squeeze: Conv2d, excite: Conv2d)]
    /// With `config.extraLayers` > 0: the last of `convs` doubles to full resolution at G's width
    /// (and has a norm); these 3×3 layers follow, then `output` makes the image channels.
    let extraConvs: [Conv2d]
    let extraNorms: [BatchNorm2d]
    let output: Conv2d?

    public init(_ config: GANConfig, stream: inout RandomStream) {
        self.config = config
        let blocks = config.hiddenBlocks, ngf = config.generatorWidth
        let widths = (0..<blocks).map { ngf << (blocks - 1 - $0) }          // 512, 256, 128, 64 at 64 px
        var convs: [ConvolutionModule] = [], norms: [BatchNorm2d] = []
        func doubling(_ cin: Int, _ cout: Int) -> ConvolutionModule {
            switch config.upsample {
            case .transposed: return ConvTranspose2d(cin, cout, kernel: 4, stride: 2, padding: 1, bias: false, stream: &stream)
            case .resize, .bilinear: return Conv2d(cin, cout, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream)
            }
        }
        var cin = config.latentDim + config.conditioningClasses
        for (i, width) in widths.enumerated() {
            convs.append(i == 0 ? ConvTranspose2d(cin, width, kernel: 4, stride: 1, padding: 0, bias: false, stream: &stream) : doubling(cin, width))
            norms.append(BatchNorm2d(width))
            cin = width
        }
        var extraConvs: [Conv2d] = [], extraNorms: [BatchNorm2d] = [], output: Conv2d? = nil
        if config.extraLayers > 0 {
            convs.append(doubling(cin, ngf))
            norms.append(BatchNorm2d(ngf))
            for _ in 0..<config.extraLayers {
                extraConvs.append(Conv2d(ngf, ngf, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream))
                extraNorms.append(BatchNorm2d(ngf))
            }
            output = Conv2d(ngf, config.channels, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream)
        } else {
            convs.append(doubling(cin, config.channels))
        }
        self.convs = convs; self.norms = norms
        self.extraConvs = extraConvs; self.extraNorms = extraNorms; self.output = output
        dcganInitialise(convs as [Module] + norms + extraConvs + extraNorms + (output.map { [$0] } ?? []), stream: &stream)
        // Drawn after the DCGAN's own weights, so a model without excitation draws what it always did.
        var excitations: [(squeeze: Conv2d, excite: Conv2d)] = []
        if config.skipExcitation {
            for i in stride(from: 2, to: blocks, by: 1) {
                let squeeze = Conv2d(widths[i - 2], widths[i], kernel: 4, stride: 1, padding: 0, bias: false, stream: &stream)
                let excite = Conv2d(widths[i], widths[i], kernel: 1, stride: 1, padding: 0, bias: false, stream: &stream)
                dcganInitialise([squeeze, excite], stream: &stream)
                excitations.append((squeeze, excite))
            }
        }
        self.excitations = excitations
    }

    /// Per-sample channel gates in (0, 1), N×C×1×1, from a coarser block's output.
    func excitation(_ k: Int, _ small: Tensor) -> Tensor {
        sigmoid(excitations[k].excite(silu(excitations[k].squeeze(averagePooled(small, toSide: 4)))))
    }

    /// Block i's convolution, with the nearest-neighbour or bilinear doubling in front when it is a resize-conv.
    func upsampling(_ i: Int, _ h: Tensor) -> Tensor {
        switch convs[i] {
        case let conv as ConvTranspose2d: return conv(h)
        case let conv as Conv2d: return conv(config.upsample == .bilinear ? upsampleBilinear2x(h) : upsampleNearest2x(h))
        default: preconditionFailure("DCGANGenerator: unexpected layer \(type(of: convs[i]))")
        }
    }

    /// z: N×latentDim latent vectors; labels: class per sample when conditional. Returns N×C×S×S in [-1, 1].
    public func callAsFunction(_ z: Tensor, labels: [Int]? = nil) -> Tensor {
        let n = z.shape[0]
        var input = z
        if config.conditioningClasses > 0 {
            guard let labels, labels.count == n else { preconditionFailure("DCGANGenerator: conditional model needs one label per sample") }
            var joined = [Float](repeating: 0, count: n * (config.latentDim + config.conditioningClasses))
            let width = config.latentDim + config.conditioningClasses
            for i in 0..<n {
                for j in 0..<config.latentDim { joined[i * width + j] = z.data[i * config.latentDim + j] }
                joined[i * width + config.latentDim + labels[i]] = 1
            }
            input = Tensor(shape: [n, width], data: joined)
        }
        var h = reshape(input, [n, input.count / n, 1, 1])
        var blockOutputs: [Tensor] = []
        for (i, norm) in norms.enumerated() {
            h = norm(upsampling(i, h), activationSlope: 0)
            if i >= 2 && i - 2 < excitations.count { h = mul(h, excitation(i - 2, blockOutputs[i - 2])) }
            blockOutputs.append(h)
        }
        for (conv, norm) in zip(extraConvs, extraNorms) { h = norm(conv(h), activationSlope: 0) }
        let out = output.map { $0(h) } ?? upsampling(convs.count - 1, h)
        return config.linearOutput ? out : tanh(out)
    }

    public func namedTensors() -> [NamedTensor] {
        // Reference indices: block i occupies net.(3i) conv, net.(3i+1) BN, net.(3i+2) ReLU.
        var children: [(String, Module)] = []
        for i in 0..<norms.count {
            children.append(("net.\(3 * i)", convs[i]))
            children.append(("net.\(3 * i + 1)", norms[i]))
        }
        if let output {
            for (j, (conv, norm)) in zip(extraConvs, extraNorms).enumerated() {
                children.append(("extra.\(j).conv", conv)); children.append(("extra.\(j).norm", norm))
            }
            children.append(("out", output))
        } else {
            children.append(("net.\(3 * norms.count)", convs.last!))
        }
        for (k, e) in excitations.enumerated() {
            children.append(("sle.\(k).squeeze", e.squeeze))
            children.append(("sle.\(k).excite", e.excite))
        }
        return gather(children)
    }

    public func setTraining(_ training: Bool) { for n in norms + extraNorms { n.training = training } }
}

/// FastGAN's reconstruction decoder (Liu et al. 2021, §3.2) for D's self-supervision: an 8×8
/// feature map, doubled twice (nearest ×2, 3×3 conv, BatchNorm, LeakyReLU 0.2 — the paper's GLU
/// replaced by DCGAN's activation), then a 3×3 conv to the image channels and tanh: 32×32 images.
public final class ReconstructionDecoder: Module {
    let convs: [Conv2d]
    let norms: [BatchNorm2d]

    init(inChannels: Int, width: Int, imageChannels: Int, stream: inout RandomStream) {
        let widths = [max(width, 1), max(width / 2, 1)]
        var convs: [Conv2d] = [], norms: [BatchNorm2d] = [], cin = inChannels
        for w in widths {
            convs.append(Conv2d(cin, w, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream))
            norms.append(BatchNorm2d(w))
            cin = w
        }
        convs.append(Conv2d(cin, imageChannels, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream))
        self.convs = convs; self.norms = norms
        dcganInitialise(convs as [Module] + norms, stream: &stream)
    }

    public func callAsFunction(_ features: Tensor) -> Tensor {
        var h = features
        for (conv, norm) in zip(convs, norms) { h = norm(conv(upsampleNearest2x(h)), activationSlope: 0.2) }
        return tanh(convs.last!(h))
    }

    public func namedTensors() -> [NamedTensor] {
        var children: [(String, Module)] = []
        for i in 0..<norms.count { children.append(("up.\(i).conv", convs[i])); children.append(("up.\(i).norm", norms[i])) }
        children.append(("out", convs.last!))
        return gather(children)
    }

    public func setTraining(_ training: Bool) { for n in norms { n.training = training } }
}

public final class DCGANDiscriminator: Module {
    public let config: GANConfig
    let convs: [Conv2d]
    /// BatchNorm after every conv but the first and the last (none with spectral normalisation).
    let norms: [BatchNorm2d]
    /// Projection discriminator (Miyato & Koyama 2018): logit += ⟨embed(y), Σ_hw φ(x)⟩.
    let projection: Embedding?
    /// With spectral normalisation (Miyato et al. 2018): one per conv, then the projection's.
    let spectral: [SpectralNormalizer]
    /// The last conv also sees a minibatch-std channel (Karras et al. 2018).
    public let usesMinibatchStd: Bool
    /// Samples per logit (PacGAN, Lin et al. 2018): consecutive samples are stacked as channels.
    public let packing: Int
    /// FastGAN's self-supervision (Liu et al. 2021): `whole` rebuilds the real image at 32×32 from
    /// D's 8×8 features, `part` a quadrant of it from that quadrant of D's 16×16 features.
    public let decoders: (whole: ReconstructionDecoder, part: ReconstructionDecoder)?
    /// `config.extraLayers` 3×3 convs at full resolution before the first downsampling (BatchNorm after the first).
    let stem: [Conv2d]
    let stemNorms: [BatchNorm2d]

    public init(_ config: GANConfig, spectralNorm: Bool = false, minibatchStd: Bool = false, packing: Int = 1,
                reconstruction: Bool = false, stream: inout RandomStream) {
        precondition(packing >= 1, "DCGANDiscriminator: packing must be at least 1")
        self.config = config
        usesMinibatchStd = minibatchStd
        self.packing = packing
        let blocks = config.hiddenBlocks, ndf = config.discriminatorWidth
        var convs: [Conv2d] = [], norms: [BatchNorm2d] = []
        var cin = config.channels * packing
        var stem: [Conv2d] = [], stemNorms: [BatchNorm2d] = []
        for j in 0..<config.extraLayers {
            stem.append(Conv2d(cin, ndf, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream))
            if j > 0 { stemNorms.append(BatchNorm2d(ndf)) }
            cin = ndf
        }
        self.stem = stem; self.stemNorms = stemNorms
        for i in 0..<blocks {
            let width = ndf << i                                          // 64, 128, 256, 512 at 64 px
            convs.append(Conv2d(cin, width, kernel: 4, stride: 2, padding: 1, bias: false, stream: &stream))
            // SNGAN's discriminator has no BatchNorm: it would undo the Lipschitz bound per batch.
            if i > 0 && !spectralNorm { norms.append(BatchNorm2d(width)) }
            cin = width
        }
        convs.append(Conv2d(cin + (minibatchStd ? 1 : 0), 1, kernel: 4, stride: 1, padding: 0, bias: false, stream: &stream))
        self.convs = convs; self.norms = norms
        projection = config.conditioningClasses > 0 ? Embedding(config.conditioningClasses, cin, stream: &stream) : nil
        dcganInitialise(convs as [Module] + norms + stem + stemNorms, stream: &stream)
        if let projection { projection.weight.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: 0.02) } }
        // u vectors drawn last, so a model without spectral norm draws exactly what it did before.
        spectral = spectralNorm ? (convs.map(\.weight) + (projection.map { [$0.weight] } ?? [])).map { SpectralNormalizer($0, stream: &stream) } : []
        // Decoders last, for the same reason. Their inputs: block outputs at 8×8 and 16×16.
        if reconstruction {
            precondition(config.hiddenBlocks >= 4, "DCGANDiscriminator: reconstruction needs 64 px or more")
            // Block i halves the side i + 1 times, so the block with output side s is log2(S / s) − 1.
            let channelsAt = { (side: Int) in convs[(config.imageSize / side).trailingZeroBitCount - 1].weight.shape[0] }
            decoders = (ReconstructionDecoder(inChannels: channelsAt(8), width: ndf, imageChannels: config.channels, stream: &stream),
                        ReconstructionDecoder(inChannels: channelsAt(16), width: ndf, imageChannels: config.channels, stream: &stream))
        } else {
            decoders = nil
        }
    }

    public var usesSpectralNorm: Bool { !spectral.isEmpty }

    /// One power iteration for every normalised weight: called once per training step.
    public func updateSpectralNorms() { for s in spectral { s.powerIteration() } }

    func conv(_ i: Int, _ x: Tensor) -> Tensor {
        guard usesSpectralNorm else { return convs[i](x) }
        return conv2d(x, weight: spectral[i].normalized(), stride: convs[i].stride, padding: convs[i].padding)
    }

    /// x: N×C×S×S. Returns N / packing logits, one per pack of consecutive samples.
    public func callAsFunction(_ x: Tensor, labels: [Int]? = nil) -> Tensor {
        logitsAndFeatures(x, labels: labels, sides: []).logits
    }

    /// The logits and the block outputs whose side is in `sides` (keyed by side).
    public func logitsAndFeatures(_ x: Tensor, labels: [Int]?, sides: Set<Int>) -> (logits: Tensor, features: [Int: Tensor]) {
        let packs = x.shape[0] / packing
        precondition(packs * packing == x.shape[0], "DCGANDiscriminator: batch \(x.shape[0]) does not split into packs of \(packing)")
        let packed = packing == 1 ? x : reshape(x, [packs, x.shape[1] * packing, x.shape[2], x.shape[3]])
        var features: [Int: Tensor] = [:]
        var input = packed
        for (j, layer) in stem.enumerated() {
            input = j == 0 ? leakyRelu(layer(input), slope: 0.2) : stemNorms[j - 1](layer(input), activationSlope: 0.2)
        }
        var h = leakyRelu(conv(0, input), slope: 0.2)
        if sides.contains(h.shape[2]) { features[h.shape[2]] = h }
        for i in 1..<convs.count - 1 {
            h = usesSpectralNorm ? leakyRelu(conv(i, h), slope: 0.2) : norms[i - 1](conv(i, h), activationSlope: 0.2)
            if sides.contains(h.shape[2]) { features[h.shape[2]] = h }
        }
        var logits = reshape(conv(convs.count - 1, usesMinibatchStd ? appendMinibatchStd(h) : h), [packs])
        if let projection {
            guard let labels, labels.count == x.shape[0] else { preconditionFailure("DCGANDiscriminator: conditional model needs one label per sample") }
            let table = usesSpectralNorm ? spectral[convs.count].normalized() : projection.weight
            // A pack's class embedding is the mean of its samples' embeddings.
            var embedded = embedding((0..<packs).map { labels[$0 * packing] }, table: table)
            for slot in 1..<packing {
                embedded = add(embedded, embedding((0..<packs).map { labels[$0 * packing + slot] }, table: table))
            }
            if packing > 1 { embedded = scale(embedded, 1 / Float(packing)) }
            logits = add(logits, sumPerSample(mul(h, embedded)))
        }
        return (logits, features)
    }

    /// FastGAN's reconstruction loss on the images D judged (Liu et al. 2021, with mean squared
    /// error for their LPIPS): the whole image from the 8×8 features against the image averaged
    /// down to 32×32, and quadrant `quadrant` (0–3, row-major) from that quadrant of the 16×16
    /// features against the image's quadrant averaged down to 32×32.
    public func reconstructionLoss(images: Tensor, features: [Int: Tensor], quadrant: Int) -> Tensor {
        guard let decoders, let coarse = features[8], let fine = features[16] else {
            preconditionFailure("DCGANDiscriminator: reconstruction needs decoders and the 8×8 and 16×16 features")
        }
        let side = images.shape[2], row = quadrant / 2, column = quadrant % 2
        let imagePart = cropSpatial(images, top: row * side / 2, left: column * side / 2, height: side / 2, width: side / 2)
        let featurePart = cropSpatial(fine, top: row * 8, left: column * 8, height: 8, width: 8)
        return add(mseLoss(decoders.whole(coarse), averagePooled(images, toSide: 32)),
                   mseLoss(decoders.part(featurePart), averagePooled(imagePart, toSide: 32)))
    }

    public func namedTensors() -> [NamedTensor] {
        // Reference indices: net.0 conv, net.1 LeakyReLU, then (conv, BN, LeakyReLU) triples, last conv.
        var convNames = ["net.0"]
        var children: [(String, Module)] = [("net.0", convs[0])]
        for i in 1..<convs.count - 1 {
            convNames.append("net.\(3 * i - 1)")
            children.append((convNames[i], convs[i]))
            if !usesSpectralNorm { children.append(("net.\(3 * i)", norms[i - 1])) }
        }
        convNames.append("net.\(3 * (convs.count - 1) - 1)")
        children.append((convNames.last!, convs.last!))
        if let projection { children.append(("embed", projection)); convNames.append("embed") }
        if let decoders { children.append(("decoder.whole", decoders.whole)); children.append(("decoder.part", decoders.part)) }
        for (j, layer) in stem.enumerated() {
            children.append(("stem.\(j).conv", layer))
            if j > 0 { children.append(("stem.\(j).norm", stemNorms[j - 1])) }
        }
        // Spectral norm keeps each weight's u as the buffer `<layer>.weight_u` (PyTorch's name).
        return gather(children) + zip(convNames, spectral).map { NamedTensor("\($0).weight_u", $1.u, isParameter: false) }
    }

    public func setTraining(_ training: Bool) {
        for n in norms + stemNorms { n.training = training }
        decoders?.whole.setTraining(training); decoders?.part.setTraining(training)
    }
}
