import XCTest
import Foundation
@testable import Engine
@testable import Layers
@testable import Imaging
@testable import Generators
import TestSupport
import Core

/// The exact ε-predictor for data x₀ ~ N(μ, σ²) per pixel: E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱσ² + 1 − ᾱ).
/// A conditional variant shifts μ by `classShift · label` (the null label means μ).
final class GaussianPredictor: NoisePredictor {
    let schedule: NoiseSchedule
    let mu: Float, sigma: Float, classShift: Float, nullLabel: Int
    var calls = 0
    init(schedule: NoiseSchedule, mu: Float, sigma: Float, classShift: Float = 0, nullLabel: Int = 2) {
        self.schedule = schedule; self.mu = mu; self.sigma = sigma; self.classShift = classShift; self.nullLabel = nullLabel
    }
    func predict(_ x: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor {
        calls += 1
        let per = x.count / timesteps.count
        var out = [Float](repeating: 0, count: x.count)
        for (i, t) in timesteps.enumerated() {
            let a = Float(schedule.alphaBar(t))
            let m = mu + (labels.map { $0[i] == nullLabel ? 0 : classShift * Float($0[i]) } ?? 0)
            for j in i * per..<(i + 1) * per {
                out[j] = (1 - a).squareRoot() * (x.data[j] - a.squareRoot() * m) / (a * sigma * sigma + 1 - a)
            }
        }
        return Tensor(shape: x.shape, data: out)
    }
}

final class DiffusionSamplerTests: XCTestCase {
    func testSchedulesMatchTheirFormulas() {
        let cosine = NoiseSchedule(kind: .cosine, steps: 1000)
        func f(_ t: Double) -> Double { let c = cos((t / 1000 + 0.008) / 1.008 * Double.pi / 2); return c * c }
        for t in [0, 1, 250, 500, 999] { XCTAssertEqual(cosine.alphaBar(t), max(f(Double(t + 1)) / f(0), 1e-5), accuracy: 1e-12) }
        XCTAssertEqual(cosine.alphaBar(-1), 1)
        let linear = NoiseSchedule(kind: .linear, steps: 1000)
        var product = 1.0
        for t in 0..<1000 {
            let beta = 1e-4 + (0.02 - 1e-4) * Double(t) / 999
            product *= 1 - beta
            XCTAssertEqual(linear.alphaBars[t], product, accuracy: 1e-12)
        }
        XCTAssert(cosine.betas.allSatisfy { $0 >= 0 && $0 <= 0.999 })
        // Monotone: more steps, less signal.
        XCTAssert(zip(cosine.alphaBars, cosine.alphaBars.dropFirst()).allSatisfy { $0 >= $1 })
    }

    func testShiftedScheduleMultipliesEverySignalToNoiseRatio() {
        for kind in NoiseScheduleKind.allCases {
            let plain = NoiseSchedule(kind: kind, steps: 200)
            for shift in [0.25, 4.0, 16.0] {
                let shifted = NoiseSchedule(kind: kind, steps: 200, snrShift: shift)
                for t in 0..<200 {
                    let snr = plain.alphaBars[t] / (1 - plain.alphaBars[t]), shiftedSNR = shifted.alphaBars[t] / (1 - shifted.alphaBars[t])
                    XCTAssertEqual(shiftedSNR / snr, shift, accuracy: 1e-9 * shift, "\(kind) t = \(t)")
                    // The betas still chain to the shifted ᾱ (the DDPM posterior uses them), up to the 0.999 clamp.
                    XCTAssertEqual(shifted.betas[t], min(1 - shifted.alphaBar(t) / shifted.alphaBar(t - 1), 0.999), accuracy: 1e-12)
                }
            }
        }
        var options = DiffusionTrainingOptions()
        options.snrShift = 0
        XCTAssertThrowsError(try options.validate())
    }

