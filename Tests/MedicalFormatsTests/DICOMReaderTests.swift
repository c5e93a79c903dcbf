import Foundation
import Imaging
import MedicalFormats
import XCTest
import TestSupport
import Core

final class DICOMReaderTests: XCTestCase {
    // MARK: - Fixtures written by pydicom

    func testExplicitLittleEndianCTMatchesPydicomAndSkipsSequencesAndPrivateTags() throws {
        let file = try DICOMFile(contentsOf: fixtureURL("ct_explicit_le.dcm"))
        let expected = try expectedValues()["ct_explicit_le.dcm"] as! [String: Any]
        XCTAssertEqual(file.transferSyntax, .explicitVRLittleEndian)
        XCTAssertEqual(file.string(.patientName), "Doe^Jane")
        // Undefined-length sequence contents and private elements are not kept.
        XCTAssertNil(file.elements[DICOMTag(0x0008, 0x0100)], "nested Code Value leaked to the top level")
        XCTAssertFalse(file.elements.keys.contains { $0.group == 0x0009 }, "private group kept")
        XCTAssertNotNil(file.elements[DICOMTag(0x0008, 0x2218)], "the sequence element itself is recorded")

        let info = try file.imageInfo()
        XCTAssertEqual(info.rows, 3)
        XCTAssertEqual(info.columns, 5)
        XCTAssertEqual(info.bitsStored, 12)
        XCTAssertEqual(info.rescaleIntercept, -1024)
        XCTAssertEqual(info.window?.center, 40)
        XCTAssertEqual(info.window?.width, 400)
        guard case .native(let frames) = try file.pixelData(info: info) else { return XCTFail("expected native pixels") }
        XCTAssertEqual(frames.count, 1)
        XCTAssertEqual(frames[0].values.map(Double.init), numbers(expected["stored"]))

        // File window 40/400 on HU = stored - 1024 (PS3.3 C.11.2.1.2.1): edges -160 and 239.
        // Row 0 stores 700, 911, 1122, 1333, 1544 → HU -324, -113, 98, 309, 520.
        let eight = try readDICOMSlices(file, bitDepth: 8)[0]
        XCTAssertEqual(Array(eight.samples[0..<5]), [0, 30, 165, 255, 255])  // (-113+160)/399·255 = 30.04
        let sixteen = try readDICOMSlices(file, bitDepth: 16)[0]
        XCTAssertEqual(Array(sixteen.samples[0..<4]), [0, 7720, 42376, 65535])  // 47/399·65535 = 7719.66
        XCTAssertEqual(try readDICOMSlices(file)[0].bitDepth, 16, "12-bit data defaults to 16-bit output")
    }

    func testDeflatedTransferSyntaxGivesTheSamePixels() throws {
        let deflated = try DICOMFile(contentsOf: fixtureURL("ct_deflated.dcm"))
        let plain = try DICOMFile(contentsOf: fixtureURL("ct_explicit_le.dcm"))
        XCTAssertEqual(deflated.transferSyntax, .deflatedExplicitVRLittleEndian)
        XCTAssertEqual(try readDICOMSlices(deflated, window: .stored), try readDICOMSlices(plain, window: .stored))
    }

