import XCTest
import Core
import Foundation
@testable import Engine
@testable import Layers
@testable import Generators
@testable import Imaging
import TestSupport

/// Issue 12: the training recipe's pieces, and a tiny end-to-end run held to the exact optimal
/// denoiser of its training set.
final class DiffusionRecipeTests: XCTestCase {
    /// Four 16×16 "slices": a bright ellipse-ish blob of varying size and position on a −1 background.
    func tinyImages() -> [[Float]] {
        let specs: [(cx: Float, cy: Float, rx: Float, ry: Float, value: Float)] = [
            (7.5, 7.5, 5, 4, 0.6), (8, 7, 4, 5, 0.2), (7, 8.5, 5.5, 4.5, 0.8), (8.5, 8, 4, 4, 0.4)]
        return specs.map { s in
            (0..<256).map { p in
                let x = Float(p % 16), y = Float(p / 16)
                let d = ((x - s.cx) / s.rx) * ((x - s.cx) / s.rx) + ((y - s.cy) / s.ry) * ((y - s.cy) / s.ry)
                return d <= 1 ? s.value - 0.3 * d : -1
            }
        }
    }

    func testOldCheckpointMetadataDecodesToTheOldBehaviour() throws {
        let oldConfig = #"{"imageSize":64,"channels":1,"baseWidth":16,"channelMultipliers":[1,2,4,4],"attentionResolutions":[8],"groups":8,"numClasses":2,"classNames":["a","b"]}"#
        let config = try JSONDecoder().decode(UNetConfig.self, from: Data(oldConfig.utf8))
        XCTAssertEqual(config.timeFeatures, 16, "old checkpoints tie the sinusoid width to the base width")
        XCTAssertEqual(UNetConfig(baseWidth: 16).timeFeatures, 32)
        XCTAssertEqual(UNetConfig(baseWidth: 64).timeFeatures, 64)
        let roundTrip = try JSONDecoder().decode(UNetConfig.self, from: JSONEncoder().encode(UNetConfig(baseWidth: 16)))
        XCTAssertEqual(roundTrip, UNetConfig(baseWidth: 16))
        let oldOptions = #"{"learningRate":0.0002,"weightDecay":0.01,"schedule":"cosine","timesteps":1000,"target":"epsilon","labelDropout":0.1,"emaDecay":0.999}"#
        let options = try JSONDecoder().decode(DiffusionTrainingOptions.self, from: Data(oldOptions.utf8))
        XCTAssertEqual(options, DiffusionTrainingOptions.legacy)
        XCTAssertEqual(DiffusionTrainingOptions().target, .v)
        let newRoundTrip = try JSONDecoder().decode(DiffusionTrainingOptions.self, from: JSONEncoder().encode(DiffusionTrainingOptions()))
        XCTAssertEqual(newRoundTrip, DiffusionTrainingOptions())
    }

