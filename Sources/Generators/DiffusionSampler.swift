import Foundation
import Core
import Engine

// MARK: - Samplers: DDPM ancestral, DDIM, DPM-Solver++(2M), classifier-free guidance, inpainting
//
// Reproducibility: sample i's initial noise and every per-step noise come from its own stream
// RandomStream(seed).split(i), drawn in a fixed order, so a batch's composition never changes a
// sample.

/// Any network that maps (x_t, t, labels) to its prediction (ε or v); labels nil = unconditional.
public protocol NoisePredictor: AnyObject {
    func predict(_ x: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor
}

extension UNet: NoisePredictor {
    public func predict(_ x: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor {
        self(x, timesteps: timesteps, labels: labels)
    }
}

public enum SamplerKind: String, Codable, CaseIterable {
    case ddpm, ddim, dpm
}

/// Which timesteps a sampler visits (diffusers' `timestep_spacing`; Lin et al. 2024, Table 2).
public enum TimestepSpacing: String, Codable, CaseIterable {
    /// t = k·⌊T/S⌋ (+ steps offset): the original DDIM/Stable-Diffusion convention; never visits T − 1.
    case leading
    /// t = round(T − k·T/S) − 1: starts at T − 1, the noise level the model was trained on as
    /// "pure noise" (Lin et al. 2024, §3.3); the default because it samples best.
    case trailing
    /// t = round(linspace(0, T − 1, S)) (DDIM) or S + 1 points without the last (DPM-Solver).
    case linspace
    /// Uniform in λ = log(α/σ) between the noisiest and the cleanest step (Lu et al. 2022 for
    /// low-resolution pixel models), nearest integer timesteps, repeats removed.
    case logSNR = "log-snr"
}

/// ᾱ after DDIM's last step (diffusers' `set_alpha_to_one`).
public enum FinalAlphaBar: String, Codable, CaseIterable {
    /// ᾱ = 1: the last step returns the x₀ estimate (`set_alpha_to_one=True`).
    case one
    /// ᾱ = ᾱ₀, the first training step's (`set_alpha_to_one=False`, Stable Diffusion).
    case first
}

public struct SamplerSettings: Equatable {
    public var kind: SamplerKind = .ddim
    /// Model evaluations (DDPM always uses all T).
    public var steps: Int = 50
    /// DDIM η: 0 deterministic, 1 = DDPM-like variance.
    public var eta: Double = 0
    /// Classifier-free guidance w: ε = ε_u + w·(ε_c − ε_u); 1 = conditional only, 0 = unconditional.
    public var guidance: Double = 1
    /// Clip the predicted x₀ to [−1, 1] at every step (DDIM then uses the ε consistent with the
    /// clipped x₀: diffusers' `clip_sample=True, use_clipped_model_output=True`).
    public var clipSample = true
    /// Timestep spacing of DDIM and DPM-Solver (DDPM visits every step); nil = the sampler's
    /// default: trailing for DDIM, log-SNR for DPM-Solver (both start at t = T − 1).
    public var spacing: TimestepSpacing? = nil
    public var effectiveSpacing: TimestepSpacing { spacing ?? (kind == .dpm ? .logSNR : .trailing) }
    /// Added to "leading" timesteps (diffusers' `steps_offset`; Stable Diffusion uses 1).
    public var stepsOffset: Int = 0
    /// ᾱ after DDIM's last step; DPM-Solver always ends at ᾱ = 1 (diffusers' `final_sigmas_type="zero"`).
    public var finalAlphaBar: FinalAlphaBar = .one
    /// Clamp the returned samples to [−1, 1] (off for latent models: latents are not bounded).
    public var clampOutput = true
    public init() {}
}

public final class DiffusionSampler {
    public let model: NoisePredictor
    public let schedule: NoiseSchedule
    public let target: PredictionTarget
    /// Number of classes of a conditional model (the null label is this index); 0 = unconditional.
    public let numClasses: Int
    public let sampleShape: [Int]   // C, H, W

    public init(model: NoisePredictor, schedule: NoiseSchedule, target: PredictionTarget, numClasses: Int, sampleShape: [Int]) {
        self.model = model; self.schedule = schedule; self.target = target
        self.numClasses = numClasses; self.sampleShape = sampleShape
    }