    /// Issue 16: a deflated data set's Pixel Data of more than `spillPixelDataAbove` bytes is inflated
    /// into a temporary file and read back a frame at a time (a 0.65 MB file can hold 512 MB of
    /// pixels). Elements and frames equal the in-memory reading: pydicom's file (sequences and
    /// private tags before the pixels) and a 3-frame file with an undefined-length sequence before
    /// the pixel data and an element after it.
    func testDeflatedPixelDataInATemporaryFileReadsAsInMemory() throws {
        let b = DICOMBuilder.sequenceThenThreeFrames(modality: "CT")
        // Raw deflate (PS3.5 §A.5) = the gzip member without its 10-byte header and 8-byte trailer.
        let gzip = try gzipCompress(b.body, path: "made.dcm")
        var meta = b
        meta.transferSyntax = TransferSyntax.deflatedUID
        meta.body = []
        let made = meta.build() + gzip[10..<(gzip.count - 8)]
        for (name, bytes) in [("ct_deflated.dcm", try fixtureBytes("ct_deflated.dcm")), ("made.dcm", made)] {
            let memory = try DICOMFile(bytes: bytes, path: name)
            let spilled = try DICOMFile(bytes: bytes, path: name, spillPixelDataAbove: 0)
            let pixelBytes = try XCTUnwrap(memory.elements[.pixelData]).value.count
            XCTAssertEqual(spilled.bytes.count, memory.bytes.count - pixelBytes, "\(name): the pixel data is not in memory")
            XCTAssertEqual(Set(spilled.elements.keys), Set(memory.elements.keys), name)
            for (tag, element) in memory.elements where tag != .pixelData {
                XCTAssertEqual(spilled.bytes[try XCTUnwrap(spilled.elements[tag]).value], memory.bytes[element.value], "\(name) \(tag)")
            }
            XCTAssertEqual(try readDICOMSlices(spilled, window: .stored), try readDICOMSlices(memory, window: .stored), name)
            XCTAssertEqual(try readDICOMSlices(spilled), try readDICOMSlices(memory), name)
            let frames = try openDICOMFrames(spilled, window: .stored)
            XCTAssertEqual(try frames.image(at: frames.count - 1), try readDICOMSlices(memory, window: .stored).last, name)
        }
        XCTAssertNotNil(try DICOMFile(bytes: made, path: "made.dcm").elements[DICOMTag(0xFFFC, 0xFFFC)], "the element after the pixel data")
        // A stream cut inside the pixel data is an error either way.
        let cut = Array(made[..<(made.count - 40)])
        assertMedSynthError(["cut.dcm", "truncated"]) { try DICOMFile(bytes: cut, path: "cut.dcm", spillPixelDataAbove: 0) }
        assertMedSynthError(["cut.dcm", "truncated"]) { try DICOMFile(bytes: cut, path: "cut.dcm") }
    }

    func testImplicitVRSignedWithRescale() throws {
        let file = try DICOMFile(contentsOf: fixtureURL("mr_implicit_le.dcm"))
        let expected = try expectedValues()["mr_implicit_le.dcm"] as! [String: Any]
        XCTAssertEqual(file.transferSyntax, .implicitVRLittleEndian)
        let info = try file.imageInfo()
        XCTAssertTrue(info.isSigned)
        XCTAssertEqual(info.rescaleSlope, 2.5)
        XCTAssertEqual(info.rescaleIntercept, 10)
        guard case .native(let frames) = try file.pixelData(info: info) else { return XCTFail("expected native pixels") }
        let stored = numbers(expected["stored"])
        XCTAssertEqual(frames[0].values.map(Double.init), stored)
        // Exact 16-bit path: stored values shifted by +32768, nothing lost.
        let exact = try readDICOMSlices(file, window: .stored)[0]
        XCTAssertEqual(exact.bitDepth, 16)
        XCTAssertEqual(exact.samples.map { Int($0) - 32768 }, stored.map { Int($0) })
        // No file window: the modality range maps to 0...65535 (min → 0, max → 65535).
        let full = try readDICOMSlices(file)[0]
        let modality = stored.map { $0 * 2.5 + 10 }
        XCTAssertEqual(full.samples[modality.firstIndex(of: modality.min()!)!], 0)
        XCTAssertEqual(full.samples[modality.firstIndex(of: modality.max()!)!], 65535)
        // Pixel (x=1, y=0): stored 1017 → 2552.5; range -22447.5...5052.5 → 25000/27500·65535 = 59577.27.
        XCTAssertEqual(stored[1], 1017)
        XCTAssertEqual(full.samples[1], 59577)
    }

    func testExplicitBigEndianKeepsEvery16BitValue() throws {
        let file = try DICOMFile(contentsOf: fixtureURL("explicit_be.dcm"))
        let expected = try expectedValues()["explicit_be.dcm"] as! [String: Any]
        XCTAssertEqual(file.transferSyntax, .explicitVRBigEndian)
        let images = try readImages(at: fixtureURL("explicit_be.dcm"), options: MedicalReadOptions(window: .stored))
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(images[0].bitDepth, 16)
        XCTAssertEqual(images[0].width, 4)
        XCTAssertEqual(images[0].samples.map(Double.init), numbers(expected["stored"]))
    }

