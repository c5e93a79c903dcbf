import Foundation
import XCTest
import TestSupport

/// `medsynth info` and `medsynth convert`, run as the built binary.
final class ImagingCLITests: XCTestCase {
    /// 3x2 8-bit RGB PNG: pixel (x, y) = (100x, 200y, 50). Made by scripts/fixtures/make_imaging_fixtures.py's writer.
    private static let rgbPNG = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAADElEQVR42mNgYDBKYTA6wWDXJPJDAAAADUlEQVTEyHACyGIAIgAj3AOG8YGnCQAAAABJRU5ErkJggg=="
    /// 4x4 16-bit gray PNG: pixel (x, y) = 1000x + 10000y.
    private static let gray16PNG = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAEEAAAAADcCh3hAAAAFElEQVR42mNgYGB+wX6BewejugDzCxYgZAJC/RkAAAAVSURBVFIX0BBQB0JmPwWxP2I1ojUAoxAJBtsbbQ0AAAAASUVORK5CYII="

    private func run(_ arguments: [String], in folder: URL) throws -> ProcessResult {
        try runProcess(requireBinary().path, arguments, in: folder, timeout: 120, mergeStreams: false)
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
}
