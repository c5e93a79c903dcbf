import Foundation
import Core
import Engine
import Layers

// MARK: - Latent workloads of `medsynth bench`: the UNet-S layout on 16×16×4 latents (a 64 px
// slice through a factor-4 VAE), its training step, its forward, whole-image sampling, and the VAE;
// and the training step on 8×8×16 latents (the shipped factor-8 VAE's).

let latentWorkloads: Set<String> = ["latent16x4_train_step_b32", "latent16x4_forward_b16", "latent_dpm20_sample_b16", "vae64_train_step_b32",
                                    "latent8x8_train_step_b32"]

func runLatentBenchmarks(only: Set<String>?, repetitions: Int, progress: (String) -> Void) -> [BenchmarkResult] {
    var results: [BenchmarkResult] = []
    var stream = RandomStream(seed: 0)
    let threads = Parallel.blasThreads
    func wanted(_ name: String) -> Bool { only == nil || only!.contains(name) }
    guard latentWorkloads.contains(where: wanted) else { return [] }
    let vaeConfig = VAEConfig()
    var unetConfig = UNetConfig(imageSize: vaeConfig.latentSize, channels: vaeConfig.latentChannels, numClasses: 2)
    unetConfig.attentionResolutions = [vaeConfig.latentSize / 2]
    let unet = UNet(unetConfig, stream: &stream)
    /// Seconds per training step of batch 32 of `unet` on latents of `latentShape`.
    func trainStepSeconds(_ unet: UNet, latentShape: [Int]) -> Double {
        let shape = [32] + latentShape
        let optimizer = Adam.adamW(unet.parameters(), learningRate: 2e-4)
        let schedule = NoiseSchedule(kind: .cosine, steps: 1000)
        let x0 = Tensor(randomNormal: shape, stream: &stream)
        return timeIt(warmup: 2, repetitions: repetitions) {
            let t = (0..<32).map { _ in stream.int(below: 1000) }
            let noise = Tensor(randomNormal: shape, stream: &stream)
            let xt = schedule.addNoise(x0.data, noise: noise.data, timesteps: t)
            let y = (0..<32).map { _ in stream.int(below: 3) }
            unet.zeroGrad()
            let loss = mseLoss(unet(Tensor(shape: shape, data: xt), timesteps: t, labels: y), noise)
            loss.backward()
            optimizer.update()
        }
    }
    if wanted("latent16x4_train_step_b32") {
        progress("latent16x4_train_step_b32")
        let s = trainStepSeconds(unet, latentShape: vaeConfig.latentShape)
        results.append(BenchmarkResult(workload: "latent16x4_train_step_b32", seconds: s, images_per_s: 32 / s, threads: threads,
                                       note: "UNet-S layout (base 32) on 4×16×16 latents; compare unet64_train_step_b32"))
    }
    if wanted("latent8x8_train_step_b32") {
        progress("latent8x8_train_step_b32")
        let factorEight = VAEConfig(channelMultipliers: VAEConfig.multipliers(factor: 8)!, latentChannels: 16)
        var config = UNetConfig(imageSize: factorEight.latentSize, channels: factorEight.latentChannels, numClasses: 2)
        config.attentionResolutions = [factorEight.latentSize / 2]
        let s = trainStepSeconds(UNet(config, stream: &stream), latentShape: factorEight.latentShape)
        results.append(BenchmarkResult(workload: "latent8x8_train_step_b32", seconds: s, images_per_s: 32 / s, threads: threads,
                                       note: "UNet-S layout (base 32) on 16×8×8 latents (the shipped factor-8 VAE's); compare unet64_train_step_b32"))
    }
    if wanted("latent16x4_forward_b16") {
        progress("latent16x4_forward_b16")
        let x = Tensor(randomNormal: [16] + vaeConfig.latentShape, stream: &stream)
        let t = [Int](repeating: 500, count: 16)
        let s = timeIt(warmup: 1, repetitions: repetitions) { withNoGrad { _ = unet(x, timesteps: t) } }
        results.append(BenchmarkResult(workload: "latent16x4_forward_b16", seconds: s, images_per_s: 16 / s, threads: threads,
                                       ddim50_images_per_s: 16 / (50 * s)))
    }
    if wanted("latent_dpm20_sample_b16") {
        progress("latent_dpm20_sample_b16")
        let vae = VAE(vaeConfig, stream: &stream)
        let config = LatentDiffusionConfig(unet: unetConfig, autoencoder: vaeConfig, latentScale: 1, autoencoderID: "bench",
                                           encoding: .mean, classNames: ["a", "b"])
        let model = LatentDiffusionModel(config: config, sampler: DiffusionSampler(model: unet, schedule: NoiseSchedule(), target: .epsilon,
                                                                                     numClasses: 2, sampleShape: vaeConfig.latentShape), vae: vae)
        var settings = SamplerSettings()
        settings.kind = .dpm
        settings.steps = 20
        let s = timeIt(warmup: 0, repetitions: max(1, repetitions / 2)) {
            _ = model.sample(indices: Array(0..<16), labels: [Int](repeating: 0, count: 16), seed: 1, settings: settings)
        }
        results.append(BenchmarkResult(workload: "latent_dpm20_sample_b16", seconds: s, images_per_s: 16 / s, threads: threads,
                                       note: "DPM-Solver++ 20 steps, guidance 1, VAE decode included (guidance ≠ 1 doubles the U-Net part)"))
    }
    if wanted("vae64_train_step_b32") {
        progress("vae64_train_step_b32")
        let trainer = VAETrainer(config: vaeConfig, options: VAETrainingOptions(), seed: 0)
        var values = [Float](repeating: 0, count: 32 * 64 * 64)
        values.withUnsafeMutableBufferPointer { stream.fillUniform($0, -1, 1) }
        let x = Tensor(shape: [32, 1, 64, 64], data: values)
        let s = timeIt(warmup: 1, repetitions: repetitions) { _ = trainer.step(x: x, stream: &stream) }
        results.append(BenchmarkResult(workload: "vae64_train_step_b32", seconds: s, images_per_s: 32 / s, threads: threads))
    }
    return results
}
