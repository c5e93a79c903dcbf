import XCTest
import Foundation
@testable import Engine
@testable import Layers
@testable import Imaging
@testable import Generators
import TestSupport
import Core

/// Issue 14's GAN recipe: spectral norm in D, ADA, TTUR, EMA warm-up, resize-convolution G, and
/// old checkpoints decoding with the old behaviour.
final class GANRecipeTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws {
        GradMode.isEnabled = true
        root = try makeTemporaryDirectory()
        try makeToyDataset(in: root.appendingPathComponent("data"))
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func request(steps: Int, data: String = "data", size: Int = 16) -> TrainingRequest {
        var r = TrainingRequest(data: root.appendingPathComponent(data).path)
        r.imageSize = size; r.steps = steps; r.batchSize = 8; r.seed = 5; r.width = 8
        r.conditional = true; r.checkpointEvery = 1000; r.sampleEvery = 1000
        return r
    }

    /// Trains `steps` steps straight and in two parts (the second resumed without options, so the
    /// saved ones must apply), checks the last checkpoints are identical, and returns the straight one.
    @discardableResult
    func assertResumesExactly(_ options: GANTrainingOptions, name: String, steps: Int = 6, splitAt: Int = 4,
                              data: String = "data", size: Int = 16,
                              file: StaticString = #filePath, line: UInt = #line) throws -> SafetensorsFile {
        let straight = root.appendingPathComponent(name), split = root.appendingPathComponent(name + "-split")
        try trainGAN(request(steps: steps, data: data, size: size), options: options, out: straight, resume: false, progress: .none)
        try trainGAN(request(steps: splitAt, data: data, size: size), options: options, out: split, resume: false, progress: .none)
        try trainGAN(request(steps: steps, data: data, size: size), options: GANTrainingOptions(), out: split, resume: true, progress: .none)
        let x = try readSafetensors(at: RunFolder(straight).latestCheckpoint)
        let y = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        for (tensorName, tensor) in x.tensors { XCTAssertEqual(tensor.values, y.tensors[tensorName]?.values, tensorName, file: file, line: line) }
        return x
    }

    func testOldOptionsAndConfigsDecodeWithTheOldBehaviour() throws {
        // What a checkpoint from before issue 14 stored.
        let oldOptions = #"{"learningRate":0.0002,"beta1":0.5,"beta2":0.999,"loss":"bce","augment":true,"augmentation":{"brightness":true,"contrast":true,"translation":true,"cutout":true,"horizontalFlip":false,"translationRatio":0.125,"cutoutRatio":0.5},"emaDecay":0.999}"#
        let options = try JSONDecoder().decode(GANTrainingOptions.self, from: Data(oldOptions.utf8))
        var expected = GANTrainingOptions.legacy
        expected.augment = true
        XCTAssertEqual(options, expected)
        XCTAssertFalse(options.spectralNorm); XCTAssertFalse(options.adaptiveAugmentation)
        XCTAssertNil(options.discriminatorLearningRate); XCTAssertEqual(options.upsample, .transposed)
        XCTAssertFalse(options.minibatchStd)
        XCTAssertEqual(options.packing, 1)
        XCTAssertNil(options.generatorWidth)
        let oldConfig = #"{"imageSize":64,"channels":1,"latentDim":100,"generatorWidth":32,"discriminatorWidth":32,"numClasses":2,"classNames":["healthy","lesion"]}"#
        let config = try JSONDecoder().decode(GANConfig.self, from: Data(oldConfig.utf8))
        XCTAssertEqual(config.upsample, .transposed)
        // A legacy trainer draws its initial weights exactly as before (no u vectors drawn).
        let legacy = GANTrainer(config: config, options: options, seed: 3)
        var stream = RandomStream(seed: 3).split(.ganInitialisation)
        let g = DCGANGenerator(config, stream: &stream), d = DCGANDiscriminator(config, stream: &stream)
        XCTAssertEqual(legacy.generator.namedTensors().map(\.tensor.data), g.namedTensors().map(\.tensor.data))
        XCTAssertEqual(legacy.discriminator.namedTensors().map(\.tensor.data), d.namedTensors().map(\.tensor.data))
    }

    func testSpectralNormKeepsEveryDiscriminatorLayerAtUnitSpectralNorm() throws {
        var options = GANTrainingOptions()
        options.augment = false; options.spectralNorm = true; options.loss = .hinge
        let config = GANConfig(imageSize: 16, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8, numClasses: 2, upsample: .resize)
        let trainer = GANTrainer(config: config, options: options, seed: 1)
        XCTAssertTrue(trainer.discriminator.norms.isEmpty, "SNGAN's D has no BatchNorm")
        var stream = RandomStream(seed: 2)
        let real = Tensor(randomNormal: [8, 1, 16, 16], std: 0.5, stream: &stream)
        for _ in 0..<20 { _ = trainer.step(real: real, labels: [0, 1, 0, 1, 0, 1, 0, 1], stream: &stream) }
        // σ of every normalised weight, by a converged power iteration from a fresh vector: 1
        // up to the one-step lag of the persistent u.
        for layer in trainer.discriminator.spectral {
            let normalised = layer.normalized()
            var u = [Float](repeating: 1 / Float(normalised.shape[0]).squareRoot(), count: normalised.shape[0]), v: [Float] = []
            for _ in 0..<200 { (u, v) = spectralPowerIteration(normalised, u: u) }
            XCTAssertEqual(spectralSigma(normalised, u: u, v: v), 1, accuracy: 0.1, "\(normalised.shape)")
            // The raw weights grew or shrank freely: normalisation is doing the work.
            XCTAssertNotEqual(layer.sigma, 1, accuracy: 1e-3)
        }
        // u is saved with the training state under PyTorch's buffer name.
        let names = Set(trainer.stateEntries().tensors.map(\.name))
        XCTAssert(names.contains("D.net.0.weight_u") && names.contains("D.embed.weight_u"), "\(names.sorted())")
    }

