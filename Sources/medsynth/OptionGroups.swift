import ArgumentParser
import Compositor
import Core
import Engine
import Generators
import Workflows

// MARK: - Option groups shared by several commands, and argument types the parser validates

/// How a long-running command reports progress and how many cores it uses.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Progress display: human (one refreshed line with rate and ETA), json (one object per line, for schedulers and notebooks) or none.")
    var progress: ProgressStyle = .human
    @Option(help: "Worker threads for medsynth's loops and BLAS (default: the CPUs this process may use: affinity mask, e.g. taskset or a SLURM cpuset, and cgroup quota).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Applies --threads; call first in `run()`.
    func apply() {
        if let threads { Parallel.setThreads(threads) }
    }
}

/// How a diffusion model samples: generate, balance and inpaint take the same flags.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Diffusion sampler: ddim, ddpm, or dpm (DPM-Solver++ 2M).")
    var sampler: SamplerKind = .ddim
    @Option(help: "Diffusion sampling steps: model evaluations per image (DDPM always uses all of the schedule's).")
    var samplingSteps: Int = 50
    @Option(help: "Classifier-free guidance scale w (1 = plain conditional, 0 = unconditional).")
    var guidance: Double = 1
    @Option(help: "DDIM eta (0 = deterministic).")
    var eta: Double = 0
    @Option(help: "Timesteps DDIM/DPM-Solver visit: leading, trailing, linspace or log-snr (default: trailing for DDIM, log-snr for DPM-Solver; diffusers' timestep_spacing).")
    var spacing: TimestepSpacing?
    @Option(help: "Added to leading-spaced timesteps (diffusers' steps_offset; Stable Diffusion uses 1).")
    var stepsOffset: Int = 0
    @Option(help: "ᾱ after DDIM's last step: one (diffusers' set_alpha_to_one=True) or first (ᾱ of step 0, Stable Diffusion).")
    var finalAlphaBar: FinalAlphaBar = .one

    func validate() throws {
        guard samplingSteps >= 1 else { throw ValidationError("--sampling-steps must be at least 1") }
        guard eta >= 0, eta.isFinite, guidance.isFinite else { throw ValidationError("--eta must be >= 0 and --guidance finite") }
        guard (0..<100_000).contains(stepsOffset) else { throw ValidationError("--steps-offset must be in 0..<100000, got \(stepsOffset)") }
    }

    var settings: SamplerSettings {
        var settings = SamplerSettings()
        settings.kind = sampler
        settings.steps = samplingSteps
        settings.guidance = guidance
        settings.eta = eta
        settings.spacing = spacing
        settings.stepsOffset = stepsOffset
        settings.finalAlphaBar = finalAlphaBar
        return settings
    }
}

extension ProgressStyle: ExpressibleByArgument {}
extension SamplerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}
extension FinalAlphaBar: ExpressibleByArgument {}
extension LatentNormalisation: ExpressibleByArgument {}
extension GANLoss: ExpressibleByArgument {}
extension GANUpsampling: ExpressibleByArgument {}
extension PredictionTarget: ExpressibleByArgument {}
extension NoiseScheduleKind: ExpressibleByArgument {}
extension BlendMode: ExpressibleByArgument {}
extension IntensityMatch: ExpressibleByArgument {}
extension LesionPolarity: ExpressibleByArgument {}

extension Shard: ExpressibleByArgument {
    /// "K/N" with 0 ≤ K < N.
    public init?(argument: String) { try? self.init(parsing: argument) }
}

extension BalanceTarget: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
}
