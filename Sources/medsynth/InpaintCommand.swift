import ArgumentParser
import Foundation
import Core
import Engine
import Generators

struct Inpaint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Regenerate the masked region of a scan with a diffusion model (RePaint-style), e.g. to paint a finding into a healthy slice.")

    @Option(help: "Diffusion run folder or checkpoint.") var model: String
    @Option(help: "The scan (PNG or JPEG).") var image: String
    @Option(help: "Mask of the same size: non-zero pixels are regenerated.") var mask: String
    @Option(help: "Output PNG (same bit depth as the input).") var out: String
    @Option(name: .customLong("class"), help: "Class to paint (conditional models).") var className: String?
    @Option(help: "Seed.") var seed: UInt64 = 0
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        var request = InpaintRequest(model: model, image: URL(fileURLWithPath: image), mask: URL(fileURLWithPath: mask), out: URL(fileURLWithPath: out))
        request.className = className
        request.seed = seed
        request.sampling = sampling.settings
        try inpaint(request, progress: runtime.progress)
        print("wrote \(out)")
    }
}
