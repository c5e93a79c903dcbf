import ArgumentParser
import Core
import Engine
import Foundation
import Imaging
import MedicalFormats

/// Flags for reading DICOM and NIfTI inputs; any subcommand that reads images can pull them in
/// with `@OptionGroup var medical: MedicalInputOptions` and pass `try medical.readOptions()` to
/// `readImages(at:options:)`.
struct MedicalInputOptions: ParsableArguments {
    @Option(help: "DICOM/NIfTI display window: file (the file's own), full (data range), stored (raw integers, exact), lung|mediastinum|bone|brain|soft-tissue, or CENTER,WIDTH.")
    var window: String = "file"
    @Option(help: "Output bit depth for DICOM/NIfTI, 8 or 16 (default: 8 for 8-bit data, else 16).")
    var bitDepth: Int?
    @Option(help: "NIfTI slicing plane: axial|coronal|sagittal (after reorientation to RAS+).")
    var axis: String = "axial"
    @Option(help: "NIfTI slices: all, N, A-B, foreground, foreground:FRACTION or foreground:FRACTION@THRESHOLD.")
    var slices: String = "all"
    @Option(help: "NIfTI 4-D: the volume to read (0-based); default every volume.")
    var volume: Int?
    @Option(help: "Most decoded pixels per file: all frames, slices and volumes (default 268435456, or MEDSYNTH_MAX_PIXELS). Files declaring more are refused before decoding.")
    var maxPixels: Int?
    @Option(help: "Most pixels per 2-D image or frame (default 67108864 = 8192x8192, or MEDSYNTH_MAX_IMAGE_PIXELS).")
    var maxImagePixels: Int?

    func validate() throws {
        if let bitDepth, bitDepth != 8 && bitDepth != 16 { throw ValidationError("--bit-depth must be 8 or 16") }
        if let volume, volume < 0 { throw ValidationError("--volume must be at least 0") }
        if let maxPixels, maxPixels < 1 { throw ValidationError("--max-pixels must be at least 1") }
        if let maxImagePixels, maxImagePixels < 1 { throw ValidationError("--max-image-pixels must be at least 1") }
        do { _ = try readOptions() } catch let error as MedSynthError { throw ValidationError(error.message) }
    }

    /// The read options; also makes the pixel limits the process-wide default, so every image the
    /// command reads (not only through these options) obeys them.
    func readOptions() throws -> MedicalReadOptions {
        if let maxPixels { DecodeLimits.maxPixels = maxPixels }
        if let maxImagePixels { DecodeLimits.maxImagePixels = maxImagePixels }
        return MedicalReadOptions(window: try MedicalWindow(parsing: window), bitDepth: bitDepth,
                                  axis: try SliceAxis(parsing: axis), slices: try SliceSelection(parsing: slices), volume: volume,
                                  maxPixels: DecodeLimits.maxPixels, maxImagePixels: DecodeLimits.maxImagePixels)
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write images (PNG, JPEG, DICOM, NIfTI) as DICOM Secondary Capture files or one NIfTI stack.",
        discussion: """
        An output ending in .nii or .nii.gz gets every input image as one slice of a NIfTI-1 volume \
        (images must share size; colour becomes gray). Any other output is a folder of DICOM \
        Secondary Capture files (<input>_<index>.dcm) in one new series with new UIDs. Patient and \
        study identifiers of DICOM inputs are copied only with --keep-identifiers; otherwise they are \
        left empty and Patient Identity Removed is YES. Multi-frame DICOM and NIfTI inputs give one \
        image per frame or slice, windowed by --window (use --window stored to keep values exactly).
        """)

    @Argument(help: "Input files.") var inputs: [String]
    @Option(name: .shortAndLong, help: "Output folder (DICOM) or .nii/.nii.gz file (NIfTI).") var output: String
    @OptionGroup var medical: MedicalInputOptions
    @Flag(help: "Copy patient and study identifiers from DICOM inputs.") var keepIdentifiers = false
    @Option(help: "Seed for reproducible UIDs (default: globally unique UIDs).") var uidSeed: UInt64?
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let reporter = ProgressReporter(label: "export", total: inputs.count, unit: "file", style: runtime.progress)
        let lower = output.lowercased()
        let format: MedicalExportFormat = lower.hasSuffix(".nii") || lower.hasSuffix(".nii.gz") ? .nifti : .dicom
        let report = try exportMedical(inputs: inputs.map { URL(fileURLWithPath: $0) }, to: URL(fileURLWithPath: output),
                                       format: format, readOptions: medical.readOptions(),
                                       keepIdentifiers: keepIdentifiers, uidSeed: uidSeed) { done, _ in
            reporter.update(done: done, items: done)
        }
        print(report.description)
    }
}