    func testZeroInitialisedUNetPredictsZeroAndClassEmbeddingIsSmall() {
        var stream = RandomStream(seed: 1)
        let config = UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2], numClasses: 2)
        let trainer = DiffusionTrainer(config: config, options: DiffusionTrainingOptions(), seed: 3)
        var x = [Float](repeating: 0, count: 2 * 256)
        x.withUnsafeMutableBufferPointer { stream.fillNormal($0) }
        let out = withNoGrad { trainer.model(Tensor(shape: [2, 1, 16, 16], data: x), timesteps: [3, 900], labels: [0, 1]) }
        XCTAssertEqual(out.data.map(abs).max(), 0)
        // The label row's norm is 0.1·√(4·base) at initialisation, below the time embedding's scale.
        let table = trainer.model.label!.weight.data, width = 32
        let norm = (0..<width).map { table[$0] * table[$0] }.reduce(0, +).squareRoot()
        XCTAssertLessThan(norm, 1.0)
        XCTAssertGreaterThan(norm, 0.2)
        // Gradients still flow into the zeroed layers (through their inputs).
        trainer.model.zeroGrad()
        var s = RandomStream(seed: 2)
        let loss = trainer.loss(x0: Tensor(shape: [2, 1, 16, 16], data: tinyImages()[0] + tinyImages()[1]), labels: [0, 1], stream: &s)
        loss.backward()
        XCTAssertGreaterThan(trainer.model.outConv.weight.grad!.map(abs).max()!, 0)
    }

    func testMinSNRWeightsFollowHangEtAl() {
        var options = DiffusionTrainingOptions()
        options.lossWeighting = .minSNR
        let trainer = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 0)
        for t in [0, 200, 500, 800, 999] {
            let a = trainer.schedule.alphaBar(t), snr = a / (1 - a)
            XCTAssertEqual(Double(trainer.lossWeights([t])[0]), min(snr, 5) / (snr + 1), accuracy: 1e-6, "v, t \(t)")
        }
        options.target = .epsilon
        let eps = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 0)
        for t in [0, 500, 999] {
            let a = eps.schedule.alphaBar(t), snr = a / (1 - a)
            XCTAssertEqual(Double(eps.lossWeights([t])[0]), min(snr, 5) / snr, accuracy: 1e-6, "ε, t \(t)")
        }
        options.target = .v
        options.lossWeighting = .minSNRTruncated
        let truncated = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 0)
        for t in [0, 500, 999] {
            let a = truncated.schedule.alphaBar(t), snr = a / (1 - a)
            XCTAssertEqual(Double(truncated.lossWeights([t])[0]), max(1, min(snr, 5)) / (snr + 1), accuracy: 1e-6, "truncated, t \(t)")
        }
        // The weighted loss is the weighted mean of per-sample squared errors.
        var stream = RandomStream(seed: 4)
        let x0 = Tensor(shape: [2, 1, 16, 16], data: tinyImages()[2] + tinyImages()[3])
        var copy = stream
        let weighted = trainer.loss(x0: x0, labels: nil, stream: &stream).scalar
        let t = (0..<2).map { _ in copy.int(below: 1000) }
        var noise = [Float](repeating: 0, count: 512)
        noise.withUnsafeMutableBufferPointer { copy.fillNormal($0) }
        let xt = trainer.schedule.addNoise(x0.data, noise: noise, timesteps: t)
        let prediction = withNoGrad { trainer.model(Tensor(shape: [2, 1, 16, 16], data: xt), timesteps: t, labels: nil) }.data
        let target = trainer.schedule.trainingTarget(.v, x0: x0.data, noise: noise, timesteps: t)
        let w = trainer.lossWeights(t)
        var expected: Float = 0
        for j in 0..<512 {
            let d = prediction[j] - target[j]
            expected += w[j / 256] * d * d / 512
        }
        XCTAssertEqual(weighted, expected, accuracy: 1e-5 * max(1, expected))
    }

    func testInputPerturbationNoisesTheInputButNotTheTarget() {
        // Ning et al. 2023: x_t from ε + γ·ξ, target from ε. A non-zero-initialised model, so the
        // prediction depends on its input.
        var options = DiffusionTrainingOptions()
        options.lossWeighting = .uniform; options.zeroInitialization = false; options.inputPerturbation = 0.1
        let config = UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2])
        let trainer = DiffusionTrainer(config: config, options: options, seed: 0)
        let x0 = Tensor(shape: [2, 1, 16, 16], data: tinyImages()[0] + tinyImages()[2])
        var stream = RandomStream(seed: 9), copy = stream
        let loss = trainer.loss(x0: x0, labels: nil, stream: &stream).scalar
        let t = (0..<2).map { _ in copy.int(below: 1000) }
        var noise = [Float](repeating: 0, count: 512), xi = noise
        noise.withUnsafeMutableBufferPointer { copy.fillNormal($0) }
        xi.withUnsafeMutableBufferPointer { copy.fillNormal($0) }
        let target = trainer.schedule.trainingTarget(.v, x0: x0.data, noise: noise, timesteps: t)
        func mse(inputNoise: [Float]) -> Float {
            let xt = trainer.schedule.addNoise(x0.data, noise: inputNoise, timesteps: t)
            let prediction = withNoGrad { trainer.model(Tensor(shape: [2, 1, 16, 16], data: xt), timesteps: t, labels: nil) }.data
            return zip(prediction, target).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / 512
        }
        let perturbed = mse(inputNoise: zip(noise, xi).map { $0 + 0.1 * $1 })
        XCTAssertEqual(loss, perturbed, accuracy: 1e-5 * max(1, perturbed))
        XCTAssertGreaterThan(abs(perturbed - mse(inputNoise: noise)), 1e-6, "the perturbation must reach the input")
        XCTAssertEqual(stream.uniform(), copy.uniform(), "ξ is the next draw after ε")
        // Off: nothing more is drawn, so runs without it are unchanged.
        options.inputPerturbation = 0
        let plain = DiffusionTrainer(config: config, options: options, seed: 0)
        var offStream = RandomStream(seed: 9), offCopy = offStream
        XCTAssertEqual(plain.loss(x0: x0, labels: nil, stream: &offStream).scalar, mse(inputNoise: noise), accuracy: 1e-5)
        _ = (0..<2).map { _ in offCopy.int(below: 1000) }
        var skipped = [Float](repeating: 0, count: 512)
        skipped.withUnsafeMutableBufferPointer { offCopy.fillNormal($0) }
        XCTAssertEqual(offStream.uniform(), offCopy.uniform())
        options.inputPerturbation = -0.1
        XCTAssertThrowsError(try options.validate())
    }

    func testWarmUpAndGradientClipping() {
        var options = DiffusionTrainingOptions()
        options.warmupSteps = 10
        options.gradientClipNorm = 0.5
        options.zeroInitialization = false
        let trainer = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 1)
        var stream = RandomStream(seed: 5)
        let x0 = Tensor(shape: [2, 1, 16, 16], data: tinyImages()[0] + tinyImages()[2])
        _ = trainer.step(x0: x0, labels: nil, stream: &stream)
        XCTAssertEqual(trainer.optimizer.learningRate, options.learningRate / 10, accuracy: 1e-9)
        XCTAssertGreaterThan(trainer.lastGradientNorm, 0.5, "the test needs a gradient larger than the threshold")
        // After clipping the stored gradients have exactly the threshold's norm.
        let clipped = trainer.model.parameters().compactMap(\.grad).flatMap { $0 }.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        XCTAssertEqual(clipped, 0.5, accuracy: 1e-4)
        for _ in 0..<12 { _ = trainer.step(x0: x0, labels: nil, stream: &stream) }
        XCTAssertEqual(trainer.optimizer.learningRate, options.learningRate)
    }

    func testCosineLearningRateDecayFollowsLoshchilovAndHutterAfterTheWarmUp() throws {
        var options = DiffusionTrainingOptions()
        options.warmupSteps = 10
        options.cosineDecaySteps = 110
        let trainer = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 1)
        let peak = options.learningRate
        XCTAssertEqual(trainer.learningRate(atStep: 0), peak / 10 * Float(0.5 * (1 + cos(Double.pi * 0 / 110))), accuracy: 1e-9)
        XCTAssertEqual(trainer.learningRate(atStep: 55), peak / 2, accuracy: 1e-7, "half way the cosine is at half the peak")
        XCTAssertEqual(trainer.learningRate(atStep: 110), 0, accuracy: 1e-9)
        XCTAssertEqual(trainer.learningRate(atStep: 500), 0, accuracy: 1e-9, "past the end the rate stays at 0")
        for step in 10..<110 { XCTAssertLessThan(trainer.learningRate(atStep: step + 1), trainer.learningRate(atStep: step)) }
        // The update actually uses it.
        var stream = RandomStream(seed: 5)
        let x0 = Tensor(shape: [2, 1, 16, 16], data: tinyImages()[0] + tinyImages()[2])
        for _ in 0..<3 { _ = trainer.step(x0: x0, labels: nil, stream: &stream) }
        XCTAssertEqual(trainer.optimizer.learningRate, trainer.learningRate(atStep: 2))
        // Runs saved before the option decode to a constant rate.
        var saved = try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)) as! [String: Any]
        saved.removeValue(forKey: "cosineDecaySteps")
        let old = try JSONDecoder().decode(DiffusionTrainingOptions.self, from: JSONSerialization.data(withJSONObject: saved))
        XCTAssertEqual(old.cosineDecaySteps, 0)
        options.cosineDecaySteps = -1
        XCTAssertThrowsError(try options.validate())
    }

    func testChannelMultipliersAndAttentionResolutionsReachTheUNetAndOldRequestsDecode() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeToyDataset(in: root, perClass: 2, size: 16)
        let dataset = try ImageFolderDataset(root: root, imageSize: 16, channels: 1)
        var request = TrainingRequest(data: root.path)
        request.imageSize = 16; request.width = 8
        XCTAssertEqual(try DiffusionTrainer.makeConfig(request: request, dataset: dataset).attentionResolutions, [2], "default: the coarsest level")
        request.channelMultipliers = [1, 2]
        var config = try DiffusionTrainer.makeConfig(request: request, dataset: dataset)
        XCTAssertEqual(config.channelMultipliers, [1, 2])
        XCTAssertEqual(config.attentionResolutions, [8], "default attention follows the coarsest level of the given multipliers")
        request.attentionResolutions = [16, 8]
        config = try DiffusionTrainer.makeConfig(request: request, dataset: dataset)
        XCTAssertEqual(config.attentionResolutions, [16, 8])
        var stream = RandomStream(seed: 1)
        let unet = UNet(config, stream: &stream)
        XCTAssertEqual(unet.namedTensors().filter { $0.name.contains("attn") && $0.name.hasSuffix("qkv.weight") }.count, 2 + 2,
                       "one attention block per down and per up level at 16 and 8 px")
        // Requests saved before the options existed decode to the defaults.
        var saved = try JSONSerialization.jsonObject(with: JSONEncoder().encode(TrainingRequest(data: "d"))) as! [String: Any]
        XCTAssertNil(saved["channelMultipliers"])
        saved.removeValue(forKey: "latentNormalisation")
        let old = try JSONDecoder().decode(TrainingRequest.self, from: JSONSerialization.data(withJSONObject: saved))
        XCTAssertNil(old.channelMultipliers)
        XCTAssertNil(old.latentNormalisation)
    }

    func testFlipAndShiftAugmentationMovesPixelsOnly() {
        var options = DiffusionTrainingOptions()
        options.augmentFlips = true
        options.augmentShift = 2
        let trainer = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 1)
        let images = tinyImages()
        var stream = RandomStream(seed: 6)
        let x = Tensor(shape: [4, 1, 16, 16], data: images.flatMap { $0 })
        let out = trainer.augment(x, stream: &stream)
        XCTAssertNotEqual(out.data, x.data)
        // Every output pixel is one of its image's pixels; the corners stay background.
        for i in 0..<4 {
            let source = Set(images[i])
            XCTAssert(out.data[i * 256..<(i + 1) * 256].allSatisfy { source.contains($0) })
            XCTAssertEqual(out.data[i * 256], -1)
        }
        options.augmentFlips = false; options.augmentShift = 0
        let plain = DiffusionTrainer(config: UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2]), options: options, seed: 1)
        XCTAssertEqual(plain.augment(x, stream: &stream).data, x.data)
    }

    func testOptimalDenoiserLimits() {
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let images = tinyImages()
        // Low noise: the nearest training image; pure noise: (almost) the mean image.
        var stream = RandomStream(seed: 7)
        let xt = schedule.addNoise(images[2], noise: (0..<256).map { _ in stream.normal() }, timesteps: [5])
        let low = optimalDenoiser(xt, t: 5, schedule: schedule, data: images)
        for j in 0..<256 { XCTAssertEqual(low[j], images[2][j], accuracy: 1e-4) }
        let high = optimalDenoiser((0..<256).map { _ in stream.normal() }, t: 999, schedule: schedule, data: images)
        for j in 0..<256 {
            let mean = images.map { $0[j] }.reduce(0, +) / 4
            XCTAssertEqual(high[j], mean, accuracy: 0.05)
        }
    }

    /// Would have caught issue 12: a few hundred steps on four tiny images must give black
    /// backgrounds, samples near the training set, and x₀ estimates close to the exact optimum.
    func testTinyModelLearnsBlackBackgroundsAndNearOptimalDenoising() {
        let images = tinyImages()
        let config = UNetConfig(imageSize: 16, baseWidth: 8, attentionResolutions: [2])
        let trainer = DiffusionTrainer(config: config, options: DiffusionTrainingOptions(), seed: 11)
        let batch = 8
        for step in 0..<300 {
            var stream = RandomStream(seed: 11).split(UInt64(step))
            let data = (0..<batch).flatMap { images[($0 + step) % images.count] }
            _ = trainer.step(x0: Tensor(shape: [batch, 1, 16, 16], data: data), labels: nil, stream: &stream)
        }
        let sampler = trainer.sampler(model: trainer.samplingModel())
        var settings = SamplerSettings()
        settings.steps = 20
        let count = 8
        let samples = sampler.sample(indices: Array(0..<count), labels: nil, seed: 3, settings: settings)
        let corners = cornerMean(samples, count: count, channels: 1, size: 16)
        XCTAssertLessThan(corners, -0.9, "backgrounds are not black: corner mean \(corners)")
        // Nearest training image per sample, against the typical distance between training images.
        func mse(_ a: [Float], _ b: [Float]) -> Float {
            var total: Float = 0
            for j in a.indices { total += (a[j] - b[j]) * (a[j] - b[j]) }
            return total / Float(a.count)
        }
        var pairwise: [Float] = []
        for i in 0..<4 { for j in i + 1..<4 { pairwise.append(mse(images[i], images[j])) } }
        let typical = pairwise.reduce(0, +) / Float(pairwise.count)
        var nearestDistances: [Float] = []
        for s in 0..<count {
            let sample = Array(samples[s * 256..<(s + 1) * 256])
            nearestDistances.append(images.map { mse(sample, $0) }.min()!)
        }
        // Every sample is nearer to a training image than training images are to each other, and on
        // average much nearer (an untrained or ε-at-high-noise model makes gray fields: MSE ≈ 0.5).
        let averageNearest = nearestDistances.reduce(0, +) / Float(count)
        XCTAssertLessThan(nearestDistances.max()!, typical, "samples far from the training set: \(nearestDistances), typical \(typical)")
        XCTAssertLessThan(averageNearest, typical / 2, "samples far from the training set: \(nearestDistances), typical \(typical)")
        let rows = x0ErrorProfile(sampler: sampler, images: images, labels: nil, pools: [images], timesteps: [300, 600, 900, 980, 999], seed: 5)
        for row in rows {
            // The exact optimum is reachable only in the limit; a model that has not learnt the
            // high-noise steps (ε-prediction's failure) is off by several units there.
            XCTAssertLessThan(row.modelError, 2 * row.optimalError + 0.05,
                              "t \(row.timestep): x0 MSE \(row.modelError) vs optimal \(row.optimalError)")
        }
    }
}