    var perSample: Int { sampleShape.reduce(1, *) }

    /// Timesteps visited, from noisiest down, with diffusers' conventions (DDIMScheduler /
    /// DDPMScheduler `set_timesteps`; `solverGrid` = DPMSolverMultistepScheduler's, whose
    /// linspace/leading grids have S + 1 points without the last). Rounding is numpy's (half to even).
    public func timesteps(_ count: Int, spacing: TimestepSpacing = .leading, stepsOffset: Int = 0, solverGrid: Bool = false) -> [Int] {
        let total = schedule.steps
        let s = max(1, min(count, total))
        func rint(_ v: Double) -> Int { Int(v.rounded(.toNearestOrEven)) }
        switch spacing {
        case .leading:
            let ratio = total / (solverGrid ? s + 1 : s)
            let points = solverGrid ? s + 1 : s
            var out = (0..<points).reversed().map { $0 * ratio + stepsOffset }
            if solverGrid { out.removeLast() }
            return out
        case .trailing:
            // np.arange(T, 0, −T/S): T − k·T/S while > 0.
            let ratio = Double(total) / Double(s)
            var out: [Int] = []
            var k = 0
            while Double(total) - Double(k) * ratio > 0 { out.append(rint(Double(total) - Double(k) * ratio) - 1); k += 1 }
            return out
        case .linspace:
            let points = solverGrid ? s + 1 : s
            var out = (0..<points).reversed().map { rint(Double(total - 1) * Double($0) / Double(max(points - 1, 1))) }
            if solverGrid { out.removeLast() }
            return out
        case .logSNR:
            return logSNRTimesteps(count)
        }
    }

    /// Settings this model's schedule can run: leading timesteps plus the offset must stay below T.
    public func checkSettings(_ settings: SamplerSettings) throws {
        guard settings.steps >= 1 else { throw MedSynthError("--sampling-steps must be at least 1") }
        guard settings.stepsOffset >= 0 else { throw MedSynthError("--steps-offset must be ≥ 0") }
        if settings.kind != .ddpm, settings.effectiveSpacing == .leading,
           let last = timesteps(settings.steps, spacing: .leading, stepsOffset: settings.stepsOffset,
                                solverGrid: settings.kind == .dpm).first, last >= schedule.steps {
            throw MedSynthError("--steps-offset \(settings.stepsOffset) puts the first timestep at \(last), past this model's \(schedule.steps) training steps")
        }
    }

    /// The (t, t_prev) pairs a sampler steps through; t_prev < 0 means "to the final ᾱ".
    /// DDIM uses t_prev = t − ⌊T/S⌋ as diffusers does (equal to the next visited step for leading
    /// and trailing spacing with S dividing T); DPM-Solver steps between consecutive grid points.
    public func plan(_ settings: SamplerSettings) -> [(t: Int, previous: Int)] {
        switch settings.kind {
        case .ddpm:
            return (0..<schedule.steps).reversed().map { ($0, $0 - 1) }
        case .ddim:
            let ts = timesteps(settings.steps, spacing: settings.effectiveSpacing, stepsOffset: settings.stepsOffset)
            if settings.effectiveSpacing == .logSNR {
                return ts.enumerated().map { k, t in (t, k + 1 < ts.count ? ts[k + 1] : -1) }
            }
            let stride = schedule.steps / max(1, min(settings.steps, schedule.steps))
            return ts.map { ($0, $0 - stride) }
        case .dpm:
            let ts = timesteps(settings.steps, spacing: settings.effectiveSpacing, stepsOffset: settings.stepsOffset, solverGrid: true)
            return ts.enumerated().map { k, t in (t, k + 1 < ts.count ? ts[k + 1] : -1) }
        }
    }