    func testTwoTimeScaleLearningRates() {
        // Adam's first step moves each weight by ≈ its learning rate (m̂/√v̂ = ±1), so the largest
        // change per network shows which rate it got.
        var options = GANTrainingOptions()
        options.learningRate = 1e-4; options.discriminatorLearningRate = 4e-4; options.augment = false
        let (g, d) = largestFirstStepChanges(options)
        XCTAssertEqual(g, 1e-4, accuracy: 1e-6)
        XCTAssertEqual(d, 4e-4, accuracy: 4e-6)
    }

    /// The largest change of any G and of any D weight in a tiny trainer's first step (Adam moves
    /// each weight by ≈ its learning rate then), with `totalSteps` set for the rate schedule.
    func largestFirstStepChanges(_ options: GANTrainingOptions, totalSteps: Int? = nil) -> (Float, Float) {
        let config = GANConfig(imageSize: 16, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8)
        let trainer = GANTrainer(config: config, options: options, seed: 1)
        trainer.totalSteps = totalSteps
        let g0 = trainer.generator.parameters().map(\.data), d0 = trainer.discriminator.parameters().map(\.data)
        var stream = RandomStream(seed: 2)
        _ = trainer.step(real: Tensor(randomNormal: [4, 1, 16, 16], stream: &stream), labels: nil, stream: &stream)
        func largestChange(_ before: [[Float]], _ after: [Tensor]) -> Float {
            zip(before, after).map { zip($0, $1.data).map { abs($0 - $1) }.max()! }.max()!
        }
        return (largestChange(g0, trainer.generator.parameters()), largestChange(d0, trainer.discriminator.parameters()))
    }

    /// Linear decay to 0 over the last K steps: the factor, and Adam's first step moving each
    /// weight by ≈ the decayed rate.
    func testLearningRateDecayScalesBothRates() {
        var options = GANTrainingOptions()
        XCTAssertEqual(options.learningRateFactor(step: 9, totalSteps: 10), 1)
        options.learningRateDecaySteps = 4
        XCTAssertEqual([5, 6, 7, 8, 9].map { options.learningRateFactor(step: $0, totalSteps: 10) }, [1, 1, 0.75, 0.5, 0.25])
        options.learningRate = 1e-4; options.discriminatorLearningRate = 4e-4; options.augment = false
        let (g, d) = largestFirstStepChanges(options, totalSteps: 2)   // step 0 of 2 with a 4-step decay: factor 0.5
        XCTAssertEqual(g, 0.5e-4, accuracy: 1e-6)
        XCTAssertEqual(d, 2e-4, accuracy: 4e-6)
        XCTAssertThrowsError(try { var bad = GANTrainingOptions(); bad.learningRateDecaySteps = -1; try bad.validate() }())
    }

    func testEMAWarmUpForgetsTheInitialWeights() {
        // θ jumps from its initial value to 1 and stays there. With decay 0.999 and no warm-up the
        // average would still hold 0.999^200 ≈ 82 % of the initial weights after 200 steps; the
        // warm-up min(decay, (1+s)/(10+s)) leaves ∏ (1+s)/(10+s) ≈ 10!·201!/210! < 1e-12.
        var stream = RandomStream(seed: 4)
        let layer = Linear(3, 2, stream: &stream)
        let initial = layer.weight.data
        let ema = ParameterEMA(layer, decay: 0.999)
        layer.weight.data = [Float](repeating: 1, count: layer.weight.count)
        layer.bias!.data = [Float](repeating: 1, count: 2)
        for s in 1...200 { ema.update(from: layer, step: s) }
        for (value, start) in zip(ema.shadow[0], initial) {
            XCTAssertEqual(value, 1, accuracy: 1e-5, "initial \(start)")
        }
        let plain = ParameterEMA(layer, decay: 0.999)
        plain.shadow[0] = initial
        for _ in 1...200 { plain.update(from: layer) }
        let plainDistance: Float = plain.shadow[0].map { abs($0 - 1) }.max()!
        let initialDistance: Float = initial.map { abs($0 - 1) }.max()!
        XCTAssertGreaterThan(plainDistance, 0.5 * initialDistance, "without the warm-up most of the initial weights remain")
    }

    func testAdaptiveProbabilityFollowsTheSignOfDOnReals() {
        var options = GANTrainingOptions()
        options.adaptiveAugmentation = true; options.adaInterval = 4; options.adaSpeedImages = 320; options.adaTarget = 0.6
        let trainer = GANTrainer(config: GANConfig(imageSize: 16, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8), options: options, seed: 1)
        XCTAssertEqual(trainer.augmentProbability, 0)
        let confident = Tensor(shape: [8], data: [Float](repeating: 2, count: 8))       // r_t = 1 > 0.6: D overfits
        let unsure = Tensor(shape: [8], data: [1, -1, 1, -1, 1, -1, 1, 1])              // r_t = 0.5 < 0.6
        for s in 1...8 { trainer.adaptAugmentation(realLogits: confident, step: s) }
        // Two adjustments of 4 steps × 8 images / 320 each.
        XCTAssertEqual(trainer.augmentProbability, 0.2, accuracy: 1e-6)
        for s in 9...12 { trainer.adaptAugmentation(realLogits: unsure, step: s) }
        XCTAssertEqual(trainer.augmentProbability, 0.1, accuracy: 1e-6)
        for s in 13...200 { trainer.adaptAugmentation(realLogits: confident, step: s) }
        XCTAssertEqual(trainer.augmentProbability, 1, "p is clamped to [0, 1]")
    }

