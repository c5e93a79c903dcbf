import Foundation
import Core
import Engine
import Layers

// MARK: - UNet-S (DDPM-style), as ../shared/reference ARCHITECTURES.md
//
// Names follow the PyTorch reference's state_dict (temb.0, label, inp, down.<i>.res.c1, mida.qkv,
// up.<i>.res.<j>.skip, out.2 …) so weights load both ways through safetensors.

/// Settings of a U-Net, stored beside its weights.
public struct UNetConfig: Codable, Equatable {
    public var imageSize: Int = 64
    public var channels: Int = 1
    public var baseWidth: Int = 32
    public var channelMultipliers: [Int] = [1, 2, 4, 4]
    /// Resolutions (in pixels) whose levels get self-attention.
    public var attentionResolutions: [Int] = [8]
    public var groups: Int = 8
    /// 0 = unconditional; otherwise an embedding of numClasses + 1 rows (the last is "no label").
    public var numClasses: Int = 0
    public var classNames: [String] = []
    /// Width of the sinusoidal timestep features fed to the time MLP (half sines, half cosines).
    /// The reference ties it to the base width, which leaves a base-16 U-Net only 8 frequencies to
    /// tell 1,000 timesteps apart; the default max(32, base) keeps UNet-S (base ≥ 32) layer-for-layer
    /// the reference and gives small U-Nets the reference's 16 frequencies. Checkpoints written
    /// before this field existed decode it as the base width.
    public var timeFeatures: Int

    public init(imageSize: Int = 64, channels: Int = 1, baseWidth: Int = 32, channelMultipliers: [Int] = [1, 2, 4, 4],
                attentionResolutions: [Int] = [8], groups: Int = 8, numClasses: Int = 0, classNames: [String] = [],
                timeFeatures: Int? = nil) {
        self.imageSize = imageSize; self.channels = channels; self.baseWidth = baseWidth
        self.channelMultipliers = channelMultipliers; self.attentionResolutions = attentionResolutions
        self.groups = groups; self.numClasses = numClasses; self.classNames = classNames
        self.timeFeatures = timeFeatures ?? max(32, baseWidth)
    }

    enum CodingKeys: String, CodingKey {
        case imageSize, channels, baseWidth, channelMultipliers, attentionResolutions, groups, numClasses, classNames, timeFeatures
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageSize = try c.decode(Int.self, forKey: .imageSize)
        channels = try c.decode(Int.self, forKey: .channels)
        baseWidth = try c.decode(Int.self, forKey: .baseWidth)
        channelMultipliers = try c.decode([Int].self, forKey: .channelMultipliers)
        attentionResolutions = try c.decode([Int].self, forKey: .attentionResolutions)
        groups = try c.decode(Int.self, forKey: .groups)
        numClasses = try c.decode(Int.self, forKey: .numClasses)
        classNames = try c.decode([String].self, forKey: .classNames)
        timeFeatures = try c.decodeIfPresent(Int.self, forKey: .timeFeatures) ?? baseWidth
    }

    public func validate() throws {
        // Bounds before any layer is built: groups = 0 divided by zero, negative widths crashed.
        try requireRange("baseWidth", baseWidth, 1...ModelConfigLimits.maxWidth)
        try requireRange("groups", groups, 1...ModelConfigLimits.maxWidth)
        try requireRange("numClasses", numClasses, 0...ModelConfigLimits.maxClasses)
        try requireRange("number of channelMultipliers", channelMultipliers.count, 1...6)
        for m in channelMultipliers { try requireRange("channelMultipliers entry", m, 1...16) }
        for r in attentionResolutions { try requireRange("attentionResolutions entry", r, 1...256) }
        guard classNames.isEmpty || classNames.count == numClasses else {
            throw MedSynthError("U-Net config: \(classNames.count) class names for \(numClasses) classes")
        }
        // Two residual blocks of two 3×3 convolutions per level, down and up, plus attention: about
        // 64·width² weights per level.
        try requireParameterBudget(channelMultipliers.reduce(0.0) { $0 + 64 * pow(Double(baseWidth * $1), 2) }, model: "U-Net")
        let downsamples = channelMultipliers.count - 1
        guard imageSize >= 8, imageSize <= 256, imageSize % (1 << downsamples) == 0 else {
            throw MedSynthError("U-Net image size \(imageSize) must be 8...256 and divisible by 2^\(downsamples)")
        }
        guard timeFeatures >= 2, timeFeatures % 2 == 0 else {
            throw MedSynthError("U-Net time features must be an even number ≥ 2, got \(timeFeatures)")
        }
        // 1 or 3 for images; latent diffusion runs the same U-Net on a VAE's latent channels.
        guard channels >= 1 && channels <= 64 else { throw MedSynthError("U-Net channels must be 1...64, got \(channels)") }
        guard channelMultipliers.allSatisfy({ baseWidth * $0 % groups == 0 }) else {
            throw MedSynthError("U-Net widths \(channelMultipliers.map { baseWidth * $0 }) must be divisible by \(groups) groups")
        }
    }
}

