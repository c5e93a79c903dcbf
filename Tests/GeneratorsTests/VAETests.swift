import XCTest
import Foundation
@testable import Engine
@testable import Layers
@testable import Imaging
@testable import Generators
import TestSupport
import Core

func tinyVAEConfig(size: Int = 8, channels: Int = 1, factor: Int = 4, latent: Int = 2) -> VAEConfig {
    VAEConfig(imageSize: size, channels: channels, baseWidth: 4, channelMultipliers: VAEConfig.multipliers(factor: factor)!,
              latentChannels: latent, groups: 2)
}

final class VAETests: XCTestCase {
    func testPosteriorSampleKLAndL1GradientsMatchFiniteDifferences() {
        var stream = RandomStream(seed: 5)
        // Moments: means anywhere, log-variances inside the clamp range.
        let moments = Tensor(randomNormal: [2, 4, 3, 3], std: 0.8, stream: &stream)
        let noise = (0..<36).map { _ in stream.normal() }
        checkGradients("diagonalGaussianSample", inputs: [moments]) { diagonalGaussianSample($0[0], noise: noise) }
        checkGradients("diagonalGaussianSample mean", inputs: [moments]) { diagonalGaussianSample($0[0], noise: nil) }
        checkGradients("diagonalGaussianKL", inputs: [moments]) { diagonalGaussianKL($0[0]) }
        // L1 away from its kink: every difference is at least 0.1 in size.
        let prediction = Tensor(randomNormal: [2, 1, 3, 3], stream: &stream)
        let target = Tensor(shape: prediction.shape, data: prediction.data.enumerated().map { $1 + ($0 % 2 == 0 ? 1 : -1) * (0.1 + stream.uniform()) })
        checkGradients("l1Loss", inputs: [prediction]) { l1Loss($0[0], target) }
    }

    func testTinyVAELossGradientsMatchFiniteDifferences() {
        var options = VAETrainingOptions()
        options.reconstruction = .l2          // smooth, so finite differences are exact to O(eps²)
        options.klWeight = 20                 // large enough that the KL path matters in the check
        let trainer = VAETrainer(config: tinyVAEConfig(), options: options, seed: 3)
        var stream = RandomStream(seed: 4)
        let x = Tensor(randomNormal: [2, 1, 8, 8], std: 0.5, stream: &stream)
        let named = Dictionary(uniqueKeysWithValues: trainer.model.namedTensors().map { ($0.name, $0.tensor) })
        let checked = ["enc.inp.weight", "enc.down.1.res.c2.bias", "enc.out.2.weight", "enc.out.0.weight", "dec.inp.weight", "dec.up.0.up.weight", "dec.out.2.bias"]
        for name in checked { XCTAssertNotNil(named[name], name) }
        checkGradients("VAE loss", inputs: checked.compactMap { named[$0] }, tolerance: 3e-2) { _ in
            var draws = RandomStream(seed: 8)   // the same posterior noise at every evaluation
            return trainer.losses(x: x, stream: &draws).total
        }
        // With the scale-equivariance term the half-size decoder pass is part of the loss and its gradient.
        options.scaleEquivariance = 0.7
        let equivariant = VAETrainer(config: tinyVAEConfig(), options: options, seed: 3)
        var plain = RandomStream(seed: 8), withTerm = RandomStream(seed: 8)
        let base = trainer.losses(x: x, stream: &plain).total.scalar
        let term = equivariant.losses(x: x, stream: &withTerm).total.scalar
        XCTAssertGreaterThan(term, base)
        let equivariantNamed = Dictionary(uniqueKeysWithValues: equivariant.model.namedTensors().map { ($0.name, $0.tensor) })
        checkGradients("VAE loss with scale equivariance", inputs: checked.compactMap { equivariantNamed[$0] }, tolerance: 3e-2) { _ in
            var draws = RandomStream(seed: 8)
            return equivariant.losses(x: x, stream: &draws).total
        }
    }