    func testAugmentationProbabilityIsTheFractionOfAugmentedSamples() {
        var only = AugmentationOptions()
        only.contrast = false; only.translation = false; only.cutout = false   // brightness alone
        let x = Tensor(filled: 0.25, shape: [2000, 1, 4, 4])
        for p: Float in [0, 0.3, 1] {
            var stream = RandomStream(seed: 9)
            let y = diffAugment(x, options: only, probability: p, stream: &stream)
            let changed = (0..<2000).filter { i in y.data[i * 16] != 0.25 }.count
            XCTAssertEqual(Float(changed) / 2000, p, accuracy: 0.03, "p = \(p)")
        }
    }

    func testAugmentOpsChoosesTheOpsAndRejectsUnknownNames() throws {
        var geometric = AugmentationOptions()
        try geometric.enableOnly(["translation", "cutout"])
        XCTAssertEqual([geometric.brightness, geometric.contrast, geometric.translation, geometric.cutout], [false, false, true, true])
        // Without colour ops every augmented pixel is one of its image's own values (up to the
        // rounding of (x − mean) + mean) or the empty fill (0); colour ops make new values.
        var stream = RandomStream(seed: 3)
        let values = (0..<(64 * 256)).map { _ in 0.2 + 0.7 * stream.uniform() }
        func keepsOwnValues(_ y: Tensor) -> Bool {
            (0..<64).allSatisfy { i in
                let own = values[i * 256..<(i + 1) * 256].sorted()
                return y.data[i * 256..<(i + 1) * 256].allSatisfy { v in
                    v == 0 || own.contains { abs($0 - v) <= 1e-6 }
                }
            }
        }
        let y = diffAugment(Tensor(shape: [64, 1, 16, 16], data: values), options: geometric, stream: &stream)
        XCTAssertTrue(keepsOwnValues(y))
        XCTAssertTrue(y.data.contains(0))
        var colour = AugmentationOptions()
        try colour.enableOnly(["colour"])
        XCTAssertEqual([colour.brightness, colour.contrast, colour.translation, colour.cutout], [true, true, false, false])
        XCTAssertFalse(keepsOwnValues(diffAugment(Tensor(shape: [64, 1, 16, 16], data: values), options: colour, stream: &stream)))
        XCTAssertThrowsError(try colour.enableOnly(["translation", "rotation"])) { XCTAssertTrue("\($0)".contains("'rotation'"), "\($0)") }
        XCTAssertThrowsError(try colour.enableOnly([]))
    }

    func testResizeConvolutionHasNoCheckerboardOnConstantInput() {
        // Odena et al. 2016: a 4×4 stride-2 transposed conv gives interior output pixels different
        // numbers of kernel taps by parity, so even a constant input makes a period-2 pattern;
        // nearest ×2 then 3×3 conv gives every interior pixel the same taps.
        var stream = RandomStream(seed: 6)
        let x = Tensor(filled: 1, shape: [1, 3, 6, 6])
        let transposedWeight = Tensor(randomNormal: [3, 2, 4, 4], stream: &stream)
        let resizeWeight = Tensor(randomNormal: [2, 3, 3, 3], stream: &stream)
        func interiorSpread(_ y: Tensor) -> Float {
            let h = y.shape[2], w = y.shape[3]
            var spread: Float = 0
            for c in 0..<y.shape[1] {
                let values = (2..<h - 2).flatMap { i in (2..<w - 2).map { j in y.data[(c * h + i) * w + j] } }
                spread = max(spread, values.max()! - values.min()!)
            }
            return spread
        }
        let transposed = convTranspose2d(x, weight: transposedWeight, stride: 2, padding: 1)
        let resized = conv2d(upsampleNearest2x(x), weight: resizeWeight, padding: 1)
        XCTAssertEqual(transposed.shape, resized.shape)
        XCTAssertGreaterThan(interiorSpread(transposed), 0.5)
        XCTAssertEqual(interiorSpread(resized), 0, accuracy: 1e-5)
    }

    func testResizeGeneratorTrainsAndItsModelFileSamplesWithResizeConvs() throws {
        let out = root.appendingPathComponent("resize")
        var options = GANTrainingOptions()
        options.upsample = .resize
        try trainGAN(request(steps: 6), options: options, out: out, resume: false, progress: .none)
        let file = try readSafetensors(at: RunFolder(out).model)
        guard case .dcgan(let generator) = try loadModel(from: RunFolder(out).model) else { return XCTFail("not a DCGAN") }
        XCTAssertEqual(generator.config.upsample, .resize)
        XCTAssertEqual(file.tensors["G.net.3.weight"]?.shape, [8, 16, 3, 3])
        var stream = RandomStream(seed: 1)
        let images = withNoGrad { generator(Tensor(randomNormal: [2, 100], stream: &stream), labels: [0, 1]) }
        XCTAssertEqual(images.shape, [2, 1, 16, 16])
        XCTAssert(images.data.allSatisfy { $0.isFinite && abs($0) <= 1 })
        // The run's losses report ADA's p and r_t.
        let header = try String(contentsOf: RunFolder(out).losses, encoding: .utf8).split(separator: "\n")[0]
        XCTAssertEqual(header, "step,loss_d,loss_g,d_real,d_fake,augment_p,r_t")
    }

