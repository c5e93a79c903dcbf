import Foundation
import XCTest
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `medsynth info` and `medsynth convert`, run as the built binary.
final class ImagingCLITests: XCTestCase {
    /// 3x2 8-bit RGB PNG: pixel (x, y) = (100x, 200y, 50). Made by scripts/fixtures/make_imaging_fixtures.py's writer.
    private static let rgbPNG = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAADElEQVR42mNgYDBKYTA6wWDXJPJDAAAADUlEQVTEyHACyGIAIgAj3AOG8YGnCQAAAABJRU5ErkJggg=="
    /// 4x4 16-bit gray PNG: pixel (x, y) = 1000x + 10000y.
    private static let gray16PNG = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAEEAAAAADcCh3hAAAAFElEQVR42mNgYGB+wX6BewejugDzCxYgZAJC/RkAAAAVSURBVFIX0BBQB0JmPwWxP2I1ojUAoxAJBtsbbQ0AAAAASUVORK5CYII="

    /// A hang fails the test (the run is stopped after `timeout` seconds) instead of blocking the suite.
    private func run(_ arguments: [String], in folder: URL, timeout: TimeInterval = 60) throws -> ProcessResult {
        let result = try runProcess(requireBinary().path, arguments, in: folder, timeout: timeout, mergeStreams: false)
        if result.timedOut { XCTFail("medsynth \(arguments.joined(separator: " ")) did not finish within \(timeout) s") }
        return result
    }

    private func put(_ base64: String, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(base64Encoded: base64)!.write(to: url)
    }

    func testInfoOnAFileAndOnAFolder() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try put(Self.rgbPNG, folder.appendingPathComponent("data/ct/a.png"))
        try put(Self.gray16PNG, folder.appendingPathComponent("data/ct/b.png"))
        try put(Self.rgbPNG, folder.appendingPathComponent("data/mr/c.png"))
        try Data("hello".utf8).write(to: folder.appendingPathComponent("data/mr/readme.png"))

        let file = try run(["info", "data/ct/b.png"], in: folder)
        XCTAssertEqual(file.status, 0, file.stderr)
        XCTAssertTrue(file.stdout.contains("data/ct/b.png: PNG, 4x4, 1 channel (gray), 16-bit"), file.stdout)
        XCTAssertTrue(file.stdout.contains("value range: gray 0...33000 (of 0...65535)"), file.stdout)

        let rgb = try run(["info", "data/ct/a.png"], in: folder)
        XCTAssertTrue(rgb.stdout.contains("red 0...200, green 0...200, blue 50...50"), rgb.stdout)

