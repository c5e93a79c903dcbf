import Foundation
import Core
import Engine

// MARK: - Noise schedules (schedulers hold no weights)
//
// Timesteps are 0-based, t ∈ [0, T); ᾱ[t] is the signal fraction after t + 1 noising steps, as in
// the PyTorch reference (`cosine_alpha_bar(T)[t]`). "Before step 0" ᾱ is 1.

public enum NoiseScheduleKind: String, Codable, CaseIterable {
    /// Ho et al. 2020: β linear from 1e-4 to 0.02.
    case linear
    /// Nichol & Dhariwal 2021, eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008.
    case cosine
}

/// What the network predicts.
public enum PredictionTarget: String, Codable, CaseIterable {
    /// The noise ε (Ho et al. 2020).
    case epsilon
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022).
    case v
}

public struct NoiseSchedule: Equatable {
    public let kind: NoiseScheduleKind
    public let steps: Int
    public let betas: [Double]
    public let alphaBars: [Double]

    /// The signal-to-noise ratio of every step multiplied by `snrShift`.
    public let snrShift: Double

    /// `snrShift` m multiplies every step's SNR ᾱ/(1 − ᾱ) by m (log-SNR + log m): Hoogeboom et al.
    /// 2023, "simple diffusion", eq. 4 shift the cosine schedule by (64/d)² for d-pixel images, so a
    /// low-resolution input (a 16×16 latent) is not drowned at mid timesteps.
    public init(kind: NoiseScheduleKind = .cosine, steps: Int = 1000, snrShift: Double = 1) {
        self.kind = kind
        self.steps = steps
        self.snrShift = snrShift
        var bars: [Double]
        switch kind {
        case .linear:
            let b = (0..<steps).map { 1e-4 + (0.02 - 1e-4) * Double($0) / Double(max(steps - 1, 1)) }
            var product = 1.0
            bars = b.map { product *= 1 - $0; return product }
            if snrShift == 1 { betas = b; alphaBars = bars; return }
        case .cosine:
            let s = 0.008
            func f(_ t: Double) -> Double { let c = cos((t / Double(steps) + s) / (1 + s) * Double.pi / 2); return c * c }
            // Clamped like the reference so the last steps keep a finite signal-to-noise ratio.
            bars = (1...steps).map { max(f(Double($0)) / f(0), 1e-5) }
        }
        if snrShift != 1 { bars = bars.map { snrShift * $0 / (1 + (snrShift - 1) * $0) } }
        alphaBars = bars
        betas = bars.enumerated().map { i, a in min(1 - a / (i == 0 ? 1 : bars[i - 1]), 0.999) }
    }

    /// ᾱ at timestep t, with ᾱ(−1) = 1.
    @inline(__always) public func alphaBar(_ t: Int) -> Double { t < 0 ? 1 : alphaBars[t] }

    /// x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (Ho et al. eq. 4), per sample; x0, noise: N×…
    public func addNoise(_ x0: [Float], noise: [Float], timesteps: [Int]) -> [Float] {
        let per = x0.count / timesteps.count
        var out = [Float](repeating: 0, count: x0.count)
        for (i, t) in timesteps.enumerated() {
            let a = Float(alphaBar(t).squareRoot()), s = Float((1 - alphaBar(t)).squareRoot())
            for j in i * per..<(i + 1) * per { out[j] = a * x0[j] + s * noise[j] }
        }
        return out
    }

    /// The training target for `target`: ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀.
    public func trainingTarget(_ target: PredictionTarget, x0: [Float], noise: [Float], timesteps: [Int]) -> [Float] {
        guard target == .v else { return noise }
        let per = x0.count / timesteps.count
        var out = [Float](repeating: 0, count: x0.count)
        for (i, t) in timesteps.enumerated() {
            let a = Float(alphaBar(t).squareRoot()), s = Float((1 - alphaBar(t)).squareRoot())
            for j in i * per..<(i + 1) * per { out[j] = a * noise[j] - s * x0[j] }
        }
        return out
    }
}