    func testGeneratorWidthShapesGAloneAndTheRunResumes() throws {
        var options = GANTrainingOptions()
        options.generatorWidth = 16
        // Resumed without the option: the run's saved options and config keep G's width.
        let checkpoint = try assertResumesExactly(options, name: "gwide", steps: 4, splitAt: 2)
        XCTAssertEqual(checkpoint.tensors["G.net.3.weight"]?.shape, [16, 32, 3, 3], "G: 32 → 16 channels at width 16")
        XCTAssertEqual(checkpoint.tensors["D.net.0.weight"]?.shape, [8, 1, 4, 4], "D keeps --width 8")
        guard case .dcgan(let generator) = try loadModel(from: RunFolder(root.appendingPathComponent("gwide")).model) else { return XCTFail("not a DCGAN") }
        XCTAssertEqual(generator.config.generatorWidth, 16)
        XCTAssertEqual(generator.config.discriminatorWidth, 8)
        options.generatorWidth = 0
        XCTAssertThrowsError(try options.validate())
    }

    /// With the excitation's 1×1 conv at zero every gate is σ(0) = ½, so at 32 px (one gated block,
    /// the last before the bias-free output conv) G's pre-tanh output is exactly half that of the
    /// same G without excitation; the other weights are drawn as without it.
    func testSkipExcitationGatesTheThirdBlockByTheFirst() {
        var config = GANConfig(imageSize: 32, channels: 1, latentDim: 8, generatorWidth: 4, discriminatorWidth: 4, numClasses: 2, upsample: .resize)
        var stream = RandomStream(seed: 3)
        let plain = DCGANGenerator(config, stream: &stream)
        config.skipExcitation = true
        stream = RandomStream(seed: 3)
        let gated = DCGANGenerator(config, stream: &stream)
        let plainTensors = Dictionary(uniqueKeysWithValues: plain.namedTensors().map { ($0.name, $0.tensor.data) })
        let gatedTensors = Dictionary(uniqueKeysWithValues: gated.namedTensors().map { ($0.name, $0.tensor) })
        XCTAssertEqual(Set(gatedTensors.keys).subtracting(plainTensors.keys), ["sle.0.squeeze.weight", "sle.0.excite.weight"])
        for (name, values) in plainTensors { XCTAssertEqual(gatedTensors[name]?.data, values, name) }
        XCTAssertEqual(gatedTensors["sle.0.squeeze.weight"]?.shape, [4, 16, 4, 4], "block 0 (16 channels at 4×4) → block 2's 4 channels")
        XCTAssertEqual(gatedTensors["sle.0.excite.weight"]?.shape, [4, 4, 1, 1])
        // Batch statistics, so every block's output is O(1) (eval mode's initial running statistics
        // would pass the small initial activations through unnormalised).
        plain.setTraining(true); gated.setTraining(true)
        // A larger output conv than DCGAN's N(0, 0.02), so the output is well above rounding.
        let outputWeights = randomTensor([4, 1, 3, 3], seed: 12, scale: 0.3).data
        plainTensors.keys.contains("net.9.weight") ? () : XCTFail("G's output conv is not net.9")
        plain.namedTensors().first { $0.name == "net.9.weight" }!.tensor.data = outputWeights
        gatedTensors["net.9.weight"]!.data = outputWeights
        let z = randomTensor([3, 8], seed: 4), labels = [0, 1, 1]
        gatedTensors["sle.0.excite.weight"]!.data = randomTensor([16], seed: 5, scale: 2).data
        let random = withNoGrad { gated(z, labels: labels) }.data
        gatedTensors["sle.0.excite.weight"]!.data = [Float](repeating: 0, count: 16)
        let half = withNoGrad { gated(z, labels: labels) }.data, full = withNoGrad { plain(z, labels: labels) }.data
        var largest: Float = 0
        for (h, f) in zip(half, full) { largest = max(largest, abs(atanhf(h) - 0.5 * atanhf(f))) }
        let scale = full.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(largest, 1e-4 * scale)
        XCTAssertGreaterThan(zip(random, half).map { abs($0 - $1) }.max()!, 0.05 * scale, "gates other than ½ change the output")
    }

