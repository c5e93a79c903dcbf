import ArgumentParser
import Foundation
import Core
import Engine
import Generators

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode and decode a folder of images through a VAE; write the reconstructions and print PSNR / SSIM.",
        discussion: """
        Images are cropped and resized to the VAE's size as for training; each is encoded to its posterior mean
        and decoded. Reconstructions keep the input's relative path (as PNG). PSNR is on the [0, 1] scale;
        SSIM is Wang et al. 2004 (11×11 Gaussian window, σ = 1.5). A latent diffusion model's embedded VAE works too.
        """)

    @Option(help: "A VAE run folder or model file (or a latent diffusion model).") var model: String
    @Argument(help: "Input folder (images, or class subfolders).") var input: String
    @Argument(help: "Output folder for the reconstructions.") var output: String
    @Flag(help: "Print one line per image.") var perImage = false
    @Option(help: "Add Gaussian noise of this std (in units of the latents' std) to every latent before decoding: how much a latent diffusion model's small errors cost in pixels.")
    var latentNoise: Float = 0
    @Option(help: "Seed of the --latent-noise draws.") var seed: UInt64 = 0
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let report = try reconstructFolder(model: model, input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output),
                                           latentNoise: latentNoise, seed: seed, progress: runtime.progress)
        if perImage {
            for file in report.files { print(String(format: "%@  PSNR %.2f dB  SSIM %.4f", file.output.path, file.psnr, file.ssim)) }
        }
        for (c, channel) in report.latentChannels.enumerated() {
            print(String(format: "latent channel %d: mean %+.3f  std %.3f (scaled units)", c, channel.mean, channel.std))
        }
        print(String(format: "reconstructed %d image(s) into %@: mean PSNR %.2f dB, mean SSIM %.4f",
                     report.files.count, output, report.meanPSNR, report.meanSSIM))
    }
}