    func testRGBPlanarConfigurationOneMultiFrame() throws {
        let expected = try expectedValues()["rgb_planar1_2frames.dcm"] as! [String: Any]
        let images = try readImages(at: fixtureURL("rgb_planar1_2frames.dcm"))
        XCTAssertEqual(images.count, 2)
        XCTAssertTrue(images.allSatisfy { $0.channels == 3 && $0.bitDepth == 8 && $0.width == 3 && $0.height == 2 })
        XCTAssertEqual(images.flatMap(\.samples).map(Double.init), numbers(expected["rgb"]))
        // 16-bit output scales RGB by 257.
        let wide = try readImages(at: fixtureURL("rgb_planar1_2frames.dcm"), options: MedicalReadOptions(bitDepth: 16))
        XCTAssertEqual(wide[1].samples, images[1].samples.map { $0 * 257 })
    }

    func testMonochrome1IsInvertedAcrossFrames() throws {
        let expected = try expectedValues()["mono1_3frames.dcm"] as! [String: Any]
        let stored = numbers(expected["stored"])  // 0, 20, ..., 220
        let raw = try readImages(at: fixtureURL("mono1_3frames.dcm"), options: MedicalReadOptions(window: .stored))
        XCTAssertEqual(raw.count, 3)
        XCTAssertEqual(raw.flatMap(\.samples).map(Double.init), stored.map { 255 - $0 })
        // Full range over all three frames (0...220), then inverted: 20 → 255 - round(20/220·255) = 232.
        let windowed = try readImages(at: fixtureURL("mono1_3frames.dcm"))
        XCTAssertEqual(windowed[0].samples, [255, 232, 209, 185])
        XCTAssertEqual(windowed[2].samples.last, 0)
    }