    /// The excitation's weight gradients through pooling, SiLU, the gate and G's last conv against
    /// central differences (64 px: two gates, the second fed by a pooled 8×8 block).
    func testSkipExcitationGradientsMatchFiniteDifferences() {
        let config = GANConfig(imageSize: 64, channels: 1, latentDim: 4, generatorWidth: 2, discriminatorWidth: 2, upsample: .resize, skipExcitation: true)
        var stream = RandomStream(seed: 6)
        let g = DCGANGenerator(config, stream: &stream)
        g.setTraining(true)   // batch statistics: O(1) activations in every block
        let tensors = Dictionary(uniqueKeysWithValues: g.namedTensors().map { ($0.name, $0.tensor) })
        for name in ["sle.0.squeeze.weight", "sle.1.squeeze.weight", "sle.1.excite.weight"] {
            let w = tensors[name]!
            w.data.withUnsafeMutableBufferPointer { stream.fillNormal($0, std: 0.5) }
        }
        let z = randomTensor([2, 4], seed: 9, scale: 2), r = randomTensor([2, 1, 64, 64], seed: 10)
        func loss() -> Tensor { sum(mul(g(z), r)) }
        g.zeroGrad()
        loss().backward()
        // The second gate (block 3 by block 1's 8×8 output, pooled) feeds G's last conv directly;
        // the first one's effect is mostly normalised away by block 3's BatchNorm.
        for name in ["sle.1.squeeze.weight", "sle.1.excite.weight"] {
            let w = tensors[name]!
            for index in [0, w.count / 2, w.count - 1] {
                let saved = w.data[index], h: Float = 1e-2
                w.data[index] = saved + h
                let up = Double(withNoGrad { loss() }.scalar)
                w.data[index] = saved - h
                let down = Double(withNoGrad { loss() }.scalar)
                w.data[index] = saved
                let numeric = (up - down) / Double(2 * h), analytic = Double(w.grad![index])
                XCTAssertEqual(analytic, numeric, accuracy: 1e-2 * max(0.01, abs(numeric)), "\(name)[\(index)]")
            }
        }
    }

    func testSkipExcitationRunResumesExactlyAndNeedsThirtyTwoPixels() throws {
        try makeToyDataset(in: root.appendingPathComponent("data32"), size: 32)
        var options = GANTrainingOptions()
        options.skipExcitation = true
        XCTAssertThrowsError(try trainGAN(request(steps: 2), options: options, out: root.appendingPathComponent("sle16"), resume: false, progress: .none)) {
            XCTAssertTrue("\($0)".contains("needs an image size of 32 or more"), "\($0)")
        }
        let checkpoint = try assertResumesExactly(options, name: "sle", steps: 4, splitAt: 2, data: "data32", size: 32)
        XCTAssertEqual(checkpoint.tensors["G.sle.0.squeeze.weight"]?.shape, [8, 32, 4, 4])
        guard case .dcgan(let generator) = try loadModel(from: RunFolder(root.appendingPathComponent("sle")).model) else { return XCTFail("not a DCGAN") }
        XCTAssertTrue(generator.config.skipExcitation)
    }

    /// The decoders learn: D (conv stack and decoders) trained on the reconstruction loss alone for a
    /// fixed batch brings it well below its start, and the loss reaches D's own first conv.
    func testReconstructionLossTrainsTheDecodersThroughD() {
        let config = GANConfig(imageSize: 64, channels: 1, latentDim: 8, generatorWidth: 4, discriminatorWidth: 4, upsample: .resize)
        var stream = RandomStream(seed: 4)
        let d = DCGANDiscriminator(config, reconstruction: true, stream: &stream)
        XCTAssertEqual(d.namedTensors().first { $0.name == "decoder.whole.up.0.conv.weight" }?.tensor.shape, [4, 16, 3, 3], "8×8 features: 16 channels at width 4")
        XCTAssertEqual(d.namedTensors().first { $0.name == "decoder.part.up.0.conv.weight" }?.tensor.shape, [4, 8, 3, 3], "16×16 features: 8 channels")
        // Smooth images (a blob per image), as D would see real scans.
        var values = [Float](repeating: 0, count: 4 * 64 * 64)
        for i in 0..<4 { for y in 0..<64 { for x in 0..<64 {
            let dx = Float(x - 16 - 8 * i), dy = Float(y - 40 + 4 * i)
            values[(i * 64 + y) * 64 + x] = (dx * dx + dy * dy).squareRoot() < 14 ? 0.8 : -0.8
        } } }
        let images = Tensor(shape: [4, 1, 64, 64], data: values)
        let optimizer = Adam(d.parameters(), learningRate: 2e-3, beta1: 0.5, beta2: 0.999)
        d.setTraining(true)
        func loss(_ quadrant: Int) -> Tensor {
            let judged = d.logitsAndFeatures(images, labels: nil, sides: [8, 16])
            return d.reconstructionLoss(images: images, features: judged.features, quadrant: quadrant)
        }
        let first = withNoGrad { (0..<4).map { loss($0).scalar }.reduce(0, +) }
        d.zeroGrad()
        loss(1).backward()
        XCTAssertGreaterThan(d.namedTensors().first { $0.name == "net.0.weight" }!.tensor.grad!.map { abs($0) }.max()!, 0)
        for step in 0..<60 {
            d.zeroGrad()
            loss(step % 4).backward()
            optimizer.update()
        }
        let last = withNoGrad { (0..<4).map { loss($0).scalar }.reduce(0, +) }
        XCTAssertLessThan(last, 0.5 * first, "reconstruction error \(first) → \(last)")
    }

    func testReconstructionRunResumesExactlyAndRefusesSmallImagesAndPacks() throws {
        try makeToyDataset(in: root.appendingPathComponent("data64"), perClass: 4, size: 64)
        var options = GANTrainingOptions()
        options.reconstructionWeight = 1
        XCTAssertThrowsError(try trainGAN(request(steps: 2), options: options, out: root.appendingPathComponent("rec16"), resume: false, progress: .none)) {
            XCTAssertTrue("\($0)".contains("needs an image size of 64 or more"), "\($0)")
        }
        var packed = options
        packed.packing = 2
        XCTAssertThrowsError(try packed.validate())
        let plain = root.appendingPathComponent("plain-rec")
        try trainGAN(request(steps: 4, data: "data64", size: 64), options: GANTrainingOptions(), out: plain, resume: false, progress: .none)
        let checkpoint = try assertResumesExactly(options, name: "rec", steps: 4, splitAt: 2, data: "data64", size: 64)
        XCTAssertEqual(checkpoint.tensors["D.decoder.part.out.weight"]?.shape, [1, 4, 3, 3])
        let c = try readSafetensors(at: RunFolder(plain).latestCheckpoint)
        XCTAssertNotEqual(checkpoint.tensors["D.net.0.weight"]!.values, c.tensors["D.net.0.weight"]!.values)
    }

