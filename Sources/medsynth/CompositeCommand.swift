import ArgumentParser
import Compositor
import Workflows
import Core
import Engine
import Foundation
import Imaging

struct Composite: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Blend lesion patches into healthy scans; write images/, masks/ and a JSONL manifest.",
        discussion: """
        Lesions come from a folder of patches: each NAME.png with NAME_mask.png beside it, or an alpha \
        channel, or an automatic Otsu mask. `medsynth lesions` makes such a folder. Scan i depends only \
        on (--seed, i), so `--shard K/N` runs together give the same files as one run.
        """)

    @Option(help: "Folder of healthy scans (PNG or JPEG).") var backgrounds: String
    @Option(help: "Folder of lesion patches.") var lesions: String?
    @Option(help: "Or: a generator checkpoint (GAN or diffusion) whose samples are the lesion patches (Otsu-masked).") var lesionModel: String?
    @Option(help: "With --lesion-model: the class to sample (conditional models).") var lesionClass: String?
    @Option(help: "With --lesion-model: how many patches to sample.") var lesionCount: Int = 32
    @Option(help: "Output folder.") var out: String
    @Option(help: "Lesions per image.") var perImage: Int = 1
    @Option(help: "Blending: alpha (feathered), poisson (seamless) or mixed (mixed gradients).") var mode: BlendMode = .poisson
    @Option(help: "Folder of allowed-region masks named like the scans (NAME.png or NAME_mask.png); default: automatic.")
    var regionMasks: String?
    @Option(help: "Lesion contrast against the local background, e.g. +30%, -20% or 0.3 (default: the patch's own).")
    var contrast: String?
    @Option(help: "Intensity matching: local or none.") var match: IntensityMatch = .local
    @Flag(help: "No random scale, rotation, flip or intensity changes.") var noJitter = false
    @Option(help: "Scale jitter: factor in [1/(1+s), 1+s].") var scaleJitter: Double = 0.25
    @Option(help: "Rotation jitter in degrees: uniform in [-r, r].") var rotationJitter: Double = 180
    @Option(help: "Intensity jitter: contrast times a factor in [1-i, 1+i].") var intensityJitter: Double = 0.2
    @Option(help: "Alpha mode: feather width in pixels inside the mask edge.") var feather: Float = 2
    @Option(help: "Automatic region: erosion in pixels.") var margin: Float = 4
    @Option(help: "Minimum distance in pixels between lesions of one image.") var spacing: Int = 4
    @Flag(help: "Poisson modes: erode the mask by 3 px and truncate like OpenCV's seamlessClone.") var opencvCompatible = false
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Do only images K, K+N, ... (K/N, 0 <= K < N).") var shard: Shard = .whole
    @Flag(help: "Keep images an earlier run with the same seed finished (outputs checked); make the others.") var resume = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard (lesions != nil) != (lesionModel != nil) else { throw ValidationError("give exactly one of --lesions or --lesion-model") }
        guard perImage >= 1 else { throw ValidationError("--per-image must be at least 1") }
        guard feather >= 0, margin >= 0, spacing >= 0 else { throw ValidationError("--feather, --margin and --spacing must be >= 0") }
        guard scaleJitter >= 0, rotationJitter >= 0, intensityJitter >= 0, intensityJitter < 1 else {
            throw ValidationError("jitter limits must be >= 0 (and --intensity-jitter < 1)")
        }
        if let contrast { _ = try parseContrast(contrast) }
    }

    func run() throws {
        runtime.apply()
        var options = CompositeOptions(backgrounds: URL(fileURLWithPath: backgrounds), out: URL(fileURLWithPath: out))
        options.perImage = perImage
        options.blend = BlendSettings(mode: mode, feather: feather, openCVCompatible: opencvCompatible)
        options.regionMasks = regionMasks.map { URL(fileURLWithPath: $0) }
        options.margin = margin
        options.spacing = spacing
        options.match = match
        options.contrast = try contrast.map(parseContrast)
        options.jitter = noJitter ? .none
            : JitterLimits(scale: scaleJitter, rotationDegrees: rotationJitter, flip: true, intensity: intensityJitter)
        options.seed = seed
        options.shard = shard
        options.resume = resume
        let source: FolderLesionSource
        if let lesionModel {
            let folder = URL(fileURLWithPath: out).appendingPathComponent("lesion-patches")
            source = try generatedLesionSource(model: lesionModel, count: lesionCount, className: lesionClass, seed: seed, folder: folder)
        } else {
            source = try FolderLesionSource(folder: URL(fileURLWithPath: lesions!))
        }
        var reporter: ProgressReporter? = nil
        var made = 0
        let summary = try runComposite(options, lesions: source) { p in
            // Skipped (resumed) scans do not count towards the images/s rate.
            if reporter == nil { reporter = ProgressReporter(label: "composite", total: p.total, unit: "image", style: runtime.progress) }
            made += p.skipped ? 0 : 1
            reporter?.update(done: p.done, items: made)
        }
        if !summary.removedTemporaries.isEmpty {
            print("removed \(summary.removedTemporaries.count) temporary file(s) left by an interrupted run")
        }
        print("wrote \(summary.written) images (\(summary.skipped) kept from an earlier run), \(summary.lesions) lesions; manifest \(summary.manifest.path)")
        if !summary.noRoom.isEmpty {
            print("no room for the lesions in \(summary.noRoom.count) scan(s); skipped (listed in the manifest with \"skipped\"):")
            for scan in summary.noRoom { print("  \(scan.url.path): \(scan.reason)") }
        }
    }
}

