import ArgumentParser
import Foundation
import Imaging

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe an image file or a dataset folder.",
        discussion: """
        For a PNG or JPEG file: format, size, channels, bit depth and the value range per channel. \
        For a DICOM file (with or without the .dcm name) or a NIfTI volume (.nii, .nii.gz): modality, \
        frames or slices, stored bits, rescale, the file's window and the images read with --window, \
        --axis, --slices (as `export` reads them). For a folder: images per class (subfolders are classes; files directly in a folder without \
        subfolders form one class named after it), the image sizes seen, and every unreadable file \
        with the reason. Hidden files are ignored.
        """)

    @Argument(help: "An image file or a dataset folder.") var path: String
    @Option(help: "Largest side accepted, in pixels.") var maxSide: Int = 16384
    @OptionGroup var medical: MedicalInputOptions

    func run() throws {
        let url = URL(fileURLWithPath: path)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
            print(try summarizeFolder(url, maxSide: maxSide, medical: medical.readOptions()).description)
        } else {
            print(try describeFile(at: url, maxSide: maxSide, medical: medical.readOptions()))
        }
    }
}