    func testKLMatchesTheClosedFormAndAMonteCarloEstimate() {
        // One latent channel, 2×2: μ and log σ² chosen by hand.
        let mu: [Float] = [0, 0.5, -1.2, 2], logVariance: [Float] = [0, -0.7, 0.4, -2]
        let moments = Tensor(shape: [1, 2, 2, 2], data: mu + logVariance)
        var closed = 0.0
        for j in 0..<4 {
            let m = Double(mu[j]), v = Double(logVariance[j])
            closed += 0.5 * (m * m + exp(v) - 1 - v)
        }
        XCTAssertEqual(Double(diagonalGaussianKL(moments).scalar), closed, accuracy: 1e-5)
        XCTAssertEqual(diagonalGaussianKL(Tensor(zeros: [3, 4, 2, 2])).scalar, 0, "KL(N(0,1) ‖ N(0,1)) = 0")
        // Monte Carlo: E_q[log q(z) − log p(z)] over draws z = μ + σε from the sampling op itself.
        var stream = RandomStream(seed: 12)
        var total = 0.0
        let draws = 50_000
        for _ in 0..<draws {
            let eps = (0..<4).map { _ in stream.normal() }
            let z = diagonalGaussianSample(moments, noise: eps).data
            for j in 0..<4 {
                let v = Double(logVariance[j]), e = Double(eps[j]), zj = Double(z[j])
                total += (-0.5 * v - 0.5 * e * e) - (-0.5 * zj * zj)
            }
        }
        XCTAssertEqual(total / Double(draws), closed, accuracy: 0.03 * closed)
        // Batch mean: two copies of the same image give the same per-image KL.
        let twice = Tensor(shape: [2, 2, 2, 2], data: moments.data + moments.data)
        XCTAssertEqual(diagonalGaussianKL(twice).scalar, diagonalGaussianKL(moments).scalar, accuracy: 1e-6)
        // Clamped log-variance: e^20 at most, no infinity.
        XCTAssert(diagonalGaussianKL(Tensor(shape: [1, 2, 1, 1], data: [0, 500])).scalar.isFinite)
    }

    func testLatentRoundTripShapes() throws {
        for (size, channels, factor, latent) in [(16, 1, 4, 4), (16, 3, 4, 2), (32, 1, 8, 4), (8, 1, 2, 3)] {
            let config = tinyVAEConfig(size: size, channels: channels, factor: factor, latent: latent)
            try config.validate()
            var stream = RandomStream(seed: 1)
            let vae = VAE(config, stream: &stream)
            let x = Tensor(randomNormal: [2, channels, size, size], stream: &stream)
            let moments = withNoGrad { vae.encode(x) }
            XCTAssertEqual(moments.shape, [2, 2 * latent, size / factor, size / factor])
            let z = diagonalGaussianSample(moments, noise: [Float](repeating: 0.5, count: moments.count / 2))
            XCTAssertEqual(z.shape, [2, latent, size / factor, size / factor])
            XCTAssertEqual(withNoGrad { vae.decode(z) }.shape, [2, channels, size, size])
            XCTAssertEqual(vae.posteriorMeans(x.data, count: 2).count, 2 * latent * (size / factor) * (size / factor))
            XCTAssertEqual(vae.decodeImages(z.data, count: 2).count, x.count)
            XCTAssertEqual(config.latentShape, [latent, size / factor, size / factor])
        }
        XCTAssertThrowsError(try VAEConfig(imageSize: 18, channelMultipliers: [1, 2, 4]).validate())
        XCTAssertNil(VAEConfig.multipliers(factor: 16))
    }

    func testReconstructionOfATinySetImprovesWithSteps() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeToyDataset(in: root, perClass: 8, size: 16)
        let dataset = try ImageFolderDataset(root: root, imageSize: 16, channels: 1)
        let images = try (0..<dataset.count).flatMap { try dataset.tensorData(at: $0) }
        var config = tinyVAEConfig(size: 16)
        config.baseWidth = 8
        var options = VAETrainingOptions()
        options.learningRate = 2e-3
        options.emaDecay = 0.9
        let trainer = VAETrainer(config: config, options: options, seed: 2)
        func meanPSNR() -> Double {
            let vae = trainer.samplingModel()
            let recon = vae.decodeImages(vae.posteriorMeans(images, count: dataset.count), count: dataset.count)
            return peakSignalToNoise(images, recon)
        }
        let before = meanPSNR()
        var firstLoss: Float = 0, lastLoss: Float = 0
        for step in 0..<120 {
            let indices = batchIndices(step: step, batchSize: 8, datasetCount: dataset.count, seed: 1)
            let (batch, _) = try loadBatch(dataset, indices: indices)
            var stream = RandomStream(seed: 1).split(UInt64(step))
            let values = trainer.step(x: batch, stream: &stream)
            if step == 0 { firstLoss = values[1] }
            lastLoss = values[1]
        }
        let after = meanPSNR()
        XCTAssertLessThan(lastLoss, 0.5 * firstLoss, "L1 reconstruction loss should halve")
        XCTAssertGreaterThan(after, before + 6, "PSNR \(before) → \(after) dB")
        XCTAssertGreaterThan(trainer.latentScale(), 0)
    }

    func testSSIMAndPSNRProperties() {
        var stream = RandomStream(seed: 3)
        let a = (0..<256).map { _ in stream.uniform(-1, 1) }
        XCTAssertEqual(structuralSimilarity(a, a, channels: 1, size: 16), 1, accuracy: 1e-9)
        let noisy = a.map { min(1, max(-1, $0 + 0.2 * stream.normal())) }
        let ssim = structuralSimilarity(a, noisy, channels: 1, size: 16)
        XCTAssertLessThan(ssim, 0.95)
        XCTAssertGreaterThan(ssim, 0)
        // A constant offset of 0.1 on [−1, 1] is 0.05 on [0, 1]: PSNR = −20·log10(0.05) = 26.02 dB.
        XCTAssertEqual(peakSignalToNoise(a, a.map { $0 + 0.1 }), 26.0206, accuracy: 1e-3)
    }
}