    func testForwardNoisingHasTheRightMeanAndVariance() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        var stream = RandomStream(seed: 3)
        for t in [10, 400, 900] {
            let n = 40_000
            let x0 = [Float](repeating: 0.7, count: n)
            var noise = [Float](repeating: 0, count: n)
            noise.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
            let xt = schedule.addNoise(x0, noise: noise, timesteps: [Int](repeating: t, count: n))
            let mean = xt.reduce(0, +) / Float(n)
            let variance = xt.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n)
            let a = Float(schedule.alphaBar(t))
            XCTAssertEqual(mean, a.squareRoot() * 0.7, accuracy: 0.02, "t \(t)")
            XCTAssertEqual(variance, 1 - a, accuracy: 0.03, "t \(t)")
        }
    }

    func sampler(_ predictor: NoisePredictor, _ schedule: NoiseSchedule, classes: Int = 0) -> DiffusionSampler {
        DiffusionSampler(model: predictor, schedule: schedule, target: .epsilon, numClasses: classes, sampleShape: [1, 4, 4])
    }

    func meanAndStd(_ x: [Float]) -> (mean: Float, std: Float) {
        let mean = x.reduce(0, +) / Float(x.count)
        return (mean, (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(x.count)).squareRoot())
    }

    func testSamplersRecoverAGaussianDataDistribution() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let exact = GaussianPredictor(schedule: schedule, mu: 0.3, sigma: 0.2)
        for (kind, steps) in [(SamplerKind.ddim, 50), (.dpm, 20), (.ddpm, 1000)] {
            var settings = SamplerSettings()
            settings.kind = kind; settings.steps = steps
            let x = sampler(exact, schedule).sample(indices: Array(0..<64), labels: nil, seed: 5, settings: settings)
            let (mean, std) = meanAndStd(x)
            XCTAssertEqual(mean, 0.3, accuracy: 0.03, "\(kind)")
            XCTAssertEqual(std, 0.2, accuracy: 0.03, "\(kind)")
        }
    }

    /// Latents are not bounded: with clipping and clamping off, samples of N(0.4, 1.5²) data keep
    /// their tails (issue 13: a leftover clamp to [−1, 1] cut them and darkened decoded images).
    func testUnclampedSamplingKeepsTheSpreadOfUnboundedData() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let exact = GaussianPredictor(schedule: schedule, mu: 0.4, sigma: 1.5)
        for (kind, steps) in [(SamplerKind.ddim, 50), (.dpm, 20)] {
            var settings = SamplerSettings()
            settings.kind = kind; settings.steps = steps
            settings.clipSample = false; settings.clampOutput = false
            let x = sampler(exact, schedule).sample(indices: Array(0..<256), labels: nil, seed: 5, settings: settings)
            let (mean, std) = meanAndStd(x)
            XCTAssertEqual(mean, 0.4, accuracy: 0.06, "\(kind)")
            XCTAssertEqual(std, 1.5, accuracy: 0.06, "\(kind)")
            XCTAssertGreaterThan(x.filter { abs($0) > 1 }.count, x.count / 4, "\(kind)")
            // Pixel models keep the clamp.
            settings.clampOutput = true
            let clamped = sampler(exact, schedule).sample(indices: Array(0..<256), labels: nil, seed: 5, settings: settings)
            XCTAssertEqual(clamped, x.map { min(1, max(-1, $0)) }, "\(kind)")
        }
    }

    func testDDIMIsDeterministicAndDDPMStepIsTheHoPosterior() {
        let schedule = NoiseSchedule(kind: .linear, steps: 3)
        let exact = GaussianPredictor(schedule: schedule, mu: 0.1, sigma: 0.5)
        var settings = SamplerSettings()
        settings.steps = 3
        settings.clipSample = false
        let a = sampler(exact, schedule).sample(indices: [0, 1], labels: nil, seed: 9, settings: settings)
        XCTAssertEqual(a, sampler(exact, schedule).sample(indices: [0, 1], labels: nil, seed: 9, settings: settings))
        XCTAssertNotEqual(a, sampler(exact, schedule).sample(indices: [0, 1], labels: nil, seed: 10, settings: settings))
        // DDPM by hand for one sample: x_T ~ N(0, I), then x_{t−1} = μ̃(x_t, x̂₀) + σ_t z (Ho et al. eq. 6–7).
        settings.kind = .ddpm
        let ddpm = sampler(exact, schedule).sample(indices: [0], labels: nil, seed: 9, settings: settings)
        var stream = RandomStream(seed: 9).split(0)
        var x = (0..<16).map { _ in stream.normal() }
        for t in stride(from: 2, through: 0, by: -1) {
            let eps = exact.predict(Tensor(shape: [1, 1, 4, 4], data: x), timesteps: [t], labels: nil).data
            let aT = schedule.alphaBar(t), aPrev = schedule.alphaBar(t - 1), beta = schedule.betas[t]
            let x0 = x.enumerated().map { (Double($1) - (1 - aT).squareRoot() * Double(eps[$0])) / aT.squareRoot() }
            let c0 = aPrev.squareRoot() * beta / (1 - aT), ct = (1 - beta).squareRoot() * (1 - aPrev) / (1 - aT)
            let variance = (1 - aPrev) / (1 - aT) * beta
            let z = t > 0 ? (0..<16).map { _ in stream.normal() } : [Float](repeating: 0, count: 16)
            x = (0..<16).map { Float(c0 * x0[$0] + ct * Double(x[$0]) + variance.squareRoot() * Double(z[$0])) }
        }
        for j in 0..<16 { XCTAssertEqual(ddpm[j], max(-1, min(1, x[j])), accuracy: 1e-4) }
        // DDIM with every step and η = 1 is the same update.
        settings.kind = .ddim; settings.eta = 1
        let ddimAll = sampler(exact, schedule).sample(indices: [0], labels: nil, seed: 9, settings: settings)
        for j in 0..<16 { XCTAssertEqual(ddimAll[j], ddpm[j], accuracy: 1e-5) }
    }

    func testGuidanceZeroEqualsUnconditionalAndGuidanceSteers() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let model = GaussianPredictor(schedule: schedule, mu: 0, sigma: 0.2, classShift: 0.5, nullLabel: 2)
        var settings = SamplerSettings()
        settings.steps = 20
        settings.guidance = 0
        let w0 = sampler(model, schedule, classes: 2).sample(indices: [0, 1, 2], labels: [1, 1, 1], seed: 4, settings: settings)
        settings.guidance = 1
        let null = sampler(model, schedule, classes: 2).sample(indices: [0, 1, 2], labels: [2, 2, 2], seed: 4, settings: settings)
        XCTAssertEqual(w0, null)
        let conditional = sampler(model, schedule, classes: 2).sample(indices: [0, 1, 2], labels: [1, 1, 1], seed: 4, settings: settings)
        XCTAssertEqual(conditional.reduce(0, +) / Float(conditional.count), 0.5, accuracy: 0.1)
        // w ≠ 0, 1 runs conditional and unconditional halves in one batched call per step.
        model.calls = 0
        settings.guidance = 2
        _ = sampler(model, schedule, classes: 2).sample(indices: [0], labels: [1], seed: 4, settings: settings)
        XCTAssertEqual(model.calls, 20)
    }

    func testInpaintingKeepsKnownPixelsAndSamplesDoNotDependOnTheBatch() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let model = GaussianPredictor(schedule: schedule, mu: -0.2, sigma: 0.3)
        var settings = SamplerSettings()
        settings.steps = 25
        let known = (0..<32).map { Float($0) / 40 - 0.4 }
        let mask = (0..<32).map { Float($0 % 16 < 6 ? 1 : 0) }
        let result = sampler(model, schedule).sample(indices: [0, 1], labels: nil, seed: 2, settings: settings, known: known, mask: mask)
        for j in 0..<32 where mask[j] == 0 { XCTAssertEqual(result[j], known[j]) }
        XCTAssert((0..<32).contains { mask[$0] == 1 && abs(result[$0] - known[$0]) > 1e-3 })
        settings.kind = .ddpm
        let batch = sampler(model, schedule).sample(indices: [0, 1, 2, 3], labels: nil, seed: 8, settings: settings)
        let alone = sampler(model, schedule).sample(indices: [2], labels: nil, seed: 8, settings: settings)
        XCTAssertEqual(Array(batch[32..<48]), alone)
    }

    func testTinyUNetOverfitsOneImageAndResumesExactly() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("one/scans")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        var pixels = [Float](repeating: -0.8, count: 256)
        for y in 4..<12 { for x in 3..<10 { pixels[y * 16 + x] = 0.6 } }
        let truth = Image(floatCHW: pixels, width: 16, height: 16, channels: 1, bitDepth: 8)
        try writePNG(truth, to: data.appendingPathComponent("a.png"))
        var request = TrainingRequest(data: data.path)
        request.imageSize = 16; request.width = 8; request.batchSize = 8; request.steps = 600; request.seed = 1
        request.checkpointEvery = 1000; request.sampleEvery = 1000
        var options = DiffusionTrainingOptions()
        options.learningRate = 1e-3
        options.emaDecay = 0.9
        options.target = .v   // v-prediction memorises faster than ε at high noise levels
        let run = root.appendingPathComponent("run")
        try trainDiffusion(request, options: options, out: run, resume: false, progress: .none, gridSteps: 5)
        let (sampler, _) = try loadDiffusionSampler(from: RunFolder(run).model)
        var settings = SamplerSettings()
        settings.steps = 20
        let sample = sampler.sample(indices: [0, 1, 2, 3], labels: nil, seed: 3, settings: settings)
        let target = truth.toFloatCHW()
        // The best constant image scores the variance of the truth (≈ 0.34): demand 6× better.
        let meanValue = target.reduce(0, +) / 256
        let baseline = target.map { ($0 - meanValue) * ($0 - meanValue) }.reduce(0, +) / 256
        XCTAssertGreaterThan(baseline, 0.3)
        for s in 0..<4 {
            let mse = (0..<256).map { (sample[s * 256 + $0] - target[$0]) * (sample[s * 256 + $0] - target[$0]) }.reduce(0, +) / 256
            XCTAssertLessThan(mse, baseline / 6, "sample \(s) does not reproduce the training image (MSE \(mse))")
        }
        // Resume: 6 + 4 steps equal 10 straight.
        request.steps = 10; request.checkpointEvery = 5
        let straight = root.appendingPathComponent("straight"), split = root.appendingPathComponent("split")
        try trainDiffusion(request, options: options, out: straight, resume: false, progress: .none, gridSteps: 2)
        request.steps = 6
        try trainDiffusion(request, options: options, out: split, resume: false, progress: .none, gridSteps: 2)
        request.steps = 10
        try trainDiffusion(request, options: options, out: split, resume: true, progress: .none, gridSteps: 2)
        let a = try readSafetensors(at: RunFolder(straight).latestCheckpoint), b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]?.values, name) }
    }

    /// A run saved before the time embedding stopped shrinking with the base width (its config has
    /// no timeFeatures: 8 sinusoid features at base 8, today's default is 32) resumes with its own width.
    func testRunSavedWithTheOldTimeEmbeddingWidthResumes() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("one/scans")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let pixels = (0..<256).map { Float($0 % 16) / 8 - 1 }
        try writePNG(Image(floatCHW: pixels, width: 16, height: 16, channels: 1, bitDepth: 8), to: data.appendingPathComponent("a.png"))
        var request = TrainingRequest(data: data.path)
        request.imageSize = 16; request.width = 8; request.batchSize = 2; request.steps = 2; request.seed = 1
        request.checkpointEvery = 2; request.sampleEvery = 100
        let run = root.appendingPathComponent("run")
        try trainDiffusion(request, out: run, resume: false, progress: .none, gridSteps: 2)
        // Rewrite the checkpoint as an older medsynth wrote it: config without timeFeatures, weights of that width.
        let latest = RunFolder(run).latestCheckpoint
        let saved = try readSafetensors(at: latest)
        var oldConfig = try JSONDecoder().decode(UNetConfig.self, from: Data(saved.metadata[CheckpointKey.config]!.utf8))
        XCTAssertEqual(oldConfig.timeFeatures, 32)
        oldConfig.timeFeatures = 8
        let oldTrainer = DiffusionTrainer(config: oldConfig, options: DiffusionTrainingOptions(), seed: 1)
        var metadata = saved.metadata
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(oldConfig)) as! [String: Any]
        json.removeValue(forKey: "timeFeatures")
        metadata[CheckpointKey.config] = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        metadata.merge(oldTrainer.stateEntries().metadata) { _, old in old }
        try writeSafetensors(oldTrainer.stateEntries().tensors, metadata: metadata, to: latest)

        request.steps = 3
        try trainDiffusion(request, out: run, resume: true, progress: .none, gridSteps: 2)
        let resumed = try readSafetensors(at: latest)
        XCTAssertEqual(resumed.metadata[CheckpointKey.step], "3")
        let resumedConfig = try JSONDecoder().decode(UNetConfig.self, from: Data(resumed.metadata[CheckpointKey.config]!.utf8))
        XCTAssertEqual(resumedConfig.timeFeatures, 8)
    }
}