    func testJPEGBaselineFramesDecodeLikePillow() throws {
        let expected = try expectedValues()["jpeg_baseline_2frames.dcm"] as! [String: Any]
        let decoded = numbers(expected["decoded"])
        let file = try DICOMFile(contentsOf: fixtureURL("jpeg_baseline_2frames.dcm"))
        guard case .jpegBaseline(let streams) = try file.pixelData(info: file.imageInfo()) else {
            return XCTFail("expected JPEG frames")
        }
        XCTAssertEqual(streams.count, 2)
        XCTAssertTrue(streams.allSatisfy { $0.starts(with: [0xFF, 0xD8]) })
        let images = try readImages(at: fixtureURL("jpeg_baseline_2frames.dcm"), options: MedicalReadOptions(window: .stored))
        XCTAssertEqual(images.count, 2)
        let ours = images.flatMap(\.samples).map(Double.init)
        XCTAssertEqual(ours.count, decoded.count)
        // libjpeg builds may differ by one level in the inverse DCT; allow 2.
        let worst = zip(ours, decoded).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 2)
    }

    func testOtherCompressedSyntaxesAreNamedAsUnsupported() throws {
        let url = try fixtureURL("jpeg2000.dcm")
        assertMedSynthError([url.path, "not supported: JPEG 2000 Image Compression"]) { try readImages(at: url) }
    }

    // MARK: - Files built here

    func testBitsStoredBelowAllocatedMasksAndSignExtends() throws {
        // 12 bits stored at bits 0...11, signed; the upper nibble holds garbage that must be masked.
        var b = DICOMBuilder.explicitLE()
        b.grayImage(rows: 1, cols: 4, stored: 12, high: 11, signed: true)
        b.pixels16([0xF7FF, 0x0800, 0xAFFF, 0x0001])  // +2047, -2048, -1, +1
        let file = try DICOMFile(bytes: b.build(), path: "built.dcm")
        guard case .native(let frames) = try file.pixelData(info: file.imageInfo()) else { return XCTFail() }
        XCTAssertEqual(frames[0].values, [2047, -2048, -1, 1])
        // Stored output shifts by 2^11 and fits 16 bits (12 bits wide).
        XCTAssertEqual(try readDICOMSlices(file, window: .stored)[0].samples, [4095, 0, 2047, 2049])
    }

    func testHighBitShiftedData() throws {
        // 8 bits stored in bits 4...11 (high bit 11): value = (word >> 4) & 0xFF.
        var b = DICOMBuilder.implicitLE()
        b.grayImage(rows: 1, cols: 2, stored: 8, high: 11)
        b.pixels16([0x0AB0, 0xF12F])
        let file = try DICOMFile(bytes: b.build(), path: "shifted.dcm")
        XCTAssertEqual(try readDICOMSlices(file, window: .stored)[0].samples, [0xAB, 0x12])
    }

    func testBigEndianOWWithEightBitSamplesIsSwappedWithinWords() throws {
        var b = DICOMBuilder.explicitBE()
        b.grayImage(rows: 1, cols: 4, bits: 8)
        b.add(0x7FE0, 0x0010, "OW", [20, 10, 40, 30])  // words 0x140A, 0x281E hold samples 10, 20, 30, 40
        let file = try DICOMFile(bytes: b.build(), path: "be8.dcm")
        XCTAssertEqual(try readDICOMSlices(file, window: .stored)[0].samples, [10, 20, 30, 40])
    }

    func testPresetAndExplicitWindowsMatchHandComputedValues() throws {
        // One pixel at HU 0 (stored 1024, intercept -1024) and one at HU 40.
        var b = DICOMBuilder.explicitLE()
        b.grayImage(rows: 1, cols: 2)
        b.text(0x0028, 0x1052, "DS", "-1024")
        b.text(0x0028, 0x1053, "DS", "1")
        b.pixels16([1024, 1064])
        let file = try DICOMFile(bytes: b.build(), path: "ct.dcm")
        func render(_ window: String) throws -> [UInt16] {
            try readDICOMSlices(file, window: MedicalWindow(parsing: window), bitDepth: 8)[0].samples
        }
        // Edges c-0.5∓(w-1)/2; y = (x - lower)/(upper - lower)·255, rounded.
        XCTAssertEqual(try render("lung"), [230, 236])          // -1350...149: 1350/1499·255 = 229.65
        XCTAssertEqual(try render("mediastinum"), [91, 121])    // -125...224: 125/349·255 = 91.33
        XCTAssertEqual(try render("bone"), [71, 77])            // -500...1299: 500/1799·255 = 70.87
        XCTAssertEqual(try render("brain"), [0, 129])           // 0...79: HU 0 is at the lower edge; 40/79·255 = 129.1
        XCTAssertEqual(try render("soft-tissue"), [96, 121])    // -150...249: 150/399·255 = 95.86
        XCTAssertEqual(try render("0,1000"), [128, 138])        // -500...499: 500/999·255 = 127.63
        XCTAssertEqual(try readDICOMSlices(file, window: .explicit(center: 0, width: 1000), bitDepth: 16)[0].samples,
                       [32800, 35424])                          // 500/999·65535 = 32800.3; 540/999·65535 = 35424.3
    }

    func testWindowParsing() throws {
        XCTAssertEqual(try MedicalWindow(parsing: "Lung"), .preset(.lung))
        XCTAssertEqual(try MedicalWindow(parsing: "-600, 1500"), .explicit(center: -600, width: 1500))
        XCTAssertEqual(try MedicalWindow(parsing: "file"), .fileDefault)
        XCTAssertEqual(try MedicalWindow(parsing: "stored"), .stored)
        assertMedSynthError(["width must be at least 1"]) { try MedicalWindow(parsing: "40,0") }
        assertMedSynthError(["expected file|full|stored|lung"]) { try MedicalWindow(parsing: "liver") }
    }

    // MARK: - Bad input

    func testNotDICOMAndUnknownTransferSyntax() throws {
        assertMedSynthError(["x.dcm", "no 'DICM' at offset 128"]) { try DICOMFile(bytes: [UInt8](repeating: 0, count: 200), path: "x.dcm") }
        var b = DICOMBuilder.explicitLE()
        b.transferSyntax = "1.2.3.999"
        b.grayImage(rows: 1, cols: 1)
        assertMedSynthError(["u.dcm", "not supported: unknown transfer syntax '1.2.3.999'"]) { try DICOMFile(bytes: b.build(), path: "u.dcm") }
        var rle = DICOMBuilder.explicitLE()
        rle.transferSyntax = "1.2.840.10008.1.2.5"
        rle.grayImage(rows: 1, cols: 1)
        rle.pixels16([1])
        assertMedSynthError(["rle.dcm", "not supported: RLE Lossless"]) {
            let file = try DICOMFile(bytes: rle.build(), path: "rle.dcm")
            return try readDICOMSlices(file)
        }
    }

    func testTruncatedAndLyingLengths() throws {
        var b = DICOMBuilder.explicitLE()
        b.grayImage(rows: 2, cols: 2)
        b.pixels16([1, 2, 3, 4])
        let good = b.build()
        XCTAssertNoThrow(try DICOMFile(bytes: good, path: "ok.dcm"))
        // Cut inside the pixel data value, and inside an element header.
        assertMedSynthError(["cut.dcm", "truncated"]) { try DICOMFile(bytes: Array(good.dropLast(3)), path: "cut.dcm") }
        assertMedSynthError(["cut.dcm", "truncated"]) { try DICOMFile(bytes: Array(good.prefix(good.count - 12)), path: "cut.dcm") }
        // Zero padding after the last element is tolerated; a non-zero tail is not.
        XCTAssertEqual(try readDICOMSlices(DICOMFile(bytes: good + [0, 0, 0, 0, 0], path: "pad.dcm"), window: .stored)[0].samples, [1, 2, 3, 4])
        assertMedSynthError(["tail.dcm", "truncated"]) { try DICOMFile(bytes: good + [0, 0, 7], path: "tail.dcm") }
        // A pixel data length far past the end of the file.
        var liar = DICOMBuilder.explicitLE()
        liar.grayImage(rows: 2, cols: 2)
        liar.add(0x7FE0, 0x0010, "OW", [1, 0, 2, 0], length: 0x7FFF_FFF0)
        assertMedSynthError(["liar.dcm", "truncated", "length 2147483632"]) { try DICOMFile(bytes: liar.build(), path: "liar.dcm") }
    }

    func testAbsurdDimensionsAreRefusedWithoutAllocating() throws {
        var b = DICOMBuilder.explicitLE()
        b.grayImage(rows: 65535, cols: 65535, frames: 2_000_000_000)
        b.pixels16([1, 2])
        let file = try DICOMFile(bytes: b.build(), path: "huge.dcm")
        assertMedSynthError(["huge.dcm", "pixel data has 4 bytes"]) { try readDICOMSlices(file) }
        var zero = DICOMBuilder.explicitLE()
        zero.grayImage(rows: 0, cols: 4)
        zero.pixels16([])
        assertMedSynthError(["zero.dcm", "4x0"]) { try readDICOMSlices(DICOMFile(bytes: zero.build(), path: "zero.dcm")) }
        var bits = DICOMBuilder.explicitLE()
        bits.grayImage(rows: 1, cols: 1, bits: 32)
        bits.add(0x7FE0, 0x0010, "OW", [0, 0, 0, 0])
        assertMedSynthError(["not supported: 32 bits allocated"]) { try readDICOMSlices(DICOMFile(bytes: bits.build(), path: "b.dcm")) }
    }

    func testDeeplyNestedSequencesAreRejected() throws {
        // 40 nested undefined-length sequences, each opening an undefined-length item.
        var b = DICOMBuilder.explicitLE()
        for _ in 0..<40 {
            b.add(0x0008, 0x1115, "SQ", [], length: 0xFFFF_FFFF)
            b.body += [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
        }
        assertMedSynthError(["deep.dcm", "nested deeper than"]) { try DICOMFile(bytes: b.build(), path: "deep.dcm") }
        // An undefined-length sequence that never ends.
        var open = DICOMBuilder.explicitLE()
        open.add(0x0008, 0x1115, "SQ", [], length: 0xFFFF_FFFF)
        open.body += [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
        assertMedSynthError(["open.dcm", "truncated"]) { try DICOMFile(bytes: open.build(), path: "open.dcm") }
    }

    func testFolderLoaderHelpers() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let dicom = folder.appendingPathComponent("a.dcm"), text = folder.appendingPathComponent("notes.txt")
        try Data(try fixtureBytes("ct_explicit_le.dcm")).write(to: dicom)
        try Data("hello".utf8).write(to: text)
        XCTAssertTrue(isDICOMFile(at: dicom))
        XCTAssertFalse(isDICOMFile(at: text))
        XCTAssertFalse(isDICOMFile(at: folder.appendingPathComponent("missing")))
    }
}