    func testBilinearGeneratorTrainsAndItsModelFileSamplesWithBilinearDoubling() throws {
        let out = root.appendingPathComponent("bilinear")
        var options = GANTrainingOptions()
        options.upsample = .bilinear
        try trainGAN(request(steps: 6), options: options, out: out, resume: false, progress: .none)
        guard case .dcgan(let generator) = try loadModel(from: RunFolder(out).model) else { return XCTFail("not a DCGAN") }
        XCTAssertEqual(generator.config.upsample, .bilinear)
        var stream = RandomStream(seed: 1)
        let z = Tensor(randomNormal: [2, 100], stream: &stream)
        let images = withNoGrad { generator(z, labels: [0, 1]) }
        XCTAssertEqual(images.shape, [2, 1, 16, 16])
        XCTAssert(images.data.allSatisfy { $0.isFinite && abs($0) <= 1 })
        // The same weights with nearest doubling draw another image: the file's mode is the one used.
        var nearestConfig = generator.config
        nearestConfig.upsample = .resize
        var initStream = RandomStream(seed: 2)
        let nearest = DCGANGenerator(nearestConfig, stream: &initStream)
        nearest.copyValues(from: generator)
        let nearestImages = withNoGrad { nearest(z, labels: [0, 1]) }
        XCTAssertGreaterThan(zip(images.data, nearestImages.data).map { abs($0 - $1) }.max()!, 1e-3)
    }

    func testADARunRaisesPWhenDiscriminatorMemorisesAndResumesIt() throws {
        // 24 toy images: D separates them within a few steps, so r_t exceeds 0.6 and p climbs.
        var options = GANTrainingOptions()
        options.adaptiveAugmentation = true; options.adaSpeedImages = 400; options.spectralNorm = true
        let straight = root.appendingPathComponent("ada"), split = root.appendingPathComponent("ada-split")
        try trainGAN(request(steps: 40), options: options, out: straight, resume: false, progress: .none)
        let state = try readSafetensors(at: RunFolder(straight).latestCheckpoint)
        let p = state.tensors["ada.state"]!.values[0]
        XCTAssertGreaterThan(p, 0.1)
        XCTAssertLessThanOrEqual(p, 1)
        try trainGAN(request(steps: 22), options: options, out: split, resume: false, progress: .none)
        try trainGAN(request(steps: 40), options: options, out: split, resume: true, progress: .none)
        let resumed = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        XCTAssertEqual(resumed.tensors["ada.state"]!.values, state.tensors["ada.state"]!.values)
        XCTAssertEqual(resumed.tensors["D.net.0.weight_u"]!.values, state.tensors["D.net.0.weight_u"]!.values)
    }

    /// LeCam (Tseng et al. 2021): the first call sets α_R, α_F to the batch means, later ones
    /// average with the decay; the penalty is E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²].
    func testLeCamPenaltyFollowsItsDefinition() {
        var options = GANTrainingOptions()
        options.lecamWeight = 0.3; options.lecamDecay = 0.9
        let trainer = GANTrainer(config: GANConfig(imageSize: 16, channels: 1, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8), options: options, seed: 1)
        let real1 = Tensor(shape: [4], data: [2, 1, -1, 2]), fake1 = Tensor(shape: [4], data: [-2, 0, 1, -3])
        // α_R = 1, α_F = −1: real terms relu(x + 1)² = 9, 4, 0, 9; fake terms relu(1 − y)² = 9, 1, 0, 16.
        XCTAssertEqual(trainer.lecamPenalty(real: real1, fake: fake1).scalar, 22 / 4 + 26 / 4, accuracy: 1e-5)
        XCTAssertEqual(trainer.lecamRealAverage, 1, accuracy: 1e-6)
        XCTAssertEqual(trainer.lecamFakeAverage, -1, accuracy: 1e-6)
        let real2 = Tensor(shape: [2], data: [3, 3]), fake2 = Tensor(shape: [2], data: [1, 1])
        // α_R = 0.9 · 1 + 0.1 · 3 = 1.2, α_F = 0.9 · (−1) + 0.1 · 1 = −0.8: real 3.8² each, fake 0.2² each.
        XCTAssertEqual(trainer.lecamPenalty(real: real2, fake: fake2).scalar, 3.8 * 3.8 + 0.2 * 0.2, accuracy: 1e-4)
        XCTAssertEqual(trainer.lecamRealAverage, 1.2, accuracy: 1e-6)
        XCTAssertEqual(trainer.lecamFakeAverage, -0.8, accuracy: 1e-6)
        // Its gradient: d/dx relu(x − α_F)² / n = 2 (x − α_F) / n where positive, 0 elsewhere.
        let x = Tensor(shape: [2], data: [0, -2], requiresGrad: true), y = Tensor(shape: [2], data: [5, 5])
        trainer.lecamPenalty(real: x, fake: y).backward()
        let alphaF = trainer.lecamFakeAverage
        XCTAssertEqual(x.grad![0], 2 * (0 - alphaF) / 2, accuracy: 1e-5)
        XCTAssertEqual(x.grad![1], -2 - alphaF > 0 ? 2 * (-2 - alphaF) / 2 : 0, accuracy: 1e-5)
    }