/// "+30%", "-20%", "30%" or "0.3" as a fraction.
func parseContrast(_ text: String) throws -> Double {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let percent = trimmed.hasSuffix("%")
    let number = percent ? String(trimmed.dropLast()) : trimmed
    guard let value = Double(number.hasPrefix("+") ? String(number.dropFirst()) : number), value.isFinite else {
        throw ValidationError("--contrast: expected e.g. +30%, -20% or 0.3, got '\(text)'")
    }
    let fraction = percent ? value / 100 : value
    guard fraction > -1 else { throw ValidationError("--contrast must be above -100%, got '\(text)'") }
    return fraction
}

/// Hidden: one lesion into one scan at a fixed place, timed (used by scripts/experiments/compare_opencv_seamless.py).
struct BenchComposite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-composite",
        abstract: "Time one blend of a patch into a scan at a fixed position and write the result.",
        shouldDisplay: false)

    @Option(help: "Background scan.") var background: String
    @Option(help: "Lesion patch (mask: NAME_mask.png, alpha or Otsu).") var patch: String
    @Option(help: "Patch top-left x in the scan.") var x: Int
    @Option(help: "Patch top-left y in the scan.") var y: Int
    @Option(help: "Blending: alpha, poisson or mixed.") var mode: BlendMode = .poisson
    @Option(help: "Alpha feather width.") var feather: Float = 2
    @Flag(help: "OpenCV seamlessClone behaviour (3 px erosion, truncation).") var opencvCompatible = false
    @Option(help: "Timed repetitions.") var repeats: Int = 50
    @Option(help: "Where to write the blended scan (PNG).") var out: String

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let scan = try readImage(at: URL(fileURLWithPath: background))
        let lesion = try loadLesionPatch(URL(fileURLWithPath: patch))
        let settings = BlendSettings(mode: mode, feather: feather, openCVCompatible: opencvCompatible)
        let result = benchmarkBlend(background: scan, patch: lesion, x: x, y: y, settings: settings, repeats: repeats)
        try writePNG(result.image, to: URL(fileURLWithPath: out))
        print(String(format: "{\"blend_ms\": %.4f, \"total_ms\": %.4f, \"iterations\": %d}",
                     result.blendSeconds * 1000, result.totalSeconds * 1000, result.iterations))
    }
}
