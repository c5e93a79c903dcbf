// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random numbers:
// as easy as 1, 2, 3"). A stream is a (key, stream id) pair and the n-th draw is a pure function
// of (key, stream, n), so every sample index, epoch or augmentation gets its own reproducible
// stream, identical on every machine and for any thread count.

/// SplitMix64 finaliser: mixes a 64-bit value into a well-distributed one. Used to derive keys.
@inlinable
public func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// One Philox4x32-10 block: four 32-bit outputs for a 128-bit counter under a 64-bit key.
@inlinable
public func philox4x32(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
    var c = counter
    var k = key
    for round in 0..<10 {
        if round > 0 {
            k.0 = k.0 &+ 0x9E37_79B9
            k.1 = k.1 &+ 0xBB67_AE85
        }
        let p0 = UInt64(0xD251_1F53) &* UInt64(c.0)
        let p1 = UInt64(0xCD9E_8D57) &* UInt64(c.2)
        c = (UInt32(truncatingIfNeeded: p1 >> 32) ^ c.1 ^ k.0,
             UInt32(truncatingIfNeeded: p1),
             UInt32(truncatingIfNeeded: p0 >> 32) ^ c.3 ^ k.1,
             UInt32(truncatingIfNeeded: p0))
    }
    return c
}

/// A reproducible random stream. `RandomStream(seed: s).split(i)` gives stream i of seed s;
/// splits nest (`split(epoch).split(sampleIndex)`), so any consumer can own an independent stream.
public struct RandomStream: Sendable {
    public let key: UInt64
    public let stream: UInt64
    /// Number of 4-word blocks consumed so far.
    public private(set) var blockIndex: UInt64 = 0
    @usableFromInline var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    @usableFromInline var bufferUsed = 4
    @usableFromInline var spareNormal: Float? = nil

    public init(seed: UInt64, stream: UInt64 = 0) {
        self.key = splitMix64(seed)
        self.stream = stream
    }

    init(rawKey: UInt64, stream: UInt64) {
        self.key = rawKey
        self.stream = stream
    }

    /// An independent child stream identified by `id`; does not advance `self`.
    public func split(_ id: UInt64) -> RandomStream {
        RandomStream(rawKey: splitMix64(key ^ splitMix64(stream &+ 0x5851_F42D_4C95_7F2D) ^ splitMix64(id)), stream: id)
    }

    @inlinable
    public mutating func nextUInt32() -> UInt32 {
        if bufferUsed == 4 { refill() }
        defer { bufferUsed += 1 }
        switch bufferUsed {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    @usableFromInline
    mutating func refill() {
        let counter = (UInt32(truncatingIfNeeded: blockIndex), UInt32(truncatingIfNeeded: blockIndex >> 32),
                       UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        buffer = philox4x32(counter: counter, key: (UInt32(truncatingIfNeeded: key), UInt32(truncatingIfNeeded: key >> 32)))
        blockIndex &+= 1
        bufferUsed = 0
    }

    public mutating func nextUInt64() -> UInt64 {
        UInt64(nextUInt32()) << 32 | UInt64(nextUInt32())
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inlinable
    public mutating func uniform() -> Float {
        Float(nextUInt32() >> 8) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * uniform()
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniformDouble() -> Double {
        Double(nextUInt64() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in 0..<n without modulo bias (Lemire's method).
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0, "RandomStream.int(below:) needs n > 0")
        let bound = UInt64(n)
        while true {
            let x = nextUInt64()
            let product = x.multipliedFullWidth(by: bound)
            if product.low >= (0 &- bound) % bound { return Int(product.high) }
        }
    }

    /// Standard normal by the Box-Muller transform (pairs are cached).
    public mutating func normal() -> Float {
        if let spare = spareNormal { spareNormal = nil; return spare }
        // u1 in (0, 1] so the logarithm is finite.
        let u1 = (Double(nextUInt32()) + 1.0) * (1.0 / 4_294_967_296.0)
        let u2 = Double(nextUInt32()) * (1.0 / 4_294_967_296.0)
        let radius = (-2.0 * _log(u1)).squareRoot()
        let angle = 2.0 * Double.pi * u2
        spareNormal = Float(radius * _sin(angle))
        return Float(radius * _cos(angle))
    }

    public mutating func fillNormal(_ out: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float = 1) {
        for i in out.indices { out[i] = mean + std * normal() }
    }

    public mutating func fillUniform(_ out: UnsafeMutableBufferPointer<Float>, _ lo: Float = 0, _ hi: Float = 1) {
        for i in out.indices { out[i] = uniform(lo, hi) }
    }

    /// A random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, int(below: i + 1)) }
        return p
    }
}

#if canImport(Glibc)
import Glibc
@usableFromInline func _log(_ x: Double) -> Double { Glibc.log(x) }
@usableFromInline func _sin(_ x: Double) -> Double { Glibc.sin(x) }
@usableFromInline func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@usableFromInline func _log(_ x: Double) -> Double { Foundation.log(x) }
@usableFromInline func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@usableFromInline func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif

// MARK: - Named child streams

/// What a child stream of a run's seed is for. The raw values are part of the file formats'
/// meaning: changing one changes every image, batch and checkpoint made from the same seed.
public enum StreamPurpose: UInt64, CaseIterable, Sendable {
    /// Epoch permutations of a training run's dataset.
    case datasetOrder = 0xDA7A
    /// A training step's noise, timesteps, label dropout and augmentation (then split by step).
    case trainingStep = 0x57E9
    /// The initial weights of each model's networks.
    case ganInitialisation = 0x1417, diffusionInitialisation = 0xD1FF, vaeInitialisation = 0x7AE1, utilityClassifierInitialisation = 1
    /// The fixed latents of a GAN run's sample grids.
    case ganSampleGrid = 0x6121D
    /// PyTorch-style default initialisation of the feature network, overwritten by its documented weights.
    case featureNetworkConstruction = 0xFFFF
    /// KID's random subsets (then split by subset).
    case kidSubsets = 0x41D
    /// The utility classifier's reshuffled passes (then split by pass).
    case utilityClassifierOrder = 2
    /// The evaluation report's real-vs-real baseline: which real images form each half.
    case realBaselineSplit = 0x8EA1
    /// Which synthetic images are scored against the baseline's first half, at the halves' size.
    case realBaselineSyntheticDraw = 0x8EA2
    /// `medsynth utility`'s seeded per-class train/test split of the real images.
    case utilityHeldOutSplit = 0x5917
    /// The generated-sample filters' confidence classifier (then initialisation and order as usual).
    case balanceFilterClassifier = 0xF117
    /// `medsynth reconstruct --latent-noise`: the noise added to each image's latent (then split by image).
    case reconstructionNoise = 0x2E5E
    /// A self-conditioned GAN's k-means seeding of each class's clusters (then split by class and restart).
    case selfConditioning = 0x5E1F
    /// A self-conditioned GAN sample's cluster, under the sample's own stream after its latent.
    case selfConditioningDraw = 0x5E1D
}

extension RandomStream {
    /// The child stream that owns `purpose` under this stream.
    public func split(_ purpose: StreamPurpose) -> RandomStream { split(purpose.rawValue) }
}