/// Sinusoidal timestep embedding: sin half then cos half, frequencies exp(−ln(10000)·i/half).
public func timestepEmbedding(_ timesteps: [Int], dimension: Int) -> Tensor {
    let half = dimension / 2
    var out = [Float](repeating: 0, count: timesteps.count * dimension)
    for (row, t) in timesteps.enumerated() {
        for i in 0..<half {
            let frequency = Foundation.exp(-Foundation.log(Float(10000)) * Float(i) / Float(half))
            let angle = Float(t) * frequency
            out[row * dimension + i] = Foundation.sin(angle)
            out[row * dimension + half + i] = Foundation.cos(angle)
        }
    }
    return Tensor(shape: [timesteps.count, dimension], data: out)
}

final class ResBlock: Module {
    let n1: GroupNorm, c1: Conv2d, t: Linear, n2: GroupNorm, c2: Conv2d
    let skip: Conv2d?

    init(_ cin: Int, _ cout: Int, embedding: Int, groups: Int, stream: inout RandomStream) {
        n1 = GroupNorm(groups: groups, channels: cin)
        c1 = Conv2d(cin, cout, kernel: 3, padding: 1, stream: &stream)
        t = Linear(embedding, cout, stream: &stream)
        n2 = GroupNorm(groups: groups, channels: cout)
        c2 = Conv2d(cout, cout, kernel: 3, padding: 1, stream: &stream)
        skip = cin != cout ? Conv2d(cin, cout, kernel: 1, stream: &stream) : nil
    }

    /// x: N×cin×H×W; siluEmbedding: SiLU(e), N×E (shared by every block, computed once).
    func callAsFunction(_ x: Tensor, _ siluEmbedding: Tensor) -> Tensor {
        var h = c1(n1.withSiLU(x))
        h = add(h, t(siluEmbedding))
        return c2(n2.withSiLU(h), residual: skip.map { $0(x) } ?? x)
    }

    func namedTensors() -> [NamedTensor] {
        gather([("n1", n1), ("c1", c1), ("t", t), ("n2", n2), ("c2", c2)] + (skip.map { [("skip", $0 as Module)] } ?? []))
    }
}

final class AttentionBlock: Module {
    let n: GroupNorm, qkv: Conv2d, o: Conv2d

    init(_ channels: Int, groups: Int, stream: inout RandomStream) {
        n = GroupNorm(groups: groups, channels: channels)
        qkv = Conv2d(channels, 3 * channels, kernel: 1, stream: &stream)
        o = Conv2d(channels, channels, kernel: 1, stream: &stream)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        o(spatialSelfAttention(qkv: qkv(n(x))), residual: x)
    }

    func namedTensors() -> [NamedTensor] { gather([("n", n), ("qkv", qkv), ("o", o)]) }
}

public final class UNet: Module {
    public let config: UNetConfig
    let tembIn: Linear, tembOut: Linear
    let label: Embedding?
    let inp: Conv2d
    struct DownLevel { let res: ResBlock; let attn: AttentionBlock?; let down: Conv2d? }
    struct UpLevel { let res: [ResBlock]; let attn: AttentionBlock?; let up: Conv2d? }
    let downLevels: [DownLevel]
    let mid1: ResBlock, mida: AttentionBlock, mid2: ResBlock
    let upLevels: [UpLevel]
    let outNorm: GroupNorm, outConv: Conv2d

    public init(_ config: UNetConfig, stream: inout RandomStream) {
        self.config = config
        let base = config.baseWidth, emb = 4 * base, groups = config.groups
        tembIn = Linear(config.timeFeatures, emb, stream: &stream)
        tembOut = Linear(emb, emb, stream: &stream)
        label = config.numClasses > 0 ? Embedding(config.numClasses + 1, emb, stream: &stream) : nil
        inp = Conv2d(config.channels, base, kernel: 3, padding: 1, stream: &stream)
        let widths = config.channelMultipliers.map { base * $0 }
        var skips = [base], c = base, resolution = config.imageSize
        var down: [DownLevel] = []
        for (i, width) in widths.enumerated() {
            let res = ResBlock(c, width, embedding: emb, groups: groups, stream: &stream); c = width
            let attn = config.attentionResolutions.contains(resolution) ? AttentionBlock(c, groups: groups, stream: &stream) : nil
            skips.append(c)
            var conv: Conv2d? = nil
            if i < widths.count - 1 {
                conv = Conv2d(c, c, kernel: 3, stride: 2, padding: 1, stream: &stream); skips.append(c); resolution /= 2
            }
            down.append(DownLevel(res: res, attn: attn, down: conv))
        }
        downLevels = down
        mid1 = ResBlock(c, c, embedding: emb, groups: groups, stream: &stream)
        mida = AttentionBlock(c, groups: groups, stream: &stream)
        mid2 = ResBlock(c, c, embedding: emb, groups: groups, stream: &stream)
        var up: [UpLevel] = []
        for (i, width) in widths.enumerated().reversed() {
            var blocks: [ResBlock] = []
            for _ in 0..<2 {
                let sc = skips.removeLast()
                blocks.append(ResBlock(c + sc, width, embedding: emb, groups: groups, stream: &stream)); c = width
            }
            let attn = config.attentionResolutions.contains(resolution) ? AttentionBlock(c, groups: groups, stream: &stream) : nil
            var conv: Conv2d? = nil
            if i > 0 { conv = Conv2d(c, c, kernel: 3, padding: 1, stream: &stream); resolution *= 2 }
            up.append(UpLevel(res: blocks, attn: attn, up: conv))
        }
        precondition(skips.isEmpty, "UNet: skip bookkeeping")
        upLevels = up
        outNorm = GroupNorm(groups: groups, channels: c)
        outConv = Conv2d(c, config.channels, kernel: 3, padding: 1, stream: &stream)
    }