        let tree = try run(["info", "data"], in: folder)
        XCTAssertEqual(tree.status, 0, tree.stderr)
        for line in ["3 images in 2 classes", "  class ct: 2", "  class mr: 1", "  3x2, 3 channels, 8-bit: 2",
                     "  4x4, 1 channel, 16-bit: 1", "unreadable files: 1", "readme.png: not a PNG, JPEG, DICOM or NIfTI image"] {
            XCTAssertTrue(tree.stdout.contains(line), "missing '\(line)' in:\n\(tree.stdout)")
        }
    }

    func testInfoErrorsNameTheFileAndFail() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = try run(["info", "nothing.png"], in: folder)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nothing.png: cannot read"), missing.stderr)

        var truncated = Data(base64Encoded: Self.gray16PNG)!
        truncated.removeLast(25)
        try truncated.write(to: folder.appendingPathComponent("cut.png"))
        let cut = try run(["info", "cut.png"], in: folder)
        XCTAssertNotEqual(cut.status, 0)
        XCTAssertTrue(cut.stderr.contains("cut.png: file is truncated"), cut.stderr)
        XCTAssertEqual(cut.stderr.split(separator: "\n").count, 1, cut.stderr)
    }

    func testConvertFileAndFolder() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try put(Self.gray16PNG, folder.appendingPathComponent("in/b/scan.png"))
        try put(Self.rgbPNG, folder.appendingPathComponent("in/a/photo.png"))

        let single = try run(["convert", "in/b/scan.png", "small.jpg", "--size", "2", "--quality", "90"], in: folder)
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertTrue(single.stdout.contains("converted 1 file"), single.stdout)
        let info = try run(["info", "small.jpg"], in: folder)
        XCTAssertTrue(info.stdout.contains("small.jpg: JPEG, 2x2, 1 channel (gray), 8-bit"), info.stdout)

        let tree = try run(["convert", "in", "out", "--channels", "3", "--bit-depth", "16"], in: folder)
        XCTAssertEqual(tree.status, 0, tree.stderr)
        XCTAssertTrue(tree.stdout.contains("converted 2 files"), tree.stdout)
        let outInfo = try run(["info", "out/b/scan.png"], in: folder)
        XCTAssertTrue(outInfo.stdout.contains("PNG, 4x4, 3 channels (red+green+blue), 16-bit"), outInfo.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("out/a/photo.png").path))

        // A bad file in the folder: the rest converts, the bad one is listed, exit status 1.
        try Data("junk".utf8).write(to: folder.appendingPathComponent("in/a/junk.png"))
        let partial = try run(["convert", "in", "out2", "--format", "jpeg"], in: folder)
        XCTAssertEqual(partial.status, 1)
        XCTAssertTrue(partial.stdout.contains("converted 2 files"), partial.stdout)
        XCTAssertTrue(partial.stdout.contains("junk.png: not a PNG, JPEG, DICOM or NIfTI image"), partial.stdout)

        let badOption = try run(["convert", "in/b/scan.png", "x.png", "--channels", "2"], in: folder)
        XCTAssertNotEqual(badOption.status, 0)
        XCTAssertTrue(badOption.stderr.contains("--channels must be 1 or 3"), badOption.stderr)
        let badDepth = try run(["convert", "in/b/scan.png", "x.jpg", "--bit-depth", "16"], in: folder)
        XCTAssertNotEqual(badDepth.status, 0)
        XCTAssertTrue(badDepth.stderr.contains("x.jpg: JPEG holds only 8-bit samples"), badDepth.stderr)
    }

    // MARK: - DICOM, NIfTI and hostile folders (issue 16)

    /// A committed DICOM/NIfTI fixture (made by scripts/make_medical_fixtures.py with pydicom/nibabel).
    private func medicalFixture(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("MedicalFormatsTests/Fixtures").appendingPathComponent(name)
    }

    private func copyFixture(_ name: String, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: medicalFixture(name), to: url)
    }

    func testInfoAndConvertAcceptDICOMFilesFoldersAndNIfTIVolumes() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        // The CT without its .dcm name; pydicom reads stored values 700...2550, rescale -1024, window 40/400.
        try copyFixture("ct_explicit_le.dcm", to: folder.appendingPathComponent("scans/IM0001"))
        try copyFixture("mr_implicit_le.dcm", to: folder.appendingPathComponent("scans/mr.dcm"))
        try copyFixture("int16_las_scaled.nii.gz", to: folder.appendingPathComponent("vol.nii.gz"))

        let ct = try run(["info", "scans/IM0001"], in: folder)
        XCTAssertEqual(ct.status, 0, ct.stderr)
        for line in ["scans/IM0001: DICOM, modality CT", "5x3, 1 frame, 1 sample per pixel (MONOCHROME2), 12 of 16 bits stored",
                     "rescale: slope 1, intercept -1024", "window in file: center 40, width 400",
                     "window: the file's (Window Center/Width): center 40, width 400", "read as 1 image (of 1 frame), 5x3, 1 channel (gray), 16-bit"] {
            XCTAssertTrue(ct.stdout.contains(line), "missing '\(line)' in:\n\(ct.stdout)")
        }
        let stored = try run(["info", "scans/IM0001", "--window", "stored"], in: folder)
        XCTAssertTrue(stored.stdout.contains("value range: gray 700...2550 (of 0...65535)"), stored.stdout)

        // convert: the stored values reach the PNG exactly (pydicom's pixel_array range).
        let single = try run(["convert", "scans/IM0001", "ct.png", "--window", "stored"], in: folder)
        XCTAssertEqual(single.status, 0, single.stderr)
        let png = try run(["info", "ct.png"], in: folder)
        XCTAssertTrue(png.stdout.contains("ct.png: PNG, 5x3, 1 channel (gray), 16-bit"), png.stdout)
        XCTAssertTrue(png.stdout.contains("value range: gray 700...2550"), png.stdout)

        // NIfTI: --axis and --slices as export has them; several slices become numbered files.
        let volumeInfo = try run(["info", "vol.nii.gz", "--axis", "coronal"], in: folder)
        XCTAssertEqual(volumeInfo.status, 0, volumeInfo.stderr)
        XCTAssertTrue(volumeInfo.stdout.contains("NIfTI-1, modality not recorded"), volumeInfo.stdout)
        XCTAssertTrue(volumeInfo.stdout.contains("5x4x3 voxels, 1 volume, int16 (16 bits), gzip-compressed"), volumeInfo.stdout)
        XCTAssertTrue(volumeInfo.stdout.contains("read as 4 images (of 4 slices) along coronal, 5x3"), volumeInfo.stdout)
        let slices = try run(["convert", "vol.nii.gz", "sl.png", "--axis", "coronal", "--slices", "1-2", "--size", "2"], in: folder)
        XCTAssertEqual(slices.status, 0, slices.stderr)
        XCTAssertTrue(slices.stdout.contains("converted 2 files"), slices.stdout)
        let slice = try run(["info", "sl_0001.png"], in: folder)
        XCTAssertTrue(slice.stdout.contains("sl_0001.png: PNG, 2x2, 1 channel (gray), 16-bit"), slice.stdout)

        // A DICOM folder: the researcher's first two commands.
        let tree = try run(["info", "scans"], in: folder)
        XCTAssertEqual(tree.status, 0, tree.stderr)
        for line in ["2 images in 1 class", "medical files: DICOM CT: 1, DICOM MR: 1", "5x3, 1 channel, 16-bit: 1", "unreadable files: 0"] {
            XCTAssertTrue(tree.stdout.contains(line), "missing '\(line)' in:\n\(tree.stdout)")
        }
        let converted = try run(["convert", "scans", "pngs", "--size", "8", "--window", "brain"], in: folder)
        XCTAssertEqual(converted.status, 0, converted.stdout + converted.stderr)
        for name in ["pngs/IM0001.png", "pngs/mr.png"] {
            let info = try run(["info", name], in: folder)
            XCTAssertTrue(info.stdout.contains("PNG, 8x8, 1 channel (gray), 16-bit"), info.stdout)
        }
        let bad = try run(["convert", "scans", "x", "--window", "sideways"], in: folder)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("window 'sideways'"), bad.stderr)
    }

    func testInfoAndConvertNeitherBlockOnAFIFONorLoopOnLinks() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try put(Self.rgbPNG, folder.appendingPathComponent("data/a/one.png"))
        XCTAssertEqual(mkfifo(folder.appendingPathComponent("data/a/pipe.png").path, 0o644), 0)
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("data/a/loop").path, withDestinationPath: "..")
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("data/a/again.png").path, withDestinationPath: "one.png")

        let info = try run(["info", "data"], in: folder, timeout: 30)
        XCTAssertEqual(info.status, 0, info.stderr)
        for line in ["1 image in 1 class", "pipe.png: not a regular file (a FIFO); skipped", "loop: symbolic link to a folder already scanned",
                     "again.png: same file as"] {
            XCTAssertTrue(info.stdout.contains(line), "missing '\(line)' in:\n\(info.stdout)")
        }
        let convert = try run(["convert", "data", "out"], in: folder, timeout: 30)
        XCTAssertTrue(convert.stdout.contains("converted 1 file"), convert.stdout)
        XCTAssertTrue(convert.stdout.contains("pipe.png: not a regular file (a FIFO)"), convert.stdout)
        let direct = try run(["info", "data/a/pipe.png"], in: folder, timeout: 30)
        XCTAssertNotEqual(direct.status, 0)
        XCTAssertTrue(direct.stderr.contains("pipe.png: not a regular file"), direct.stderr)
    }

    /// Every command's help lists each option once (`train vae` once listed --threads and --progress twice,
    /// from a second RuntimeOptions group beside the one inside the common training options).
    func testEveryCommandsHelpListsEachOptionOnce() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        func subcommands(of help: String) -> [String] {
            guard let start = help.range(of: "SUBCOMMANDS:") else { return [] }
            // The list ends at the first blank line (a "See 'medsynth help …'" hint follows it).
            let lines = help[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).dropFirst()
            return lines.prefix { !$0.isEmpty }.compactMap { line in
                guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first else { return nil }
                return String(name)
            }
        }
        var pending: [[String]] = [[]]
        var checked = 0
        while let path = pending.popLast(), checked < 100 {
            let help = try run(path + ["--help"], in: folder)
            XCTAssertEqual(help.status, 0, "medsynth \(path.joined(separator: " ")) --help: \(help.stderr)")
            let options = help.stdout.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("  --") else { return nil }
                return line.dropFirst(2).split(separator: " ").first.map(String.init)
            }
            let repeated = Dictionary(grouping: options, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
            XCTAssertEqual(repeated, [], "medsynth \(path.joined(separator: " ")) --help lists these options twice")
            pending += subcommands(of: help.stdout).map { path + [$0] }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 18, "expected the top level, 15 commands and the three trainers")
    }
}
