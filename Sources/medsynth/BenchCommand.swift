import ArgumentParser
import Foundation
import Core
import Engine
import Generators

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the reference workloads (one JSON line each, the same workloads and format as the PyTorch reference benchmark) or the conv kernels.",
        discussion: """
        `medsynth bench` prints one JSON line per workload: dcgan64_train_step_b64, dcgan64_generate_b256,
        unet64_train_step_b32, unet64_forward_b16, and the latent ones: latent16x4_train_step_b32,
        latent16x4_forward_b16, latent_dpm20_sample_b16 (whole images, VAE decode included), vae64_train_step_b32,
        latent8x8_train_step_b32 (8×8×16, the shipped factor-8 VAE's latents).
        `medsynth bench kernels` prints forward/backward GFLOP/s
        of every conv layer shape of the reference architectures next to cblas_sgemm's rate.
        MEDSYNTH_CONV_ALGO=im2col|winograd2|winograd3|winograd4|dense forces a convolution algorithm where it applies;
        MEDSYNTH_BENCH_CLOCK=cpu times with the process CPU clock (use with --threads 1 on a shared machine).
        """)

    @Argument(help: "models (default) or kernels") var what: String = "models"
    @Option(help: "Threads for BLAS and medsynth's loops (default: the CPUs this process may use: affinity mask and cgroup quota).") var threads: Int?
    @Option(help: "Timed repetitions per workload.") var repetitions: Int = 5
    @Option(help: "Only these workloads (comma-separated); with kernels, the layers whose name contains one of them.") var only: String?
    @Flag(help: "kernels: also time every 3×3 stride-1 and 4×4 stride-2 layer with each algorithm forced (im2col, winograd2, winograd3 (4×4 stride 2 only), winograd4), with dX and dW timed on their own.")
    var compareAlgorithms = false

    func validate() throws {
        guard ["models", "kernels"].contains(what) else { throw ValidationError("bench takes 'models' or 'kernels', got '\(what)'") }
        guard repetitions > 0 else { throw ValidationError("--repetitions must be positive") }
    }

    func run() throws {
        if let threads { Parallel.setThreads(threads) }
        FileHandle.standardError.write(Data("bench: \(Parallel.blasDescription)\n".utf8))
        FileHandle.standardError.write(Data("bench: \(AvailableProcessors.description), \(Parallel.workers) thread\(Parallel.workers == 1 ? "" : "s")\n".utf8))
        if what == "kernels" {
            let layers = only.map { $0.split(separator: ",").map(String.init) }
            let (sgemmRate, rows) = runKernelBenchmarks(repetitions: repetitions, compareAlgorithms: compareAlgorithms, only: layers)
            print(String(format: "cblas_sgemm 1024^3: %.1f GFLOP/s (%d threads); GFLOP/s count direct-convolution FLOPs", sgemmRate, Parallel.blasThreads))
            print("layer".padding(toLength: 34, withPad: " ", startingAt: 0) + "  " + "algorithm".padding(toLength: 40, withPad: " ", startingAt: 0)
                  + "  fwd GFLOP/s  (% sgemm)   bwd GFLOP/s  (% sgemm)" + (compareAlgorithms ? "   dX GFLOP/s   dW GFLOP/s" : ""))
            for row in rows {
                let label = row.isChosen ? row.algorithm : "  forced " + row.algorithm
                let split = row.inputGradientGflops.isNaN ? "" : String(format: "   %10.1f   %10.1f", row.inputGradientGflops, row.weightGradientGflops)
                print(row.name.padding(toLength: 34, withPad: " ", startingAt: 0) + "  " + label.padding(toLength: 40, withPad: " ", startingAt: 0)
                      + String(format: "  %10.1f  (%5.1f%%)   %10.1f  (%5.1f%%)", row.forwardGflops, 100 * row.forwardGflops / sgemmRate,
                               row.backwardGflops, 100 * row.backwardGflops / sgemmRate) + split)
            }
            return
        }
        let filter = only.map { Set($0.split(separator: ",").map(String.init)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let results = runModelBenchmarks(only: filter, repetitions: repetitions) { name in
            FileHandle.standardError.write(Data("bench: \(name)...\n".utf8))
        }
        for result in results { print(String(decoding: try encoder.encode(result), as: UTF8.self)) }
        if Profiler.isEnabled { FileHandle.standardError.write(Data("time per op (MEDSYNTH_PROFILE=1):\n\(Profiler.report())\n".utf8)) }
    }
}