/// VAE runs and latent diffusion through the driver, the loader, generate, inpaint, reconstruct.
final class LatentDiffusionTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws {
        root = try makeTemporaryDirectory()
        try makeToyDataset(in: root.appendingPathComponent("data"), perClass: 6, size: 16)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func vaeRequest(steps: Int) -> TrainingRequest {
        var r = TrainingRequest(data: root.appendingPathComponent("data").path)
        r.imageSize = 16; r.steps = steps; r.batchSize = 4; r.seed = 5; r.width = 8
        r.downsamplingFactor = 2; r.latentChannels = 4; r.checkpointEvery = 2; r.sampleEvery = 100
        return r
    }

    func trainTinyVAE(steps: Int = 4, at name: String = "vae") throws -> URL {
        let out = root.appendingPathComponent(name)
        try trainVAE(vaeRequest(steps: steps), out: out, resume: false, progress: .none)
        return out
    }

    func testVAERunResumesExactlyRecordsItsScaleAndSamplesItsPrior() throws {
        let straight = try trainTinyVAE(steps: 4, at: "straight")
        let split = root.appendingPathComponent("split")
        try trainVAE(vaeRequest(steps: 2), out: split, resume: false, progress: .none)
        try trainVAE(vaeRequest(steps: 4), out: split, resume: true, progress: .none)
        let a = try readSafetensors(at: RunFolder(straight).latestCheckpoint), b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]!.values, name) }
        let model = try readSafetensors(at: RunFolder(straight).model)
        XCTAssertEqual(model.metadata[CheckpointKey.kind], "vae")
        let scale = try XCTUnwrap(model.metadata[latentScaleKey].flatMap { Float($0) })
        XCTAssert(scale.isFinite && scale > 0)
        guard case .vae(let vae, let loadedScale) = try loadModel(from: RunFolder(straight).model) else { return XCTFail("not a VAE") }
        XCTAssertEqual(loadedScale, scale)
        // The stored scale is 1/std of the sampling weights' latents over the (8-image evenly spaced) data.
        let dataset = try ImageFolderDataset(root: root.appendingPathComponent("data"), imageSize: 16, channels: 1)
        let images = try (0..<dataset.count).flatMap { try dataset.tensorData(at: $0) }
        XCTAssertEqual(latentScaleFactor(vae.posteriorMeans(images, count: dataset.count)), scale, accuracy: 1e-4 * scale)
        // The grid has the inputs above their reconstructions: two rows of 8 tiles.
        let grid = try readImage(at: RunFolder(straight).sampleGrid(step: 4))
        XCTAssertEqual(grid.height, 2 * 16 + 3 * 2)
        // Prior samples: batch size and shards do not change them.
        try assertSamplesIndependentOfBatchAndShards(model: straight.path, tag: "vae")
    }

    func testFineTuningStartsFromTheGivenVAEAndRefusesAnotherConfiguration() throws {
        let start = try trainTinyVAE(steps: 4, at: "start")
        var options = VAETrainingOptions()
        options.learningRate = 1e-9           // one step barely moves the weights
        options.scaleEquivariance = 1
        let tuned = root.appendingPathComponent("tuned")
        try trainVAE(vaeRequest(steps: 1), options: options, out: tuned, resume: false, initialWeights: RunFolder(start).model, progress: .none)
        guard case .vae(let a, _) = try loadModel(from: RunFolder(start).model),
              case .vae(let b, _) = try loadModel(from: RunFolder(tuned).model) else { return XCTFail("not VAEs") }
        for (x, y) in zip(a.namedTensors(), b.namedTensors()) {
            for (u, v) in zip(x.tensor.data, y.tensor.data) { XCTAssertEqual(u, v, accuracy: 1e-5, x.name) }
        }
        let saved = try readSafetensors(at: RunFolder(tuned).latestCheckpoint)
        XCTAssert(saved.metadata[VAETrainer.optionsKey]?.contains("\"scaleEquivariance\":1") == true)
        var wider = vaeRequest(steps: 1)
        wider.width = 16
        assertThrows(try trainVAE(wider, out: root.appendingPathComponent("wider"), resume: false,
                                  initialWeights: RunFolder(start).model, progress: .none), containing: "--init-from")
    }

    /// Latent denoising with a frozen encoder: the encoder's weights (so the latent space and the
    /// stored scale) stay bit for bit, the decoder learns, and the settings are recorded.
    func testDecoderOnlyLatentDenoisingKeepsTheLatentSpace() throws {
        let start = try trainTinyVAE(steps: 4, at: "start")
        var options = VAETrainingOptions()
        options.decoderNoise = 0.5
        options.freezeEncoder = true
        options.learningRate = 1e-2
        let tuned = root.appendingPathComponent("denoising")
        try trainVAE(vaeRequest(steps: 3), options: options, out: tuned, resume: false, initialWeights: RunFolder(start).model, progress: .none)
        guard case .vae(let a, let scaleA) = try loadModel(from: RunFolder(start).model),
              case .vae(let b, let scaleB) = try loadModel(from: RunFolder(tuned).model) else { return XCTFail("not VAEs") }
        XCTAssertEqual(scaleA, scaleB)
        for (x, y) in zip(a.encoder.namedTensors(), b.encoder.namedTensors()) { XCTAssert(x.tensor.data == y.tensor.data, "encoder \(x.name) changed") }
        let moved = zip(a.decoder.namedTensors(), b.decoder.namedTensors()).filter { $0.tensor.data != $1.tensor.data }.count
        XCTAssertGreaterThan(moved, a.decoder.namedTensors().count / 2, "the decoder trained")
        let saved = try readSafetensors(at: RunFolder(tuned).latestCheckpoint)
        let recorded = try XCTUnwrap(saved.metadata[VAETrainer.optionsKey])
        XCTAssert(recorded.contains("\"decoderNoise\":0.5") && recorded.contains("\"freezeEncoder\":true"), recorded)
        // Old option records (before these settings) still decode, with both off.
        let old = try JSONDecoder().decode(VAETrainingOptions.self, from: Data(#"{"learningRate":0.001,"reconstruction":"l1","klWeight":1e-6,"emaDecay":0.999}"#.utf8))
        XCTAssertEqual(old.decoderNoise, 0)
        XCTAssertFalse(old.freezeEncoder)
        // The noise: per image σ·s·ε with σ ≤ decoderNoise, s the latents' std.
        var stream = RandomStream(seed: 3)
        let trainer = VAETrainer(config: b.config, options: options, seed: 1)
        let z = randomTensor([6, 4, 8, 8], seed: 4, scale: 2)
        let noisy = trainer.latentDenoisingInput(z, stream: &stream)
        let per = z.count / 6
        var stds: [Double] = []
        for i in 0..<6 {
            let d = (i * per..<(i + 1) * per).map { Double(noisy.data[$0] - z.data[$0]) }
            stds.append((d.map { $0 * $0 }.reduce(0, +) / Double(per)).squareRoot())
        }
        XCTAssert(stds.allSatisfy { $0 <= 0.5 * 2 * 1.25 }, "\(stds)")
        XCTAssertGreaterThan(stds.max()! - stds.min()!, 0.05, "σ varies per image: \(stds)")
    }

    func testReconstructionReportsLatentStatisticsAndLatentNoiseCostsPixels() throws {
        let run = try trainTinyVAE(steps: 4)
        let data = root.appendingPathComponent("data")
        let clean = try reconstructFolder(model: run.path, input: data, output: root.appendingPathComponent("clean"), progress: .none)
        // The scale makes the (8-image) data's latents unit-variance: the channels' pooled variance is 1.
        XCTAssertEqual(clean.latentChannels.count, 4)
        let grandMean = clean.latentChannels.map(\.mean).reduce(0, +) / 4
        let pooled = clean.latentChannels.map { $0.std * $0.std + ($0.mean - grandMean) * ($0.mean - grandMean) }.reduce(0, +) / 4
        XCTAssertEqual(pooled, 1, accuracy: 2e-3)
        let noisy = try reconstructFolder(model: run.path, input: data, output: root.appendingPathComponent("noisy"),
                                          latentNoise: 1, seed: 3, progress: .none)
        // The noise is drawn per image from the seed: same seed, same files; another seed, other files.
        let again = try reconstructFolder(model: run.path, input: data, output: root.appendingPathComponent("again"),
                                          latentNoise: 1, seed: 3, progress: .none)
        let other = try reconstructFolder(model: run.path, input: data, output: root.appendingPathComponent("other"),
                                          latentNoise: 1, seed: 4, progress: .none)
        func bytes(_ report: ReconstructionReport) throws -> [Data] { try report.files.map { try Data(contentsOf: $0.output) } }
        XCTAssertEqual(try bytes(noisy), try bytes(again))
        XCTAssertNotEqual(try bytes(noisy), try bytes(other))
        XCTAssertNotEqual(try bytes(noisy), try bytes(clean))
        assertThrows(try reconstructFolder(model: run.path, input: data, output: root.appendingPathComponent("bad"),
                                           latentNoise: -1, progress: .none), containing: "--latent-noise")
    }

    func assertSamplesIndependentOfBatchAndShards(model: String, tag: String, sampling: SamplerSettings = SamplerSettings(),
                                                  file: StaticString = #filePath, line: UInt = #line) throws {
        var whole = GenerationRequest(model: model, count: 5, out: root.appendingPathComponent("\(tag)-whole"))
        whole.batchSize = 5
        whole.sampling = sampling
        try generateImages(whole, progress: .none)
        for k in 0..<2 {
            var part = GenerationRequest(model: model, count: 5, out: root.appendingPathComponent("\(tag)-shards"))
            part.batchSize = 1
            part.shard = Shard(index: k, count: 2)
            part.sampling = sampling
            try generateImages(part, progress: .none)
        }
        // The same images up to the one documented limit (README, Reproducibility): a batched GEMM
        // can round an image's floats differently in the last bit, which moves a pixel that sits on
        // a rounding boundary by one grey level. A wrong stream, class or sample order changes far more.
        var differing = 0, pixels = 0
        for i in 0..<5 {
            let a = try readImage(at: whole.out.appendingPathComponent(sampleFileName(i)))
            let b = try readImage(at: root.appendingPathComponent("\(tag)-shards").appendingPathComponent(sampleFileName(i)))
            XCTAssertEqual([a.width, a.height, a.channels, a.bitDepth], [b.width, b.height, b.channels, b.bitDepth], file: file, line: line)
            for (u, v) in zip(a.samples, b.samples) where u != v {
                differing += 1
                XCTAssertLessThanOrEqual(abs(Int(u) - Int(v)), 1, "\(tag) sample \(i): a pixel differs by more than one level", file: file, line: line)
            }
            pixels += a.samples.count
        }
        XCTAssertLessThanOrEqual(differing, max(2, pixels / 500), "\(tag): \(differing) of \(pixels) pixels differ", file: file, line: line)
    }

    func latentRequest(steps: Int, autoencoder: URL) -> TrainingRequest {
        var r = TrainingRequest(data: root.appendingPathComponent("data").path)
        r.imageSize = 16; r.steps = steps; r.batchSize = 4; r.seed = 9; r.width = 8; r.conditional = true
        r.autoencoder = autoencoder.path; r.checkpointEvery = 2; r.sampleEvery = 100
        return r
    }

    func testLatentDiffusionIsSelfContainedDeterministicAndResumes() throws {
        let vaeRun = try trainTinyVAE()
        let run = root.appendingPathComponent("ldm")
        try trainDiffusion(latentRequest(steps: 4, autoencoder: vaeRun), out: run, resume: false, progress: .none, gridSteps: 2)
        let file = try readSafetensors(at: RunFolder(run).model)
        XCTAssertEqual(file.metadata[CheckpointKey.kind], "latent-diffusion")
        XCTAssert(file.tensors.keys.contains("vae.dec.out.2.weight") && file.tensors.keys.contains("U.inp.weight"))
        guard case .latentDiffusion(let model) = try loadModel(from: RunFolder(run).model) else { return XCTFail("not latent") }
        XCTAssertEqual(model.config.unet.channels, 4)
        XCTAssertEqual(model.config.unet.imageSize, 8)
        XCTAssertEqual(model.config.classNames, ["bright", "dark"])
        XCTAssertEqual(model.sampler.sampleShape, [4, 8, 8])

        // Images decode the sampler's latents as they are: latents are not bounded to [−1, 1].
        var latentSettings = SamplerSettings()
        latentSettings.kind = .dpm; latentSettings.steps = 3
        latentSettings.clipSample = false; latentSettings.clampOutput = false
        let latents = model.sampler.sample(indices: [0, 1, 2], labels: [0, 1, 0], seed: 4, settings: latentSettings)
        XCTAssert(latents.contains { abs($0) > 1 }, "the test needs latents outside [−1, 1]")
        var imageSettings = SamplerSettings()
        imageSettings.kind = .dpm; imageSettings.steps = 3
        XCTAssertEqual(model.sample(indices: [0, 1, 2], labels: [0, 1, 0], seed: 4, settings: imageSettings), model.decode(latents, count: 3))

        // Resume: 2 + 2 steps equal 4 straight.
        let split = root.appendingPathComponent("ldm-split")
        try trainDiffusion(latentRequest(steps: 2, autoencoder: vaeRun), out: split, resume: false, progress: .none, gridSteps: 2)
        try trainDiffusion(latentRequest(steps: 4, autoencoder: vaeRun), out: split, resume: true, progress: .none, gridSteps: 2)
        let a = try readSafetensors(at: RunFolder(run).latestCheckpoint), b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]?.values, name) }

        // The model file samples on its own: the VAE run is gone.
        try FileManager.default.removeItem(at: vaeRun)
        var settings = SamplerSettings()
        settings.kind = .dpm
        settings.steps = 3
        settings.guidance = 2
        try assertSamplesIndependentOfBatchAndShards(model: run.path, tag: "ldm", sampling: settings)
        let manifest = try String(contentsOf: root.appendingPathComponent("ldm-whole/manifest.jsonl"), encoding: .utf8)
        XCTAssert(manifest.contains("\"sampler\":\"dpm\"") && manifest.contains("latent-diffusion"), manifest)
        // Resuming a run whose autoencoder file is gone fails, naming the file.
        XCTAssertThrowsError(try trainDiffusion(latentRequest(steps: 6, autoencoder: vaeRun), out: run, resume: true, progress: .none)) {
            XCTAssert("\($0)".contains(vaeRun.path), "\($0)")
        }

        // Inpainting in latent space keeps every unmasked pixel.
        let image = root.appendingPathComponent("data/bright/bright_00.png")
        var maskPixels = [Float](repeating: -1, count: 256)
        for y in 4..<9 { for x in 5..<11 { maskPixels[y * 16 + x] = 1 } }
        let maskURL = root.appendingPathComponent("mask.png")
        try writePNG(Image(floatCHW: maskPixels, width: 16, height: 16, channels: 1, bitDepth: 8), to: maskURL)
        var request = InpaintRequest(model: run.path, image: image, mask: maskURL, out: root.appendingPathComponent("painted.png"))
        request.className = "dark"
        request.sampling = settings
        try inpaint(request)
        let original = try readImage(at: image), painted = try readImage(at: request.out)
        var changed = false
        for y in 0..<16 { for x in 0..<16 {
            if maskPixels[y * 16 + x] < 0 { XCTAssertEqual(original[x, y, 0], painted[x, y, 0], "(\(x), \(y))") }
            else if original[x, y, 0] != painted[x, y, 0] { changed = true }
        } }
        XCTAssert(changed, "the masked region was not regenerated")

        // Reconstruction through the embedded VAE writes every image with finite PSNR.
        let report = try reconstructFolder(model: run.path, input: root.appendingPathComponent("data"),
                                           output: root.appendingPathComponent("recon"), progress: .none)
        XCTAssertEqual(report.files.count, 12)
        XCTAssert(report.meanPSNR.isFinite && report.meanSSIM <= 1)
        XCTAssert(FileManager.default.fileExists(atPath: root.appendingPathComponent("recon/dark/dark_03.png").path))
    }

    func testChannelNormalisedLatentsHaveZeroMeanUnitStdPerChannelAndDecodeBack() throws {
        let vaeRun = try trainTinyVAE()
        let run = root.appendingPathComponent("ldm-channel")
        var request = latentRequest(steps: 2, autoencoder: vaeRun)
        request.latentNormalisation = .channel
        try trainDiffusion(request, out: run, resume: false, progress: .none, gridSteps: 2)
        guard case .latentDiffusion(let model) = try loadModel(from: RunFolder(run).model) else { return XCTFail("not latent") }
        let shift = try XCTUnwrap(model.config.latentChannelShift), scale = try XCTUnwrap(model.config.latentChannelScale)
        XCTAssertEqual(shift.count, 4)
        // The 12 training images (all of them measured): each channel at mean 0, std 1 in diffusion space.
        let dataset = try ImageFolderDataset(root: root.appendingPathComponent("data"), imageSize: 16, channels: 1)
        let images = try (0..<dataset.count).flatMap { try dataset.tensorData(at: $0) }
        let z = model.encode(images, count: dataset.count)
        let plane = model.config.autoencoder.latentSize * model.config.autoencoder.latentSize
        for c in 0..<4 {
            var values: [Double] = []
            for n in 0..<dataset.count { for p in 0..<plane { values.append(Double(z[(n * 4 + c) * plane + p])) } }
            let mean: Double = values.reduce(0, +) / Double(values.count)
            var squares = 0.0
            for v in values { squares += (v - mean) * (v - mean) }
            let std = (squares / Double(values.count - 1)).squareRoot()
            XCTAssertEqual(mean, 0, accuracy: 1e-4, "channel \(c)")
            XCTAssertEqual(std, 1, accuracy: 1e-3, "channel \(c)")
        }
        // Decoding inverts the normalisation: the same pixels as decoding the raw posterior means.
        let raw = model.vae.decodeImages(model.vae.posteriorMeans(images, count: dataset.count), count: dataset.count)
        let viaDiffusionSpace = model.decode(z, count: dataset.count)
        XCTAssertLessThan(relativeError(viaDiffusionSpace, raw), 1e-4)
        // Both arrays or none, one entry per latent channel, positive scales.
        var broken = model.config
        broken.latentChannelScale = Array(scale.prefix(3))
        XCTAssertThrowsError(try broken.validate())
        broken.latentChannelScale = scale.map { -$0 }
        XCTAssertThrowsError(try broken.validate())
        broken.latentChannelScale = nil
        XCTAssertThrowsError(try broken.validate())
        // A config saved before the option has neither and normalises with the global scale.
        broken.latentChannelShift = nil
        let old = try JSONDecoder().decode(LatentDiffusionConfig.self, from: JSONEncoder().encode(broken))
        XCTAssertNil(old.latentChannelShift)
        XCTAssertEqual(old.normalise([2]), [2 * old.latentScale])
    }

    func testCentredLatentsHaveZeroChannelMeansAndKeepTheGlobalScale() throws {
        let vaeRun = try trainTinyVAE()
        let run = root.appendingPathComponent("ldm-centred")
        var request = latentRequest(steps: 2, autoencoder: vaeRun)
        request.latentNormalisation = .centred
        try trainDiffusion(request, out: run, resume: false, progress: .none, gridSteps: 2)
        guard case .latentDiffusion(let model) = try loadModel(from: RunFolder(run).model) else { return XCTFail("not latent") }
        let scale = try XCTUnwrap(model.config.latentChannelScale)
        XCTAssertEqual(scale, [Float](repeating: model.config.latentScale, count: 4), "one global factor on every channel")
        let dataset = try ImageFolderDataset(root: root.appendingPathComponent("data"), imageSize: 16, channels: 1)
        let images = try (0..<dataset.count).flatMap { try dataset.tensorData(at: $0) }
        let raw = model.vae.posteriorMeans(images, count: dataset.count)
        let z = model.encode(images, count: dataset.count)
        let plane = model.config.autoencoder.latentSize * model.config.autoencoder.latentSize
        var someChannelWasOffCentre = false
        for c in 0..<4 {
            var rawValues: [Double] = [], values: [Double] = []
            for n in 0..<dataset.count { for p in 0..<plane {
                rawValues.append(Double(raw[(n * 4 + c) * plane + p])); values.append(Double(z[(n * 4 + c) * plane + p]))
            } }
            let mean = values.reduce(0, +) / Double(values.count), rawMean = rawValues.reduce(0, +) / Double(rawValues.count)
            XCTAssertEqual(mean, 0, accuracy: 1e-4, "channel \(c)")
            if abs(rawMean * Double(model.config.latentScale)) > 0.01 { someChannelWasOffCentre = true }
            // Only shifted: each value is (raw − channel mean) × the global scale.
            for (v, r) in zip(values, rawValues) {
                XCTAssertEqual(v, (r - rawMean) * Double(model.config.latentScale), accuracy: 1e-3 * max(1, abs(v)))
            }
        }
        XCTAssert(someChannelWasOffCentre, "the tiny VAE's latents should have a channel with a non-zero mean to remove")
        XCTAssertLessThan(relativeError(model.decode(z, count: dataset.count), model.vae.decodeImages(raw, count: dataset.count)), 1e-4)
    }

    func testLatentDiffusionRefusesAMismatchedOrMissingAutoencoder() throws {
        let vaeRun = try trainTinyVAE(steps: 2)
        var wrongSize = latentRequest(steps: 2, autoencoder: vaeRun)
        wrongSize.imageSize = 32
        assertThrows(try trainDiffusion(wrongSize, out: root.appendingPathComponent("a"), resume: false, progress: .none),
                     containing: "16 px")
        var missing = latentRequest(steps: 2, autoencoder: root.appendingPathComponent("nothing"))
        missing.autoencoder = root.appendingPathComponent("nothing").path
        assertThrows(try trainDiffusion(missing, out: root.appendingPathComponent("b"), resume: false, progress: .none),
                     containing: "nothing")
        // A pixel diffusion model is not an autoencoder.
        var pixel = TrainingRequest(data: root.appendingPathComponent("data").path)
        pixel.imageSize = 16; pixel.steps = 1; pixel.batchSize = 2; pixel.width = 8
        try trainDiffusion(pixel, out: root.appendingPathComponent("pixel"), resume: false, progress: .none, gridSteps: 1)
        assertThrows(try trainDiffusion(latentRequest(steps: 2, autoencoder: root.appendingPathComponent("pixel")),
                                              out: root.appendingPathComponent("c"), resume: false, progress: .none),
                     containing: "not a vae model")
        assertThrows(try reconstructFolder(model: root.appendingPathComponent("pixel").path, input: root.appendingPathComponent("data"),
                                           output: root.appendingPathComponent("r"), progress: .none),
                     containing: "not a VAE")
    }

    // MARK: Latent GAN

    func latentGANOptions(extraLayers: Int = 1) -> GANTrainingOptions {
        var options = GANTrainingOptions()
        options.extraLayers = extraLayers
        return options
    }

    func testLatentGANIsSelfContainedNormalisesEachChannelResumesAndSamplesInAnyBatch() throws {
        let vaeRun = try trainTinyVAE()
        let run = root.appendingPathComponent("lgan")
        try trainLatentGAN(latentRequest(steps: 4, autoencoder: vaeRun), options: latentGANOptions(), out: run, resume: false, progress: .none)
        let file = try readSafetensors(at: RunFolder(run).model)
        XCTAssertEqual(file.metadata[CheckpointKey.kind], "latent-gan")
        XCTAssert(file.tensors.keys.contains("vae.dec.out.2.weight") && file.tensors.keys.contains("G.out.weight")
                  && file.tensors.keys.contains("G.extra.0.conv.weight"), "\(file.tensors.keys.sorted())")
        guard case .latentGAN(let model) = try loadModel(from: RunFolder(run).model) else { return XCTFail("not a latent GAN") }
        XCTAssertEqual([model.config.gan.channels, model.config.gan.imageSize], [4, 8])
        XCTAssert(model.config.gan.linearOutput)
        XCTAssertEqual(model.config.classNames, ["bright", "dark"])

        // G and D see every latent channel at mean 0, std 1 over the training images.
        let dataset = try ImageFolderDataset(root: root.appendingPathComponent("data"), imageSize: 16, channels: 1)
        let images = try (0..<dataset.count).flatMap { try dataset.tensorData(at: $0) }
        let z = model.config.normalise(model.vae.posteriorMeans(images, count: dataset.count))
        for c in 0..<4 {
            var values: [Double] = []
            for n in 0..<dataset.count { for p in 0..<64 { values.append(Double(z[(n * 4 + c) * 64 + p])) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
            XCTAssertEqual(mean, 0, accuracy: 1e-4, "channel \(c)")
            XCTAssertEqual(std, 1, accuracy: 1e-3, "channel \(c)")
        }
        // A sample is G's latent, un-normalised and decoded; G's output is not squashed into [−1, 1]
        // (its output conv scaled up so that 4 steps' small outputs reach beyond it).
        let output = try XCTUnwrap(model.generator.output)
        output.weight.data = output.weight.data.map { $0 * 1000 }
        var stream = RandomStream(seed: 4).split(0)
        let latent = withNoGrad { model.generator(Tensor(shape: [1, 100], data: (0..<100).map { _ in stream.normal() }), labels: [1]) }
        XCTAssert(latent.data.contains { abs($0) > 1 }, "the test needs latents outside [−1, 1]")
        XCTAssertEqual(model.images(indices: [0], classes: [1], seed: 4)[0], model.vae.decodeImages(model.config.denormalise(latent.data), count: 1))

        // Resume: 2 + 2 steps equal 4 straight, and a resumed run needs no autoencoder argument in the CLI.
        let split = root.appendingPathComponent("lgan-split")
        try trainLatentGAN(latentRequest(steps: 2, autoencoder: vaeRun), options: latentGANOptions(), out: split, resume: false, progress: .none)
        XCTAssertEqual(runFolderKind(split), .latentGAN)
        try trainLatentGAN(latentRequest(steps: 4, autoencoder: vaeRun), options: latentGANOptions(), out: split, resume: true, progress: .none)
        let a = try readSafetensors(at: RunFolder(run).latestCheckpoint), b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]?.values, name) }

        // The model file samples on its own: the VAE run is gone.
        try FileManager.default.removeItem(at: vaeRun)
        try assertSamplesIndependentOfBatchAndShards(model: run.path, tag: "lgan")
        let manifest = try String(contentsOf: root.appendingPathComponent("lgan-whole/manifest.jsonl"), encoding: .utf8)
        XCTAssert(manifest.contains("latent-gan"), manifest)
        assertThrows(try trainLatentGAN(latentRequest(steps: 6, autoencoder: vaeRun), options: latentGANOptions(), out: run, resume: true, progress: .none),
                     containing: vaeRun.path)
    }

    func testLatentGANRefusesAMismatchedAutoencoderAndOptionsItCannotHonour() throws {
        let vaeRun = try trainTinyVAE(steps: 2)
        var wrongSize = latentRequest(steps: 2, autoencoder: vaeRun)
        wrongSize.imageSize = 32
        assertThrows(try trainLatentGAN(wrongSize, out: root.appendingPathComponent("a"), resume: false, progress: .none), containing: "16 px")
        var spectral = latentGANOptions()
        spectral.spectralNorm = true
        assertThrows(try trainLatentGAN(latentRequest(steps: 2, autoencoder: vaeRun), options: spectral, out: root.appendingPathComponent("b"),
                                        resume: false, progress: .none), containing: "--extra-layers")
        // A latent GAN's config must match its VAE and keep G's output linear.
        try trainLatentGAN(latentRequest(steps: 1, autoencoder: vaeRun), options: latentGANOptions(extraLayers: 0),
                           out: root.appendingPathComponent("c"), resume: false, progress: .none)
        guard case .latentGAN(let model) = try loadModel(from: RunFolder(root.appendingPathComponent("c")).model) else { return XCTFail("not a latent GAN") }
        var broken = model.config
        broken.gan.linearOutput = false
        XCTAssertThrowsError(try broken.validate())
        broken = model.config
        broken.latentChannelScale[0] = 0
        XCTAssertThrowsError(try broken.validate())
        broken = model.config
        broken.gan.channels = 3
        XCTAssertThrowsError(try broken.validate())
        // A pixel GAN may not be 8 px: only latents are.
        var pixel = GANConfig(imageSize: 8, channels: 1)
        XCTAssertThrowsError(try pixel.validate())
        pixel.linearOutput = true
        XCTAssertNoThrow(try pixel.validate())
    }
}
