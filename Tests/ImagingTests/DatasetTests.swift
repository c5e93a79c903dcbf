import Foundation
import MedicalFormats
import XCTest
@testable import Imaging
import TestSupport
import Core
#if canImport(Glibc)
import Glibc
#endif

private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }

/// Runs `body` on another thread and fails (instead of hanging the suite) when it takes longer than `seconds`.
private func finishes<T>(within seconds: Double, _ what: String, _ body: @escaping () throws -> T,
                         file: StaticString = #filePath, line: UInt = #line) throws -> T {
    let box = ResultBox<T>(), done = DispatchSemaphore(value: 0)
    Thread.detachNewThread { box.result = Result { try body() }; done.signal() }
    guard done.wait(timeout: .now() + seconds) == .success, let result = box.result else {
        XCTFail("\(what) did not finish within \(seconds) s (blocked)", file: file, line: line)
        throw XCTSkip("blocked")
    }
    return try result.get()
}

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

    // MARK: - Hostile folders (issue 16)

    /// root/a/{1.png, pipe (FIFO), up -> .., twin.png -> 1.png, sibling -> ../b}, root/b/x.png, root/c -> a.
    private func makeHostileTree(_ root: URL) throws {
        try writeImage(ramp(6, 6), root.appendingPathComponent("a/1.png"))
        try writeImage(ramp(6, 6, offset: 9), root.appendingPathComponent("b/x.png"))
        XCTAssertEqual(mkfifo(root.appendingPathComponent("a/pipe").path, 0o644), 0)
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/up").path, withDestinationPath: "..")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/twin.png").path, withDestinationPath: "1.png")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("a/sibling").path, withDestinationPath: "../b")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("c").path, withDestinationPath: "a")
    }

    func testFIFOsAndLinkCyclesAreSkippedWithANoteAndNothingCountsTwice() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeHostileTree(root)
        let dataset = try finishes(within: 20, "dataset scan") { try ImageFolderDataset(root: root, imageSize: 4, channels: 1) }
        XCTAssertEqual(dataset.classNames, ["a", "b"], "c is the same folder as a")
        XCTAssertEqual(dataset.countsPerClass, [1, 1])
        XCTAssertEqual(dataset.entries.map { $0.url.lastPathComponent }, ["1.png", "x.png"])
        let reasons = Dictionary(uniqueKeysWithValues: dataset.skipped.map { ($0.url.lastPathComponent, $0.reason) })
        XCTAssertEqual(Set(reasons.keys), ["pipe", "up", "twin.png", "sibling", "c"])
        XCTAssertEqual(reasons["pipe"], "not a regular file (a FIFO); skipped")
        XCTAssertTrue(reasons["up"]!.contains("folder already scanned"), reasons["up"]!)
        XCTAssertTrue(reasons["twin.png"]!.hasPrefix("same file as "), reasons["twin.png"]!)

        let summary = try finishes(within: 20, "info") { try summarizeFolder(root) }
        XCTAssertEqual(summary.imageCount, 2)
        XCTAssertTrue(summary.unreadable.contains { $0.url.lastPathComponent == "pipe" })
        let report = try finishes(within: 20, "convert") {
            try convertImages(from: root, to: root.deletingLastPathComponent().appendingPathComponent(root.lastPathComponent + "-out"), options: ConvertOptions())
        }
        defer { try? FileManager.default.removeItem(at: root.deletingLastPathComponent().appendingPathComponent(root.lastPathComponent + "-out")) }
        XCTAssertEqual(report.written.map { $0.lastPathComponent }.sorted(), ["1.png", "x.png"])
        XCTAssertTrue(report.failed.contains { $0.url.lastPathComponent == "pipe" && $0.reason.contains("FIFO") })
        // A FIFO given directly is refused at once, not opened for a blocking read.
        XCTAssertThrowsError(try finishes(within: 20, "head of a FIFO") { try readFileHead(root.appendingPathComponent("a/pipe"), count: 8) }) {
            XCTAssertTrue("\($0)".contains("not a regular file (a FIFO)"), "\($0)")
        }
    }

    // MARK: - DICOM and NIfTI in info and convert (issue 16)

    func testFoldersOfDICOMAndNIfTIAreSummarisedAndConvertedThroughTheDatasetReader() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let scans = root.appendingPathComponent("scans")
        try FileManager.default.createDirectory(at: scans, withIntermediateDirectories: true)
        let single = ramp(5, 4), first = ramp(6, 3, offset: 40), second = ramp(6, 3, offset: 90), uid = ramp(3, 3, offset: 7)
        try writeDICOM(single, to: scans.appendingPathComponent("IM0001"))           // no extension
        try writeDICOM(uid, to: scans.appendingPathComponent("1.2.840.99.7"))        // UID-like name: dots are not extensions
        try writeNIfTI([first, second], to: scans.appendingPathComponent("vol.nii.gz"))

        let stored = MedicalReadOptions(window: .stored)
        let summary = try summarizeFolder(scans, medical: stored)
        XCTAssertEqual(summary.imageCount, 4)
        XCTAssertEqual(summary.fileCount, 3)
        XCTAssertEqual(summary.medicalFiles.map(\.kind), ["DICOM OT", "NIfTI-1"])
        XCTAssertEqual(summary.medicalFiles.map(\.count), [2, 1])
        XCTAssertTrue(summary.unreadable.isEmpty, summary.description)
        XCTAssertTrue(summary.description.contains("4 images in 1 class (from 3 files)"), summary.description)

        let out = root.appendingPathComponent("pngs")
        let report = try convertImages(from: scans, to: out, options: ConvertOptions(medical: stored))
        XCTAssertTrue(report.failed.isEmpty, report.description)
        XCTAssertEqual(report.written.map { $0.lastPathComponent }.sorted(),
                       ["1.2.840.99.7.png", "IM0001.png", "vol_0000.png", "vol_0001.png"])
        // With the stored window the samples come back exactly.
        for (name, original) in [("IM0001.png", single), ("1.2.840.99.7.png", uid), ("vol_0000.png", first), ("vol_0001.png", second)] {
            let back = try readImage(at: out.appendingPathComponent(name))
            XCTAssertEqual([back.width, back.height, back.channels, back.bitDepth], [original.width, original.height, 1, 8], name)
            XCTAssertEqual(back.samples, original.samples, name)
        }
        // One slice of a volume to one file: exactly the output name; several: numbered.
        let one = root.appendingPathComponent("one.png")
        var options = ConvertOptions(medical: stored)
        options.medical.slices = .range(1...1)
        XCTAssertEqual(try convertImages(from: scans.appendingPathComponent("vol.nii.gz"), to: one, options: options).written, [one])
        XCTAssertEqual(try readImage(at: one).samples, second.samples)
        XCTAssertEqual(try convertImages(from: scans.appendingPathComponent("vol.nii.gz"), to: root.appendingPathComponent("v.jpg"),
                                         options: ConvertOptions(medical: stored)).written.map(\.lastPathComponent), ["v_0000.jpg", "v_0001.jpg"])
        XCTAssertEqual(outputStem("a/scan.nii.gz", kind: .nifti), "a/scan")
        XCTAssertEqual(outputStem("a/IM.DCM", kind: .dicom), "a/IM")
        XCTAssertEqual(outputStem("a/1.2.3", kind: .dicom), "a/1.2.3")
        XCTAssertEqual(outputStem("a/b.jpeg", kind: .image), "a/b")
    }

    func testSingleMedicalFileInfoShowsModalityFramesDepthAndWindow() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("scan")
        try writeDICOM(ramp(5, 4, bitDepth: 8), to: url)
        let info = try medicalFileInfo(at: url, options: MedicalReadOptions(window: .stored))
        XCTAssertEqual(info.kind, "DICOM")
        XCTAssertEqual(info.modality, "OT")
        XCTAssertEqual(info.frames, 1)
        XCTAssertEqual(info.imageCount, 1)
        XCTAssertEqual(info.minimum, [Int(ramp(5, 4).samples.min()!)])
        XCTAssertEqual(info.maximum, [Int(ramp(5, 4).samples.max()!)])
        XCTAssertTrue(info.description.contains("8 of 8 bits stored"), info.description)
        XCTAssertTrue(info.description.contains("window: none: stored values kept exactly"), info.description)
        let text = try describeFile(at: url, medical: MedicalReadOptions(window: .preset(.brain)))
        XCTAssertTrue(text.contains("window: preset brain: center 40, width 80"), text)
        let volume = root.appendingPathComponent("v.nii")
        try writeNIfTI([ramp(4, 3), ramp(4, 3, offset: 5), ramp(4, 3, offset: 9)], to: volume)
        let nifti = try medicalFileInfo(at: volume, options: MedicalReadOptions(slices: .range(0...1)))
        XCTAssertEqual(nifti.kind, "NIfTI-1")
        XCTAssertNil(nifti.modality)
        XCTAssertEqual(nifti.frames, 3)
        XCTAssertEqual(nifti.imageCount, 2)
        XCTAssertTrue(nifti.description.contains("4x3x3 voxels, 1 volume, uint8 (8 bits)"), nifti.description)
        // An uncompressed NIfTI-1 file without its name is still found by its "n+1" magic at offset 344.
        let unnamed = root.appendingPathComponent("anatomy")
        try FileManager.default.copyItem(at: volume, to: unnamed)
        XCTAssertNil(FolderScan.notAnImageReason(unnamed))
        XCTAssertEqual(try medicalFileInfo(at: unnamed).imageCount, 3)
    }

    // MARK: - Stale temporaries (issue 16)

    func testTemporaryNamesAndLiveWriters() throws {
        XCTAssertEqual(parseTemporaryName(".sample_000001.png.tmp-4242-123")?.name, "sample_000001.png")
        XCTAssertEqual(parseTemporaryName(".manifest.jsonl.tmp-77")?.pid, 77)
        for name in ["sample_000001.png.tmp-1", ".x.tmp-", ".x.tmp-12a", ".x.tmp-1-2-3", ".tmp-5", ".x.tmp--1"] {
            XCTAssertNil(parseTemporaryName(name), name)
        }
        XCTAssertTrue(isLiveWriter(getpid()))
        // A running process that is not medsynth (its pid reused) is not a writer; neither is a finished one.
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        try sleeper.run()
        defer { sleeper.terminate(); sleeper.waitUntilExit() }
        XCTAssertFalse(isLiveWriter(sleeper.processIdentifier))
        let done = Process()
        done.executableURL = URL(fileURLWithPath: "/bin/sh")
        done.arguments = ["-c", "exit 0"]
        try done.run()
        done.waitUntilExit()
        XCTAssertFalse(isLiveWriter(done.processIdentifier))
        // Only the named files, only orphans, only regular files.
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let orphan = folder.appendingPathComponent(".a.png.tmp-\(done.processIdentifier)")
        let live = folder.appendingPathComponent(".a.png.tmp-\(getpid())-9")
        let other = folder.appendingPathComponent(".b.png.tmp-\(done.processIdentifier)")
        for url in [orphan, live, other] { try Data("x".utf8).write(to: url) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent(".a.png.tmp-\(sleeper.processIdentifier)"), withIntermediateDirectories: true)
        XCTAssertEqual(removeStaleTemporaries(in: folder, for: ["a.png"]), [orphan])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)),
                       [live.lastPathComponent, other.lastPathComponent, ".a.png.tmp-\(sleeper.processIdentifier)"])
    }
}
