import Foundation
import XCTest
@testable import Imaging
import TestSupport
import Core

final class DatasetTests: XCTestCase {
    private func ramp(_ width: Int, _ height: Int, channels: Int = 1, bitDepth: Int = 8, offset: Int = 0) -> Image {
        var image = Image(width: width, height: height, channels: channels, bitDepth: bitDepth)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels { image[x, y, c] = UInt16((offset + x * 20 + y * 7 + c * 50) % 256) }
            }
        }
        return image
    }

    private func write(_ text: String, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    private func writeImage(_ image: Image, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if url.pathExtension == "png" { try writePNG(image, to: url) } else { try writeJPEG(image, to: url) }
    }

    /// root/ loose.png, a/{1.png, 2.jpg, sub/3.png, .hidden.png}, b/{x.png, notes.txt, .DS_Store}, c/ (empty), .git/y.png
    private func makeClassTree(_ root: URL) throws {
        try writeImage(ramp(6, 4), root.appendingPathComponent("loose.png"))
        try writeImage(ramp(8, 8, channels: 3), root.appendingPathComponent("a/1.png"))
        try writeImage(ramp(16, 12, channels: 3), root.appendingPathComponent("a/2.jpg"))
        try writeImage(ramp(5, 5, bitDepth: 16), root.appendingPathComponent("a/sub/3.png"))
        try writeImage(ramp(5, 5), root.appendingPathComponent("a/.hidden.png"))
        try writeImage(ramp(8, 8, offset: 3), root.appendingPathComponent("b/x.png"))
        try write("not an image", root.appendingPathComponent("b/notes.txt"))
        try write("junk", root.appendingPathComponent("b/.DS_Store"))
        try FileManager.default.createDirectory(at: root.appendingPathComponent("c"), withIntermediateDirectories: true)
        try writeImage(ramp(5, 5), root.appendingPathComponent(".git/y.png"))
    }

    func testClassFoldersCountsHiddenAndSkippedFiles() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeClassTree(root)
        let dataset = try ImageFolderDataset(root: root, imageSize: 4, channels: 1)
        XCTAssertEqual(dataset.classNames, ["a", "b", "c"])
        XCTAssertEqual(dataset.countsPerClass, [3, 1, 0])
        XCTAssertEqual(dataset.entries.map { $0.url.lastPathComponent }, ["1.png", "2.jpg", "3.png", "x.png"])
        XCTAssertEqual(dataset.entries.map(\.classIndex), [0, 0, 0, 1])
        XCTAssertEqual(Set(dataset.skipped.map { $0.url.lastPathComponent }), ["loose.png", "notes.txt"])
        XCTAssertEqual(dataset.skipped.first { $0.url.lastPathComponent == "loose.png" }?.reason, "not inside a class folder")
    }

    func testFilesDirectlyInAFolderAreOneClassNamedAfterIt() throws {
        let parent = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: parent) }
        let root = parent.appendingPathComponent("xrays")
        try writeImage(ramp(4, 4), root.appendingPathComponent("b.png"))
        try writeImage(ramp(4, 4, channels: 3), root.appendingPathComponent("a.jpg"))
        try write("", root.appendingPathComponent(".hidden"))
        let dataset = try ImageFolderDataset(root: root, imageSize: 2, channels: 3)
        XCTAssertEqual(dataset.classNames, ["xrays"])
        XCTAssertEqual(dataset.countsPerClass, [2])
        XCTAssertEqual(dataset.entries.map { $0.url.lastPathComponent }, ["a.jpg", "b.png"])
        XCTAssertEqual(dataset.skipped, [])
    }

    func testEmptyDatasetsAreRefusedClearly() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        XCTAssertThrowsError(try ImageFolderDataset(root: root, imageSize: 8, channels: 1)) { error in
            let message = (error as? MedSynthError)?.message ?? ""
            XCTAssertTrue(message.hasPrefix(root.path + ": empty dataset"), message)
        }
        try write("text", root.appendingPathComponent("a/readme.txt"))
        try write("", root.appendingPathComponent("a/.x.png"))
        XCTAssertThrowsError(try ImageFolderDataset(root: root, imageSize: 8, channels: 1)) { error in
            let message = (error as? MedSynthError)?.message ?? ""
            XCTAssertTrue(message.contains("empty dataset") && message.contains("1 file(s) skipped"), message)
        }
        let missing = root.appendingPathComponent("nope")
        XCTAssertThrowsError(try ImageFolderDataset(root: missing, imageSize: 8, channels: 1)) { error in
            XCTAssertEqual((error as? MedSynthError)?.message, missing.path + ": no such folder")
        }
    }

    func testTensorsAndBatchesMatchTheImagePipeline() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeClassTree(root)
        let dataset = try ImageFolderDataset(root: root, imageSize: 4, channels: 3)
        XCTAssertEqual(dataset.itemCount, 48)
        // Entry 2 is a/sub/3.png: 16-bit gray 5x5 → crop 5x5 → area-resize to 4x4 → replicate to RGB.
        let source = try readImage(at: dataset.entries[2].url)
        let expected = source.squareResized(4).converted(channels: 3).toFloatCHW()
        XCTAssertEqual(try dataset.tensorData(at: 2), expected)
        XCTAssertEqual(try dataset.tensorData(at: 2), expected)  // from the cache
        XCTAssertTrue(try dataset.tensorData(at: 1).allSatisfy { $0 >= -1 && $0 <= 1 })

        let order = [3, 0, 2, 1, 2]
        var batch = [Float](repeating: .nan, count: order.count * dataset.itemCount)
        try batch.withUnsafeMutableBufferPointer { try dataset.loadBatch(indices: order, into: $0) }
        for (slot, index) in order.enumerated() {
            XCTAssertEqual(Array(batch[(slot * 48)..<((slot + 1) * 48)]), try dataset.tensorData(at: index), "slot \(slot)")
        }
        var wrong = [Float](repeating: 0, count: 10)
        XCTAssertThrowsError(try wrong.withUnsafeMutableBufferPointer { try dataset.loadBatch(indices: [0], into: $0) })
    }

    func testABrokenFileInABatchNamesThatFile() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeImage(ramp(8, 8), root.appendingPathComponent("good.png"))
        let bad = root.appendingPathComponent("bad.png")
        let bytes = try encodePNG(ramp(8, 8))
        try Data(bytes[..<(bytes.count / 2)]).write(to: bad)
        let dataset = try ImageFolderDataset(root: root, imageSize: 4, channels: 1)
        var batch = [Float](repeating: 0, count: 2 * 16)
        XCTAssertThrowsError(try batch.withUnsafeMutableBufferPointer { try dataset.loadBatch(indices: [1, 0], into: $0) }) { error in
            let message = (error as? MedSynthError)?.message ?? ""
            XCTAssertTrue(message.hasPrefix(bad.path + ": "), message)
        }
    }

    // MARK: - Summary (medsynth info DIR)

    func testFolderSummaryListsClassesSizesAndUnreadableFiles() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeClassTree(root)
        let truncated = root.appendingPathComponent("b/cut.png")
        let bytes = try encodePNG(ramp(8, 8))
        try Data(bytes.dropLast(15)).write(to: truncated)
        let summary = try summarizeFolder(root)
        XCTAssertEqual(summary.classNames, ["a", "b", "c"])
        XCTAssertEqual(summary.countsPerClass, [3, 1, 0])  // the truncated file does not count
        XCTAssertEqual(summary.imageCount, 4)
        let layouts = summary.layouts.map { "\($0.layout.width)x\($0.layout.height)x\($0.layout.channels)@\($0.layout.bitDepth):\($0.count)" }
        XCTAssertEqual(layouts, ["5x5x1@16:1", "8x8x1@8:1", "8x8x3@8:1", "16x12x3@8:1"])
        XCTAssertEqual(summary.unreadable.map { $0.url.lastPathComponent }, ["cut.png", "notes.txt", "loose.png"])  // by path
        XCTAssertTrue(summary.unreadable[0].reason.contains("truncated"), summary.unreadable[0].reason)
        let text = summary.description
        XCTAssertTrue(text.contains("4 images in 3 classes"), text)
        XCTAssertTrue(text.contains("  class a: 3"), text)
        XCTAssertTrue(text.contains("unreadable files: 3"), text)
        XCTAssertTrue(text.contains("  16x12, 3 channels, 8-bit: 1"), text)
    }

    func testSingleFileInfoReportsRangePerChannel() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("scan.png")
        try writePNG(Image(width: 3, height: 1, channels: 2, bitDepth: 16, samples: [10, 65535, 4000, 65535, 70, 0]), to: url)
        let info = try imageFileInfo(at: url)
        XCTAssertEqual(info.format, .png)
        XCTAssertEqual(info.minimum, [10, 0])
        XCTAssertEqual(info.maximum, [4000, 65535])
        XCTAssertTrue(info.description.contains("PNG, 3x1, 2 channels (gray+alpha), 16-bit"), info.description)
        XCTAssertTrue(info.description.contains("gray 10...4000, alpha 0...65535 (of 0...65535)"), info.description)
    }

    // MARK: - Conversion (medsynth convert)

    func testFolderConversionMirrorsTheTreeAndReportsBadFiles() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let input = root.appendingPathComponent("in"), output = root.appendingPathComponent("out")
        try makeClassTree(input)
        let report = try convertImages(from: input, to: output, options: ConvertOptions(size: 4, channels: 1, format: .jpeg))
        let written = report.written.map { String($0.path.dropFirst(output.path.count + 1)) }.sorted()
        XCTAssertEqual(written, ["a/1.jpg", "a/2.jpg", "a/sub/3.jpg", "b/x.jpg", "loose.jpg"])
        XCTAssertEqual(report.failed.map { $0.url.lastPathComponent }, ["notes.txt"])
        for url in report.written {
            let image = try readImage(at: url)
            XCTAssertEqual([image.width, image.height, image.channels, image.bitDepth], [4, 4, 1, 8], url.path)
        }
        XCTAssertThrowsError(try convertImages(from: input, to: input, options: ConvertOptions()))
    }

    func testFileConversionFollowsTheOutputExtension() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let source = root.appendingPathComponent("deep.png")
        try writePNG(ramp(6, 4, channels: 4, bitDepth: 16), to: source)
        // 16-bit RGBA to JPEG: alpha dropped, 8-bit.
        let jpeg = root.appendingPathComponent("out.jpeg")
        _ = try convertImages(from: source, to: jpeg, options: ConvertOptions())
        let back = try readImage(at: jpeg)
        XCTAssertEqual([back.width, back.height, back.channels, back.bitDepth], [6, 4, 3, 8])
        // Back to PNG at 16 bits, gray, 2x2.
        let png = root.appendingPathComponent("small.png")
        _ = try convertImages(from: jpeg, to: png, options: ConvertOptions(size: 2, channels: 1, bitDepth: 16))
        let small = try readImage(at: png)
        XCTAssertEqual([small.width, small.height, small.channels, small.bitDepth], [2, 2, 1, 16])
        XCTAssertEqual(small.samples.map { $0 % 257 }, [0, 0, 0, 0])  // 8-bit values widened exactly

        for (options, target, part) in [(ConvertOptions(bitDepth: 16), "x.jpg", "8-bit"),
                                        (ConvertOptions(), "x.tiff", "unknown output format"),
                                        (ConvertOptions(channels: 2), "x.png", "--channels")] {
            XCTAssertThrowsError(try convertImages(from: source, to: root.appendingPathComponent(target), options: options)) { error in
                XCTAssertTrue((error as? MedSynthError)?.message.contains(part) == true, "\(error)")
            }
        }
    }
}