    func testMinibatchStdDiscriminatorSeesTheBatchSpreadAndItsRunResumesExactly() throws {
        var options = GANTrainingOptions()
        options.minibatchStd = true
        let config = GANConfig(imageSize: 16, channels: 1, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8)
        let d = GANTrainer(config: config, options: options, seed: 1).discriminator
        d.setTraining(false)
        // The last conv reads 16 feature channels plus the std channel.
        XCTAssertEqual(d.convs.last!.weight.shape, [1, 17, 4, 4])
        // Its logits depend on the rest of the batch: the same image scores differently next to a
        // copy of itself than next to a different image.
        var stream = RandomStream(seed: 4)
        let a = (0..<256).map { _ in stream.normal() }, b = (0..<256).map { _ in stream.normal() }
        let twins = withNoGrad { d(Tensor(shape: [2, 1, 16, 16], data: a + a)) }.data
        let pair = withNoGrad { d(Tensor(shape: [2, 1, 16, 16], data: a + b)) }.data
        XCTAssertEqual(twins[0], twins[1])
        XCTAssertNotEqual(twins[0], pair[0])
        let x = try assertResumesExactly(options, name: "mbstd")
        XCTAssertEqual(x.tensors["D.net.5.weight"]!.shape, [1, 17, 4, 4])
    }

    /// MSGAN (Mao et al. 2019): 1 / (Σ mean|xᵢ − xⱼ| / Σ mean|zᵢ − zⱼ| + ε) over the pairs, its
    /// gradient against finite differences, and pairs that only ever join samples of one class.
    func testModeSeekingLossFollowsItsDefinition() {
        // Pair (0, 1): image distance mean(|1 − 0|, |2 − 4|) = 1.5, latent mean(|0 − 2|) = 2.
        // Pair (2, 0): image mean(|−1 − 1|, |0 − 2|) = 2, latent mean(|1 − 0|) = 1. Ratio 3.5 / 3.
        let images = Tensor(shape: [3, 1, 1, 2], data: [1, 2, 0, 4, -1, 0])
        let loss = modeSeekingLoss(images, latents: [0, 2, 1], latentDim: 1, pairs: [(0, 1), (2, 0)], epsilon: 0)
        XCTAssertEqual(loss.scalar, 3 / 3.5, accuracy: 1e-6)
        // Values far from ties, so |·| is smooth within the finite-difference step.
        let x = Tensor(shape: [4, 1, 3, 3], data: (0..<36).map { Float(($0 * 7) % 36) * 0.1 - 1.7 })
        let z: [Float] = [0.3, -1.2, 0.8, 2.0, -0.4, 1.1, 0.0, -2.2]
        checkGradients("modeSeekingLoss", inputs: [x], eps: 1e-3) { modeSeekingLoss($0[0], latents: z, latentDim: 2, pairs: [(0, 1), (2, 3), (1, 3)]) }
        // On 2×2 block means: image 0's blocks are [1.5, 3.5], image 1's [4, 0] (channel-major).
        let blocky = Tensor(shape: [2, 1, 2, 4], data: [1, 2, 3, 4, 1, 2, 3, 4,  4, 4, 0, 0, 4, 4, 0, 0])
        XCTAssertEqual(modeSeekingLoss(blocky, latents: [0, 1], latentDim: 1, pairs: [(0, 1)], block: 2, epsilon: 0).scalar, 1 / 3, accuracy: 1e-6)
        let y = Tensor(shape: [3, 2, 4, 4], data: (0..<96).map { Float(($0 * 37) % 96) * 0.05 - 2.3 })
        checkGradients("modeSeekingLoss 2×2 blocks", inputs: [y], eps: 1e-3) { modeSeekingLoss($0[0], latents: z.prefix(3).map { $0 }, latentDim: 1, pairs: [(0, 1), (2, 0)], block: 2) }
        XCTAssertEqual(GANTrainer.modeSeekingPairs(labels: [0, 1, 0, 1, 1, 2, 0], count: 7).map { [$0.0, $0.1] }, [[0, 2], [1, 3]])
        XCTAssertEqual(GANTrainer.modeSeekingPairs(labels: nil, count: 5).map { [$0.0, $0.1] }, [[0, 1], [2, 3]])
    }

    func testModeSeekingRunChangesGeneratorAndResumesExactly() throws {
        var options = GANTrainingOptions()
        options.modeSeekingWeight = 1; options.modeSeekingBlock = 4
        var misfit = options
        misfit.modeSeekingBlock = 3
        XCTAssertThrowsError(try trainGAN(request(steps: 2), options: misfit, out: root.appendingPathComponent("misfit"), resume: false, progress: .none)) {
            XCTAssertTrue("\($0)".contains("must divide the image size 16"), "\($0)")
        }
        let plain = root.appendingPathComponent("plain-ms")
        try trainGAN(request(steps: 6), options: GANTrainingOptions(), out: plain, resume: false, progress: .none)
        let a = try assertResumesExactly(options, name: "ms")
        let c = try readSafetensors(at: RunFolder(plain).latestCheckpoint)
        XCTAssertNotEqual(a.tensors["G.net.0.weight"]!.values, c.tensors["G.net.0.weight"]!.values)
    }