    /// x: N×C×H×W noisy images; timesteps: N integers; labels: N class indices (numClasses = no label)
    /// or nil. Returns the network output (ε or v), N×C×H×W.
    public func callAsFunction(_ x: Tensor, timesteps: [Int], labels: [Int]? = nil) -> Tensor {
        // 1. Time (and label) embedding
        var e = tembOut(silu(tembIn(timestepEmbedding(timesteps, dimension: config.timeFeatures))))
        if let label, let labels { e = add(e, label(labels)) }
        let siluE = silu(e)
        // 2. Input conv and down path, keeping every level and downsample output as a skip
        var h = inp(x)
        var hs = [h]
        for level in downLevels {
            h = level.res(h, siluE)
            if let attn = level.attn { h = attn(h) }
            hs.append(h)
            if let down = level.down { h = down(h); hs.append(h) }
        }
        // 3. Middle
        h = mid2(mida(mid1(h, siluE)), siluE)
        // 4. Up path: two ResBlocks per level on concat(h, skip), then nearest ×2 + conv
        for level in upLevels {
            for block in level.res { h = block(concatChannels([h, hs.removeLast()]), siluE) }
            if let attn = level.attn { h = attn(h) }
            if let up = level.up { h = up(upsampleNearest2x(h)) }
        }
        // 5. Output
        return outConv(outNorm.withSiLU(h))
    }

    /// Zeroes the last layer of every residual branch (second conv of each ResBlock, attention
    /// output projection) and the output conv, so the fresh network is the identity on its skip
    /// path and predicts 0 (Ho et al. 2020's released code, `init_scale=0`; Goyal et al. 2017 for
    /// residual branches). With v- or ε-prediction 0 is the best constant output, so training
    /// starts from a sane sampler instead of from random high-frequency noise. Gradients still
    /// reach the zeroed layers through their inputs.
    public func zeroInitializeResidualOutputs() {
        let blocks = downLevels.map(\.res) + [mid1, mid2] + upLevels.flatMap(\.res)
        let attention = downLevels.compactMap(\.attn) + [mida] + upLevels.compactMap(\.attn)
        for block in blocks { zero(block.c2) }
        for block in attention { zero(block.o) }
        zero(outConv)
    }

    /// Scales the class-embedding table (N(0, 1) like PyTorch's nn.Embedding, norm ≈ √(4·base))
    /// so that at initialisation the label does not swamp the time embedding it is added to.
    public func scaleClassEmbedding(by factor: Float) {
        guard let label else { return }
        for i in label.weight.data.indices { label.weight.data[i] *= factor }
    }

    private func zero(_ conv: Conv2d) {
        for i in conv.weight.data.indices { conv.weight.data[i] = 0 }
        if let bias = conv.bias { for i in bias.data.indices { bias.data[i] = 0 } }
    }

    public func namedTensors() -> [NamedTensor] {
        var children: [(String, Module)] = [("temb.0", tembIn), ("temb.2", tembOut)]
        if let label { children.append(("label", label)) }
        children.append(("inp", inp))
        for (i, level) in downLevels.enumerated() {
            children.append(("down.\(i).res", level.res))
            if let attn = level.attn { children.append(("down.\(i).attn", attn)) }
            if let down = level.down { children.append(("down.\(i).down", down)) }
        }
        children += [("mid1", mid1), ("mida", mida), ("mid2", mid2)]
        for (i, level) in upLevels.enumerated() {
            for (j, block) in level.res.enumerated() { children.append(("up.\(i).res.\(j)", block)) }
            if let attn = level.attn { children.append(("up.\(i).attn", attn)) }
            if let up = level.up { children.append(("up.\(i).up", up)) }
        }
        children += [("out.0", outNorm), ("out.2", outConv)]
        return gather(children)
    }
}