    /// DPM-Solver's grid: uniform in λ = log(α/σ) between the noisiest and the cleanest step
    /// (Lu et al. 2022 recommend it for low-resolution pixel models), repeated steps removed.
    public func logSNRTimesteps(_ count: Int) -> [Int] {
        func lambda(_ t: Int) -> Double { let a = schedule.alphaBar(t); return 0.5 * log(a / (1 - a)) }
        let lambdas = (0..<schedule.steps).map(lambda)
        let hi = lambdas[schedule.steps - 1], lo = lambdas[0]
        var out: [Int] = []
        for k in 0..<max(count, 2) {
            let target = hi + (lo - hi) * Double(k) / Double(max(count - 1, 1))
            // λ decreases with t: binary search for the nearest timestep.
            var best = 0, bestDistance = Double.infinity
            var left = 0, right = schedule.steps - 1
            while left <= right {
                let mid = (left + right) / 2
                let d = abs(lambdas[mid] - target)
                if d < bestDistance { bestDistance = d; best = mid }
                if lambdas[mid] > target { left = mid + 1 } else { right = mid - 1 }
            }
            if out.last != best && !out.contains(best) { out.append(best) }
        }
        return out
    }

    /// The network's ε and x₀ estimates at timestep t, with guidance and x₀ clipping applied.
    func estimate(_ x: [Float], t: Int, labels: [Int]?, settings: SamplerSettings) -> (eps: [Float], x0: [Float]) {
        let n = x.count / perSample
        let shape = [n] + sampleShape
        let w = settings.guidance
        var output: [Float]
        if numClasses > 0, let labels {
            let nullLabels = [Int](repeating: numClasses, count: n)
            if w == 1 {
                output = withNoGrad { model.predict(Tensor(shape: shape, data: x), timesteps: [Int](repeating: t, count: n), labels: labels) }.data
            } else if w == 0 {
                output = withNoGrad { model.predict(Tensor(shape: shape, data: x), timesteps: [Int](repeating: t, count: n), labels: nullLabels) }.data
            } else {
                // One batched forward of 2N: conditional then unconditional halves.
                let both = withNoGrad { model.predict(Tensor(shape: [2 * n] + sampleShape, data: x + x), timesteps: [Int](repeating: t, count: 2 * n), labels: labels + nullLabels) }.data
                let half = n * perSample
                output = (0..<half).map { both[half + $0] + Float(w) * (both[$0] - both[half + $0]) }
            }
        } else {
            output = withNoGrad { model.predict(Tensor(shape: shape, data: x), timesteps: [Int](repeating: t, count: n), labels: nil) }.data
        }
        let a = Float(schedule.alphaBar(t).squareRoot()), s = Float((1 - schedule.alphaBar(t)).squareRoot())
        var x0 = [Float](repeating: 0, count: x.count)
        var eps = [Float](repeating: 0, count: x.count)
        for j in 0..<x.count {
            switch target {
            case .epsilon: x0[j] = (x[j] - s * output[j]) / a
            case .v: x0[j] = a * x[j] - s * output[j]
            }
            if settings.clipSample { x0[j] = min(1, max(-1, x0[j])) }
            // ε consistent with the (clipped) x₀, so DDIM(η = 1) reproduces DDPM's posterior exactly.
            eps[j] = (x[j] - a * x0[j]) / s
        }
        return (eps, x0)
    }

    /// N(0, 1) noise for each sample from its own stream.
    func drawNoise(_ streams: inout [RandomStream]) -> [Float] {
        var out = [Float](repeating: 0, count: streams.count * perSample)
        for i in streams.indices { for j in 0..<perSample { out[i * perSample + j] = streams[i].normal() } }
        return out
    }

    /// Samples for `indices` (their streams are seed.split(i)); `labels` per sample when conditional.
    /// - known/mask (inpainting): N×C×H×W known image in [−1, 1] and mask (1 = regenerate).
    public func sample(indices: [Int], labels: [Int]?, seed: UInt64, settings: SamplerSettings,
                       known: [Float]? = nil, mask: [Float]? = nil, progress: ((Int, Int) -> Void)? = nil) -> [Float] {
        var streams = indices.map { RandomStream(seed: seed).split(UInt64($0)) }
        let x = drawNoise(&streams)
        // `denoise` clamps to [−1, 1] when settings.clampOutput is set (pixel models); latent
        // models turn it off, and clamping here as well cut their unit-variance latents' tails
        // (issue 13: samples decoded darker, foreground mean 0.715 against the data's 0.746).
        return denoise(x, labels: labels, settings: settings, noise: { self.drawNoise(&streams) },
                       known: known, mask: mask, progress: progress)
    }