    /// The finite-difference R1 estimate averages to ‖∇ₓD(x)‖² from autodiff (D in eval mode, so
    /// each logit depends on its own image only). (∇D·ε)²/‖∇D‖² is χ²(1), variance 2: 4 images ×
    /// 800 draws put the mean within ±2.5 % (one standard error) of the truth.
    func testR1EstimateMatchesTheInputGradientNorm() {
        var options = GANTrainingOptions()
        options.r1Gamma = 1
        let config = GANConfig(imageSize: 16, channels: 1, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8, numClasses: 2)
        let trainer = GANTrainer(config: config, options: options, seed: 2)
        let d = trainer.discriminator
        d.setTraining(false)
        let x = randomTensor([4, 1, 16, 16], seed: 8, scale: 0.5)
        let labels = [0, 1, 1, 0]
        x.requiresGrad = true
        sum(d(x, labels: labels)).backward()
        let gradient = x.grad!
        let exact = gradient.reduce(0) { $0 + Double($1) * Double($1) } / 4
        let logits = withNoGrad { d(x.detached(), labels: labels) }
        var stream = RandomStream(seed: 11)
        var total = 0.0
        for _ in 0..<800 {
            total += Double(withNoGrad { trainer.r1Penalty(realInput: x.detached(), realLogits: logits, labels: labels, stream: &stream) }.scalar)
        }
        XCTAssertGreaterThan(exact, 0)
        XCTAssertEqual(total / 800 / exact, 1, accuracy: 0.12)
    }

    func testR1RunChangesTheDiscriminatorAndResumesExactly() throws {
        var options = GANTrainingOptions()
        options.r1Gamma = 1; options.r1Interval = 2
        let plain = root.appendingPathComponent("plain-r1")
        try trainGAN(request(steps: 6), options: GANTrainingOptions(), out: plain, resume: false, progress: .none)
        let a = try assertResumesExactly(options, name: "r1", steps: 7, splitAt: 3)
        let c = try readSafetensors(at: RunFolder(plain).latestCheckpoint)
        XCTAssertNotEqual(a.tensors["D.net.0.weight"]!.values, c.tensors["D.net.0.weight"]!.values)
    }

    func testLeCamRunChangesTheWeightsAndResumesExactly() throws {
        var options = GANTrainingOptions()
        options.lecamWeight = 0.3
        let plain = root.appendingPathComponent("plain")
        try trainGAN(request(steps: 8), options: GANTrainingOptions(), out: plain, resume: false, progress: .none)
        let a = try assertResumesExactly(options, name: "lecam", steps: 8, splitAt: 5)
        let c = try readSafetensors(at: RunFolder(plain).latestCheckpoint)
        XCTAssertEqual(a.tensors["lecam.state"]!.values[2], 1)
        XCTAssertNotEqual(a.tensors["D.net.0.weight"]!.values, c.tensors["D.net.0.weight"]!.values)
    }

    func testPackedDiscriminatorJudgesPacksAndItsRunResumesExactly() throws {
        var options = GANTrainingOptions()
        options.packing = 2
        let config = GANConfig(imageSize: 16, channels: 1, latentDim: 8, generatorWidth: 8, discriminatorWidth: 8, numClasses: 2)
        let d = GANTrainer(config: config, options: options, seed: 1).discriminator
        d.setTraining(false)
        XCTAssertEqual(d.convs[0].weight.shape, [8, 2, 4, 4])
        var stream = RandomStream(seed: 4)
        let images = (0..<4).map { _ in (0..<256).map { _ in stream.normal() } }
        func logits(_ order: [Int], _ labels: [Int]) -> [Float] {
            withNoGrad { d(Tensor(shape: [order.count, 1, 16, 16], data: order.flatMap { images[$0] }), labels: labels) }.data
        }
        // One logit per pack of two consecutive samples; a pack's logit does not depend on the
        // other packs, and depends on which image is in which slot.
        let base = logits([0, 1, 2, 3], [0, 0, 1, 1])
        XCTAssertEqual(base.count, 2)
        XCTAssertEqual(logits([0, 1, 3, 2], [0, 0, 1, 1])[0], base[0])
        XCTAssertNotEqual(logits([1, 0, 2, 3], [0, 0, 1, 1])[0], base[0])
        // A pack's class term is the mean of its samples' projections: with labels (0, 1) the
        // logit lies halfway between the all-0 and the all-1 pack of the same images.
        let zeros = logits([0, 1], [0, 0])[0], ones = logits([0, 1], [1, 1])[0], mixed = logits([0, 1], [0, 1])[0]
        XCTAssertNotEqual(zeros, ones)
        XCTAssertEqual(mixed, (zeros + ones) / 2, accuracy: 1e-5 * max(1, abs(zeros) + abs(ones)))
        // Training with packs of 2 resumes to the same bits as an uninterrupted run.
        let x = try assertResumesExactly(options, name: "pack")
        XCTAssertEqual(x.tensors["D.net.0.weight"]!.shape, [8, 2, 4, 4])
        // A batch that does not split into packs is refused before training.
        var odd = request(steps: 2)
        odd.batchSize = 7
        XCTAssertThrowsError(try trainGAN(odd, options: options, out: root.appendingPathComponent("pack-odd"), resume: false, progress: .none)) {
            XCTAssertTrue("\($0)".contains("packs of 2"), "\($0)")
        }
    }
}
