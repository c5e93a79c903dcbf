import XCTest
import Foundation
@testable import Engine
@testable import Generators

/// The exact posterior of per-pixel Gaussian data x₀ ~ N(μ_j, s²), returning ε or v: the "model"
/// scripts/fixtures/make_diffusers_golden.py drives diffusers' schedulers with.
final class PixelGaussianPredictor: NoisePredictor {
    let schedule: NoiseSchedule, mu: [Double], std: Double, target: PredictionTarget
    init(schedule: NoiseSchedule, mu: [Double], std: Double, target: PredictionTarget) {
        self.schedule = schedule; self.mu = mu; self.std = std; self.target = target
    }
    func predict(_ x: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor {
        let per = x.count / timesteps.count
        var out = [Float](repeating: 0, count: x.count)
        for (i, t) in timesteps.enumerated() {
            let a = schedule.alphaBar(t), denominator = a * std * std + 1 - a
            for j in i * per..<(i + 1) * per {
                let xt = Double(x.data[j]), m = mu[j % mu.count]
                let eps = (1 - a).squareRoot() * (xt - a.squareRoot() * m) / denominator
                let x0 = (a.squareRoot() * std * std * xt + (1 - a) * m) / denominator
                out[j] = Float(target == .epsilon ? eps : a.squareRoot() * eps - (1 - a).squareRoot() * x0)
            }
        }
        return Tensor(shape: x.shape, data: out)
    }
}

/// medsynth's samplers against diffusers' DDIMScheduler, DDPMScheduler and
/// DPMSolverMultistepScheduler (fixture: scripts/fixtures/make_diffusers_golden.py).
final class SchedulerGoldenTests: XCTestCase {
    struct Case: Decodable {
        let scheduler: String, trainSteps: Int, steps: Int, target: String, spacing: String, stepsOffset: Int
        let setAlphaToOne: Bool, eta: Double, clipSample: Bool, mu: [Double], std: Double, shape: [Int]
        let xT: [Double], timesteps: [Int], noises: [[Double]], trajectory: [[Double]]
    }
    struct Fixture: Decodable { let generator: String; let cases: [Case] }

    func testSamplersMatchDiffusersWithin1e5() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/diffusers_schedulers", withExtension: "json"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.count, 10)
        for c in fixture.cases {
            let name = "\(c.scheduler) \(c.spacing) S=\(c.steps) offset \(c.stepsOffset) \(c.target)"
            let schedule = NoiseSchedule(kind: .linear, steps: c.trainSteps)
            let target: PredictionTarget = c.target == "v" ? .v : .epsilon
            let predictor = PixelGaussianPredictor(schedule: schedule, mu: c.mu, std: c.std, target: target)
            let sampler = DiffusionSampler(model: predictor, schedule: schedule, target: target, numClasses: 0,
                                           sampleShape: Array(c.shape.dropFirst()))
            var settings = SamplerSettings()
            settings.kind = try XCTUnwrap(SamplerKind(rawValue: c.scheduler))
            settings.steps = c.steps
            settings.eta = c.eta
            settings.clipSample = c.clipSample
            settings.spacing = try XCTUnwrap(TimestepSpacing(rawValue: c.spacing))
            settings.stepsOffset = c.stepsOffset
            settings.finalAlphaBar = c.setAlphaToOne ? .one : .first
            XCTAssertEqual(sampler.plan(settings).map(\.t), c.timesteps, name)
            var step = 0
            var worst: Double = 0
            _ = sampler.denoise(c.xT.map(Float.init), labels: nil, settings: settings, noise: {
                XCTAssertFalse(c.noises[step].isEmpty, "\(name): noise drawn at step \(step) where diffusers adds none")
                return c.noises[step].map(Float.init)
            }, observe: { k, x in
                for (a, b) in zip(x, c.trajectory[k]) { worst = max(worst, abs(Double(a) - b)) }
                step = k + 1
            })
            XCTAssertEqual(step, c.trajectory.count, name)
            XCTAssertLessThan(worst, 1e-5, "\(name): a step differs from diffusers by \(worst)")
        }
    }
}
