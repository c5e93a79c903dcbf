import ArgumentParser
import Foundation
import Imaging

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert images between PNG and JPEG, resize, change channels or bit depth.",
        discussion: """
        A file converts to a file; the output extension (.png, .jpg, .jpeg) picks the format. \
        A folder converts to a folder with the same subfolders; --format picks the output format \
        (default: each file keeps its own). --size centre-crops to a square and resizes (area \
        averaging when shrinking, bilinear when enlarging). JPEG output is 8-bit without alpha. \
        Bad files in a folder are listed and the exit status is 1.
        """)

    @Argument(help: "Input image file or folder.") var input: String
    @Argument(help: "Output image file or folder.") var output: String
    @Option(help: "Square output side in pixels (centre crop, then resize).") var size: Int?
    @Option(help: "1 (gray) or 3 (RGB).") var channels: Int?
    @Option(help: "8 or 16 (PNG only).") var bitDepth: Int?
    @Option(help: "JPEG quality, 1-100.") var quality: Int = 92
    @Option(help: "Output format for folders: png or jpeg.") var format: String?

    func validate() throws {
        if let size, size < 1 { throw ValidationError("--size must be at least 1") }
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 1 or 3") }
        if let bitDepth, bitDepth != 8 && bitDepth != 16 { throw ValidationError("--bit-depth must be 8 or 16") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be 1...100") }
        if let format, !["png", "jpeg", "jpg"].contains(format.lowercased()) { throw ValidationError("--format must be png or jpeg") }
    }

    func run() throws {
        let outputFormat: ImageFormat? = format.map { $0.lowercased() == "png" ? .png : .jpeg }
        let options = ConvertOptions(size: size, channels: channels, bitDepth: bitDepth, quality: quality, format: outputFormat)
        let report = try convertImages(from: URL(fileURLWithPath: input), to: URL(fileURLWithPath: output), options: options)
        print(report.description)
        if !report.failed.isEmpty { throw ExitCode(1) }
    }
}
