import ArgumentParser
import Engine
import Core
import Foundation
import Imaging
import MedicalFormats

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert images (PNG, JPEG, DICOM, NIfTI) to PNG or JPEG, resize, change channels or bit depth.",
        discussion: """
        A file converts to a file; the output extension (.png, .jpg, .jpeg) picks the format. \
        A folder converts to a folder with the same subfolders; --format picks the output format \
        (default: each file keeps its own). --size centre-crops to a square and resizes (area \
        averaging when shrinking, bilinear when enlarging). JPEG output is 8-bit without alpha. \
        DICOM files (with or without .dcm) and NIfTI volumes are windowed by --window and cut by \
        --axis/--slices/--volume as `export` does; a file giving several images (frames, slices) \
        becomes NAME_0000, NAME_0001, …; in folders they become PNG unless --format says otherwise. \
        Bad files in a folder are listed and the exit status is 1.
        """)

    @Argument(help: "Input image file or folder.") var input: String
    @Argument(help: "Output image file or folder.") var output: String
    @Option(help: "Square output side in pixels (centre crop, then resize).") var size: Int?
    @Option(help: "1 (gray) or 3 (RGB).") var channels: Int?
    @Option(help: "8 or 16 (PNG only).") var bitDepth: Int?
    @Option(help: "JPEG quality, 1-100.") var quality: Int = 92
    @Option(help: "Output format for folders: png or jpeg.") var format: String?
    @Option(help: "DICOM/NIfTI display window: file, full, stored, lung|mediastinum|bone|brain|soft-tissue, or CENTER,WIDTH.")
    var window: String = "file"
    @Option(help: "NIfTI slicing plane: axial|coronal|sagittal (after reorientation to RAS+).") var axis: String = "axial"
    @Option(help: "NIfTI slices: all, N, A-B, foreground, foreground:FRACTION or foreground:FRACTION@THRESHOLD.") var slices: String = "all"
    @Option(help: "NIfTI 4-D: the volume to read (0-based); default every volume.") var volume: Int?
    @OptionGroup var runtime: RuntimeOptions

    func medicalOptions() throws -> MedicalReadOptions {
        MedicalReadOptions(window: try MedicalWindow(parsing: window), axis: try SliceAxis(parsing: axis),
                           slices: try SliceSelection(parsing: slices), volume: volume)
    }

    func validate() throws {
        if let size, size < 1 { throw ValidationError("--size must be at least 1") }
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 1 or 3") }
        if let bitDepth, bitDepth != 8 && bitDepth != 16 { throw ValidationError("--bit-depth must be 8 or 16") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be 1...100") }
        if let format, !["png", "jpeg", "jpg"].contains(format.lowercased()) { throw ValidationError("--format must be png or jpeg") }
        if let volume, volume < 0 { throw ValidationError("--volume must be at least 0") }
        do { _ = try medicalOptions() } catch let error as MedSynthError { throw ValidationError(error.message) }
    }

    func run() throws {
        let outputFormat: ImageFormat? = format.map { $0.lowercased() == "png" ? .png : .jpeg }
        let options = ConvertOptions(size: size, channels: channels, bitDepth: bitDepth, quality: quality, format: outputFormat,
                                     medical: try medicalOptions())
        runtime.apply()
        var reporter: ProgressReporter? = nil
        let report = try convertImages(from: URL(fileURLWithPath: input), to: URL(fileURLWithPath: output), options: options,
                                       threads: runtime.threads) { done, total in
            if reporter == nil { reporter = ProgressReporter(label: "convert", total: total, unit: "file", style: runtime.progress) }
            reporter?.update(done: done, items: done)
        }
        print(report.description)
        if !report.failed.isEmpty { throw ExitCode(1) }
    }
}
