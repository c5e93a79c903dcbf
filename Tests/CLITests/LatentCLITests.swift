import Foundation
import XCTest
import TestSupport

/// `medsynth train vae`, `reconstruct`, VAE prior sampling, `train diffusion --autoencoder` and `train gan --autoencoder`, run as the built binary.
final class LatentCLITests: XCTestCase {
    /// 4x4 16-bit gray PNG: pixel (x, y) = 1000x + 10000y (as ImagingCLITests).
    private static let gray16PNG = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAEEAAAAADcCh3hAAAAFElEQVR42mNgYGB+wX6BewejugDzCxYgZAJC/RkAAAAVSURBVFIX0BBQB0JmPwWxP2I1ojUAoxAJBtsbbQ0AAAAASUVORK5CYII="

    private func run(_ arguments: [String], in folder: URL, timeout: TimeInterval = 120) throws -> ProcessResult {
        let result = try runProcess(requireBinary().path, arguments, in: folder, timeout: timeout, mergeStreams: false)
        if result.timedOut { XCTFail("medsynth \(arguments.joined(separator: " ")) did not finish within \(timeout) s") }
        return result
    }

    func testVAEAndLatentDiffusionCommands() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in ["a", "b", "c", "d"] {
            let url = folder.appendingPathComponent("data/scans/\(name).png")
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(base64Encoded: Self.gray16PNG)!.write(to: url)
        }
        let tiny = ["--image-size", "16", "--batch", "2", "--width", "8", "--progress", "none"]
        let vae = try run(["train", "vae", "--data", "data", "--out", "vae", "--steps", "2", "--downsampling-factor", "2"] + tiny, in: folder)
        XCTAssertEqual(vae.status, 0, vae.stderr)
        XCTAssertTrue(vae.stdout.contains("PSNR"), vae.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("vae/model.safetensors").path))

        let recon = try run(["reconstruct", "--model", "vae", "data", "recon", "--progress", "none"], in: folder)
        XCTAssertEqual(recon.status, 0, recon.stderr)
        XCTAssertTrue(recon.stdout.contains("reconstructed 4 image(s)") && recon.stdout.contains("mean PSNR"), recon.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("recon/scans/a.png").path))

        let prior = try run(["generate", "--model", "vae", "--count", "2", "--out", "prior", "--progress", "none"], in: folder)
        XCTAssertEqual(prior.status, 0, prior.stderr)

        let ldm = try run(["train", "diffusion", "--data", "data", "--autoencoder", "vae", "--out", "ldm", "--steps", "2", "--grid-steps", "2"] + tiny, in: folder)
        XCTAssertEqual(ldm.status, 0, ldm.stderr)
        let resumed = try run(["train", "diffusion", "--data", "data", "--out", "ldm", "--steps", "3", "--grid-steps", "2", "--resume"] + tiny, in: folder)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let samples = try run(["generate", "--model", "ldm", "--count", "2", "--out", "ldm-samples", "--sampler", "dpm",
                               "--sampling-steps", "3", "--progress", "none"], in: folder)
        XCTAssertEqual(samples.status, 0, samples.stderr)
        // Scheduler conventions are settings, and the manifest records them.
        let leading = try run(["generate", "--model", "ldm", "--count", "1", "--out", "ldm-leading", "--sampler", "ddim",
                               "--sampling-steps", "3", "--spacing", "leading", "--steps-offset", "1", "--final-alpha-bar", "first",
                               "--progress", "none"], in: folder)
        XCTAssertEqual(leading.status, 0, leading.stderr)
        let line = try String(contentsOf: folder.appendingPathComponent("ldm-leading/manifest.jsonl"), encoding: .utf8)
        let record = try JSONSerialization.jsonObject(with: Data(line.split(separator: "\n")[0].utf8)) as! [String: Any]
        XCTAssertEqual(record["spacing"] as? String, "leading")
        XCTAssertEqual(record["steps_offset"] as? Int, 1)
        XCTAssertEqual(record["final_alpha_bar"] as? String, "first")
        XCTAssertEqual(record["eta"] as? Double, 0)
        let defaultRecord = try String(contentsOf: folder.appendingPathComponent("ldm-samples/manifest.jsonl"), encoding: .utf8)
        XCTAssertTrue(defaultRecord.contains("\"spacing\":\"log-snr\"") && !defaultRecord.contains("final_alpha_bar"), defaultRecord)
        let changed = try run(["generate", "--model", "ldm", "--count", "1", "--out", "ldm-leading", "--sampler", "ddim",
                               "--sampling-steps", "3", "--resume", "--progress", "none"], in: folder)
        XCTAssertNotEqual(changed.status, 0)
        XCTAssertTrue(changed.stderr.contains("spacing"), changed.stderr)
        let pastEnd = try run(["generate", "--model", "ldm", "--count", "1", "--out", "x", "--sampler", "ddim", "--sampling-steps", "3",
                               "--spacing", "leading", "--steps-offset", "999"], in: folder)
        XCTAssertNotEqual(pastEnd.status, 0)
        XCTAssertTrue(pastEnd.stderr.contains("past this model's"), pastEnd.stderr)

        // The latent GAN: trained on the VAE's latents, resumed without --autoencoder, sampled from its own file.
        let lgan = try run(["train", "gan", "--data", "data", "--autoencoder", "vae", "--out", "lgan", "--steps", "2",
                            "--extra-layers", "1"] + tiny, in: folder)
        XCTAssertEqual(lgan.status, 0, lgan.stderr)
        let lganResumed = try run(["train", "gan", "--data", "data", "--out", "lgan", "--steps", "3", "--resume"] + tiny, in: folder)
        XCTAssertEqual(lganResumed.status, 0, lganResumed.stderr)
        XCTAssertTrue(lganResumed.stdout.contains("trained to step 3"), lganResumed.stdout)
        let lganSamples = try run(["generate", "--model", "lgan", "--count", "2", "--out", "lgan-samples", "--progress", "none"], in: folder)
        XCTAssertEqual(lganSamples.status, 0, lganSamples.stderr)
        XCTAssertTrue(try String(contentsOf: folder.appendingPathComponent("lgan-samples/manifest.jsonl"), encoding: .utf8).contains("latent-gan"))

        // Errors: one line naming the file, non-zero exit.
        let missing = try run(["reconstruct", "--model", "nothing", "data", "out"], in: folder)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nothing: no such model file"), missing.stderr)
        let same = try run(["reconstruct", "--model", "vae", "data", "data"], in: folder)
        XCTAssertNotEqual(same.status, 0)
        XCTAssertTrue(same.stderr.contains("output folder is the input folder"), same.stderr)
        let notVAE = try run(["train", "diffusion", "--data", "data", "--autoencoder", "ldm", "--out", "x"] + tiny, in: folder)
        XCTAssertNotEqual(notVAE.status, 0)
        XCTAssertTrue(notVAE.stderr.contains("not a vae model"), notVAE.stderr)
        let factor = try run(["train", "vae", "--data", "data", "--out", "v3", "--downsampling-factor", "3"], in: folder)
        XCTAssertNotEqual(factor.status, 0)
    }
}