    /// The sampling loop from x_T = `x`; `noise()` supplies every per-step N(0, I) draw (DDPM/DDIM η > 0
    /// variance, RePaint's re-noising of the known region); `observe` sees x after every step.
    /// Returns the last x, unclipped.
    func denoise(_ xStart: [Float], labels: [Int]?, settings: SamplerSettings, noise: () -> [Float],
                 known: [Float]? = nil, mask: [Float]? = nil, progress: ((Int, Int) -> Void)? = nil,
                 observe: ((Int, [Float]) -> Void)? = nil) -> [Float] {
        var x = xStart
        let steps = plan(settings)
        let finalAlphaBar = settings.kind == .ddim && settings.finalAlphaBar == .first ? schedule.alphaBar(0) : 1
        func alphaBar(_ t: Int) -> Double { t < 0 ? finalAlphaBar : schedule.alphaBar(t) }
        var previousX0: [Float]? = nil
        var previousH: Double? = nil
        func lambda(_ t: Int) -> Double { let a = schedule.alphaBar(t); return 0.5 * log(a / (1 - a)) }
        for (k, (t, tPrev)) in steps.enumerated() {
            let (eps, x0) = estimate(x, t: t, labels: labels, settings: settings)
            let aT = schedule.alphaBar(t), aPrev = alphaBar(tPrev)
            var next = [Float](repeating: 0, count: x.count)
            switch settings.kind {
            case .ddpm, .ddim:
                // DDIM (Song et al. 2021, eq. 12); with η = 1 and every step this is DDPM's
                // ancestral step (Ho et al. eq. 6–7): σ² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_{t−1}).
                let eta = settings.kind == .ddpm ? 1.0 : settings.eta
                let sigma = eta * max((1 - aPrev) / (1 - aT) * (1 - aT / aPrev), 0).squareRoot()
                let dirScale = Float(max(1 - aPrev - sigma * sigma, 0).squareRoot())
                let z: [Float]? = sigma > 0 ? noise() : nil
                let sa = Float(aPrev.squareRoot())
                for j in 0..<x.count {
                    next[j] = sa * x0[j] + dirScale * eps[j] + (z.map { Float(sigma) * $0[j] } ?? 0)
                }
            case .dpm:
                // DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in data prediction; the last step
                // (to ᾱ = 1) is first order and returns the x₀ estimate.
                if tPrev < 0 {
                    next = x0
                } else {
                    let h = lambda(tPrev) - lambda(t)
                    let ratio = Float(((1 - aPrev) / (1 - aT)).squareRoot())
                    let factor = Float(aPrev.squareRoot() * (exp(-h) - 1))
                    var d = x0
                    if let previousX0, let previousH {
                        let r = previousH / h
                        let c1 = Float(1 + 1 / (2 * r)), c2 = Float(1 / (2 * r))
                        for j in 0..<x.count { d[j] = c1 * x0[j] - c2 * previousX0[j] }
                    }
                    for j in 0..<x.count { next[j] = ratio * x[j] - factor * d[j] }
                    previousH = h
                }
                previousX0 = x0
            }
            x = next
            if let known, let mask {
                // RePaint (Lugmayr et al. 2022): the known region follows q(x_{t−1} | x₀ = known).
                if tPrev >= 0 {
                    let z = noise()
                    let a = Float(aPrev.squareRoot()), s = Float((1 - aPrev).squareRoot())
                    for j in 0..<x.count { x[j] = mask[j] * x[j] + (1 - mask[j]) * (a * known[j] + s * z[j]) }
                } else {
                    for j in 0..<x.count { x[j] = mask[j] * x[j] + (1 - mask[j]) * known[j] }
                }
            }
            observe?(k, x)
            progress?(k + 1, steps.count)
        }
        return settings.clampOutput ? x.map { min(1, max(-1, $0)) } : x
    }
}
