import Foundation
import Core
import Engine
import Layers

// MARK: - Benchmarks: the reference workloads of ../shared/reference (ARCHITECTURES.md), timed
// exactly as torch_reference.py times them (warm-up runs, then the mean of timed repetitions).

public struct BenchmarkResult: Codable {
    public var workload: String
    public var seconds: Double
    public var images_per_s: Double
    public var threads: Int
    public var ddim50_images_per_s: Double?
    public var gflops: Double?
    public var note: String?
}

/// MEDSYNTH_BENCH_CLOCK=cpu times with the process's CPU clock instead of the wall clock. On a
/// machine shared with other jobs, `--threads 1` then measures the work an algorithm does rather
/// than how long it waited for a core (with more threads it also counts time spent spinning).
let benchmarkUsesCPUClock = ProcessInfo.processInfo.environment["MEDSYNTH_BENCH_CLOCK"] == "cpu"

func benchmarkNanoseconds() -> UInt64 {
    guard benchmarkUsesCPUClock else { return DispatchTime.now().uptimeNanoseconds }
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func timeIt(warmup: Int, repetitions: Int, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    let start = benchmarkNanoseconds()
    for _ in 0..<repetitions { body() }
    return Double(benchmarkNanoseconds() - start) / 1e9 / Double(repetitions)
}

/// Cosine ᾱ(t) for T steps, as the reference's `cosine_alpha_bar` (s = 0.008, clamped at 1e-5).
func referenceCosineAlphaBar(_ steps: Int) -> [Float] {
    let s = 0.008
    func f(_ t: Double) -> Double { let c = cos((t / Double(steps) + s) / (1 + s) * Double.pi / 2); return c * c }
    return (1...steps).map { Float(max(f(Double($0)) / f(0), 1e-5)) }
}

/// The four model workloads; `only` filters by name.
public func runModelBenchmarks(only: Set<String>? = nil, repetitions: Int = 5, progress: (String) -> Void = { _ in }) -> [BenchmarkResult] {
    var results: [BenchmarkResult] = []
    var stream = RandomStream(seed: 0)
    let threads = Parallel.blasThreads
    func wanted(_ name: String) -> Bool { only == nil || only!.contains(name) }

    if wanted("dcgan64_train_step_b64") || wanted("dcgan64_generate_b256") {
        // The reference DCGAN step (BatchNorm D, one learning rate), comparable with earlier benchmarks.
        var options = GANTrainingOptions.legacy
        options.augment = false
        let trainer = GANTrainer(config: GANConfig(), options: options, seed: 0)
        if wanted("dcgan64_train_step_b64") {
            progress("dcgan64_train_step_b64")
            var values = [Float](repeating: 0, count: 64 * 64 * 64)
            values.withUnsafeMutableBufferPointer { stream.fillUniform($0, -1, 1) }
            let real = Tensor(shape: [64, 1, 64, 64], data: values)
            let s = timeIt(warmup: 2, repetitions: repetitions) { _ = trainer.step(real: real, labels: nil, stream: &stream) }
            results.append(BenchmarkResult(workload: "dcgan64_train_step_b64", seconds: s, images_per_s: 64 / s, threads: threads))
        }
        if wanted("dcgan64_generate_b256") {
            progress("dcgan64_generate_b256")
            let g = trainer.generator
            g.setTraining(false)
            let s = timeIt(warmup: 1, repetitions: repetitions) { withNoGrad { _ = g(trainer.latents(256, stream: &stream)) } }
            results.append(BenchmarkResult(workload: "dcgan64_generate_b256", seconds: s, images_per_s: 256 / s, threads: threads))
        }
    }
    if wanted("unet64_train_step_b32") || wanted("unet64_forward_b16") {
        let unet = UNet(UNetConfig(numClasses: 2), stream: &stream)
        if wanted("unet64_train_step_b32") {
            progress("unet64_train_step_b32")
            let optimizer = Adam.adamW(unet.parameters(), learningRate: 2e-4)
            let alphaBar = referenceCosineAlphaBar(1000)
            var x0 = [Float](repeating: 0, count: 32 * 64 * 64)
            x0.withUnsafeMutableBufferPointer { stream.fillUniform($0, -1, 1) }
            let s = timeIt(warmup: 2, repetitions: repetitions) {
                let t = (0..<32).map { _ in stream.int(below: 1000) }
                let noise = Tensor(randomNormal: [32, 1, 64, 64], stream: &stream)
                var xt = [Float](repeating: 0, count: x0.count)
                for i in 0..<32 {
                    let a = alphaBar[t[i]], sa = a.squareRoot(), sn = (1 - a).squareRoot()
                    for j in i * 4096..<(i + 1) * 4096 { xt[j] = sa * x0[j] + sn * noise.data[j] }
                }
                let y = (0..<32).map { _ in stream.int(below: 3) }
                unet.zeroGrad()
                let loss = mseLoss(unet(Tensor(shape: [32, 1, 64, 64], data: xt), timesteps: t, labels: y), noise)
                loss.backward()
                optimizer.update()
            }
            results.append(BenchmarkResult(workload: "unet64_train_step_b32", seconds: s, images_per_s: 32 / s, threads: threads))
        }
        if wanted("unet64_forward_b16") {
            progress("unet64_forward_b16")
            let x = Tensor(randomNormal: [16, 1, 64, 64], stream: &stream)
            let t = [Int](repeating: 500, count: 16)
            let s = timeIt(warmup: 1, repetitions: repetitions) { withNoGrad { _ = unet(x, timesteps: t) } }
            results.append(BenchmarkResult(workload: "unet64_forward_b16", seconds: s, images_per_s: 16 / s, threads: threads,
                                           ddim50_images_per_s: 16 / (50 * s)))
        }
    }
    results += runLatentBenchmarks(only: only, repetitions: repetitions, progress: progress)
    return results
}

// MARK: - Kernel benchmark: conv layers of the reference architectures vs sgemm

public struct ConvLayerShape {
    public let name: String
    public let batch, inChannels, outChannels, size, kernel, stride, padding: Int
    public let transposed: Bool
}

/// The distinct conv layers of DCGAN-64 (batch 64) and UNet-S (batch 32).
public let referenceConvLayers: [ConvLayerShape] = [
    ConvLayerShape(name: "dcgan.G1 convT 100→512 1→4", batch: 64, inChannels: 100, outChannels: 512, size: 1, kernel: 4, stride: 1, padding: 0, transposed: true),
    ConvLayerShape(name: "dcgan.G2 convT 512→256 4→8", batch: 64, inChannels: 512, outChannels: 256, size: 4, kernel: 4, stride: 2, padding: 1, transposed: true),
    ConvLayerShape(name: "dcgan.G3 convT 256→128 8→16", batch: 64, inChannels: 256, outChannels: 128, size: 8, kernel: 4, stride: 2, padding: 1, transposed: true),
    ConvLayerShape(name: "dcgan.G4 convT 128→64 16→32", batch: 64, inChannels: 128, outChannels: 64, size: 16, kernel: 4, stride: 2, padding: 1, transposed: true),
    ConvLayerShape(name: "dcgan.G5 convT 64→1 32→64", batch: 64, inChannels: 64, outChannels: 1, size: 32, kernel: 4, stride: 2, padding: 1, transposed: true),
    ConvLayerShape(name: "dcgan.D1 conv 1→64 64→32", batch: 64, inChannels: 1, outChannels: 64, size: 64, kernel: 4, stride: 2, padding: 1, transposed: false),
    ConvLayerShape(name: "dcgan.D2 conv 64→128 32→16", batch: 64, inChannels: 64, outChannels: 128, size: 32, kernel: 4, stride: 2, padding: 1, transposed: false),
    ConvLayerShape(name: "dcgan.D3 conv 128→256 16→8", batch: 64, inChannels: 128, outChannels: 256, size: 16, kernel: 4, stride: 2, padding: 1, transposed: false),
    ConvLayerShape(name: "dcgan.D4 conv 256→512 8→4", batch: 64, inChannels: 256, outChannels: 512, size: 8, kernel: 4, stride: 2, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.64px conv3 1→32 (in)", batch: 32, inChannels: 1, outChannels: 32, size: 64, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.64px conv3 32→1 (out)", batch: 32, inChannels: 32, outChannels: 1, size: 64, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.64px conv3 32→32", batch: 32, inChannels: 32, outChannels: 32, size: 64, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.64px conv3 64→32", batch: 32, inChannels: 64, outChannels: 32, size: 64, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.32px conv3 64→64", batch: 32, inChannels: 64, outChannels: 64, size: 32, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.32px conv3 128→64", batch: 32, inChannels: 128, outChannels: 64, size: 32, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.16px conv3 128→128", batch: 32, inChannels: 128, outChannels: 128, size: 16, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.16px conv3 256→128", batch: 32, inChannels: 256, outChannels: 128, size: 16, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.8px conv3 128→128", batch: 32, inChannels: 128, outChannels: 128, size: 8, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.8px conv3 256→128", batch: 32, inChannels: 256, outChannels: 128, size: 8, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "unet.64→32 down conv3 s2 32→32", batch: 32, inChannels: 32, outChannels: 32, size: 64, kernel: 3, stride: 2, padding: 1, transposed: false),
    // The latent U-Net on the shipped 8×8×16 latents (latent8x8_train_step_b32): its 4-, 2- and 1-pixel levels.
    ConvLayerShape(name: "latent8.4px conv3 64→64", batch: 32, inChannels: 64, outChannels: 64, size: 4, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "latent8.4px conv3 192→64", batch: 32, inChannels: 192, outChannels: 64, size: 4, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "latent8.4px conv3 128→128", batch: 32, inChannels: 128, outChannels: 128, size: 4, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "latent8.2px conv3 128→128", batch: 32, inChannels: 128, outChannels: 128, size: 2, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "latent8.2px conv3 256→128", batch: 32, inChannels: 256, outChannels: 128, size: 2, kernel: 3, stride: 1, padding: 1, transposed: false),
    ConvLayerShape(name: "latent8.2→1 down conv3 s2 128→128", batch: 32, inChannels: 128, outChannels: 128, size: 2, kernel: 3, stride: 2, padding: 1, transposed: false),
]

public struct KernelBenchmarkRow {
    public let name: String
    /// The algorithm timed: the one the engine picks for this shape, or a forced one.
    public let algorithm: String
    /// True when `algorithm` is the one the engine picks without forcing.
    public let isChosen: Bool
    public let forwardGflops: Double
    public let backwardGflops: Double
    /// The input-gradient and weight-gradient passes timed on their own (nan when not timed).
    public var inputGradientGflops: Double = .nan
    public var weightGradientGflops: Double = .nan
    public let flopsPerPass: Double
}

extension ConvLayerShape {
    /// The convolution the layer is (for a transposed one: the convolution whose input gradient it is).
    var convolution: (geometry: ConvGeometry, outChannels: Int) {
        if transposed {
            let out = (size - 1) * stride - 2 * padding + kernel
            return (ConvGeometry(channels: outChannels, height: out, width: out, kernelH: kernel, kernelW: kernel, stride: stride, padding: padding), inChannels)
        }
        return (ConvGeometry(channels: inChannels, height: size, width: size, kernelH: kernel, kernelW: kernel, stride: stride, padding: padding), outChannels)
    }
}

/// The algorithm the engine runs for a layer's forward pass, with its input and weight gradient
/// in parentheses when they differ. A transposed convolution's forward is its convolution's input
/// gradient and the other way round.
func chosenAlgorithmLabel(_ layer: ConvLayerShape) -> String {
    let (g, oc) = layer.convolution
    if layer.transposed && !ConvAlgorithmSelection.strideTwoEligible(g) { return "im2col" }
    func pick(_ pass: ConvAlgorithmSelection.Pass) -> ConvAlgorithm { ConvAlgorithmSelection.algorithm(g, outChannels: oc, pass: pass) }
    let forward = layer.transposed ? pick(.inputGradient) : pick(.forward)
    let input = ConvAlgorithmSelection.strideTwoEligible(g) ? (layer.transposed ? pick(.forward) : pick(.inputGradient)) : forward
    let weight = pick(.weightGradient)
    if forward == input && forward == weight { return forward.rawValue }
    return "\(forward.rawValue) (dX \(input.rawValue), dW \(weight.rawValue))"
}

/// GFLOP/s of forward and backward (data + weight) for each layer, and sgemm's own rate. FLOPs are
/// always those of the direct convolution, so an algorithm doing fewer multiplications (Winograd)
/// can show more than 100 % of sgemm. With `compareAlgorithms`, every layer Winograd applies to
/// (3×3 stride 1, 4×4 stride 2) is also timed with each algorithm forced, back to back in this
/// process, and its input and weight gradients are timed on their own. `only` keeps the layers
/// whose name contains one of its strings.
public func runKernelBenchmarks(repetitions: Int = 3, compareAlgorithms: Bool = false, only: [String]? = nil) -> (sgemmGflops: Double, rows: [KernelBenchmarkRow]) {
    var stream = RandomStream(seed: 1)
    // sgemm at n = 1024 is the yardstick (the reference note quotes n = 512–1024).
    let n = 1024
    let a = [Float](repeating: 0.5, count: n * n), b = a
    var c = a
    let sgemmSeconds = timeIt(warmup: 1, repetitions: repetitions) {
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            sgemm(m: n, n: n, k: n, a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!, ldc: n)
        } } }
    }
    let sgemmGflops = 2 * Double(n * n * n) / sgemmSeconds / 1e9
    var rows: [KernelBenchmarkRow] = []
    if compareAlgorithms {
        // The two ways `sgemm` can use the cores, back to back: 1024³ and the DCGAN chunk-path shapes.
        let saved = Parallel.gemmThreading
        defer { Parallel.gemmThreading = saved }
        for (m, nn, k) in [(1024, 1024, 1024), (256, 4096, 2048), (512, 1024, 4096), (128, 8192, 1024)] {
            let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * nn)
            var c = [Float](repeating: 0, count: m * nn)
            for mode in [Parallel.GEMMThreading.split, .openblas] {
                Parallel.gemmThreading = mode
                let seconds = timeIt(warmup: 1, repetitions: repetitions) {
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        sgemm(m: m, n: nn, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: nn, c: cp.baseAddress!, ldc: nn)
                    } } }
                }
                let rate = 2 * Double(m * nn * k) / seconds / 1e9
                rows.append(KernelBenchmarkRow(name: "sgemm \(m)×\(nn)×\(k)", algorithm: "gemm \(mode.rawValue)", isChosen: mode == saved,
                                               forwardGflops: rate, backwardGflops: .nan, flopsPerPass: 2 * Double(m * nn * k)))
            }
        }
    }
    let savedForced = ConvAlgorithmSelection.forced
    defer { ConvAlgorithmSelection.forced = savedForced }
    for layer in referenceConvLayers {
        if let only, !only.contains(where: { layer.name.contains($0) }) { continue }
        let x = Tensor(randomNormal: [layer.batch, layer.inChannels, layer.size, layer.size], stream: &stream, requiresGrad: true)
        let weightShape = layer.transposed ? [layer.inChannels, layer.outChannels, layer.kernel, layer.kernel]
                                           : [layer.outChannels, layer.inChannels, layer.kernel, layer.kernel]
        let w = Tensor(randomNormal: weightShape, std: 0.05, stream: &stream, requiresGrad: true)
        func forward() -> Tensor {
            layer.transposed ? convTranspose2d(x, weight: w, stride: layer.stride, padding: layer.padding)
                             : conv2d(x, weight: w, stride: layer.stride, padding: layer.padding)
        }
        let candidates = ConvAlgorithm.candidates(layer.convolution.geometry)
        var choices: [ConvAlgorithm?] = [nil]
        if compareAlgorithms && candidates.count > 1 { choices += candidates.map { Optional($0) } }
        for choice in choices {
            ConvAlgorithmSelection.forced = choice ?? savedForced
            let probe = withNoGrad { forward() }
            // Direct-convolution FLOPs: every output (conv) or input (transposed) pixel meets OC·C·K² weights.
            let spatial = layer.transposed ? Double(layer.size * layer.size) : Double(probe.shape[2] * probe.shape[3])
            let flops = 2 * Double(layer.batch) * spatial * Double(layer.inChannels * layer.outChannels * layer.kernel * layer.kernel)
            let forwardSeconds = timeIt(warmup: 1, repetitions: repetitions) { withNoGrad { _ = forward() } }
            let ones = Tensor(filled: 1, shape: probe.shape)
            // The harness's own passes (the product with ones, the sum, their backward and the
            // output's new gradient buffer) are timed on a leaf of the output's shape and taken
            // off, so the backward columns time the convolution's pullback alone: left in, they
            // halved the weight-gradient rate of the 64 px U-Net layers.
            let leaf = Tensor(zeros: probe.shape, requiresGrad: true)
            let harnessSeconds = timeIt(warmup: 1, repetitions: repetitions) { leaf.zeroGrad(); sum(mul(leaf, ones)).backward() }
            func backwardSeconds(input: Bool, weight: Bool) -> Double {
                x.requiresGrad = input; w.requiresGrad = weight
                defer { x.requiresGrad = true; w.requiresGrad = true }
                let total = timeIt(warmup: 1, repetitions: repetitions) {
                    x.zeroGrad(); w.zeroGrad()
                    sum(mul(forward(), ones)).backward()
                }
                return max(total - forwardSeconds - harnessSeconds, 1e-9)
            }
            var row = KernelBenchmarkRow(name: layer.name, algorithm: choice?.rawValue ?? chosenAlgorithmLabel(layer),
                                         isChosen: choice == nil, forwardGflops: flops / forwardSeconds / 1e9,
                                         backwardGflops: 2 * flops / backwardSeconds(input: true, weight: true) / 1e9, flopsPerPass: flops)
            if compareAlgorithms && candidates.count > 1 {
                row.inputGradientGflops = flops / backwardSeconds(input: true, weight: false) / 1e9
                row.weightGradientGflops = flops / backwardSeconds(input: false, weight: true) / 1e9
            }
            rows.append(row)
        }
    }
    return (sgemmGflops, rows)
}
