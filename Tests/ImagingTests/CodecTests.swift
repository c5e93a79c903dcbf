import Foundation
import XCTest
@testable import Imaging
import TestSupport
import Core

final class CodecTests: XCTestCase {
    /// Random samples of the given layout, reproducible from `seed`.
    private func randomImage(width: Int, height: Int, channels: Int, bitDepth: Int, seed: UInt64) -> Image {
        var random = RandomStream(seed: seed)
        let top = bitDepth == 16 ? 65536 : 256
        let samples = (0..<(width * height * channels)).map { _ in UInt16(random.int(below: top)) }
        return Image(width: width, height: height, channels: channels, bitDepth: bitDepth, samples: samples)
    }

    /// A smooth RGB or gray 8-bit image (JPEG-friendly).
    private func smoothImage(width: Int, height: Int, channels: Int) -> Image {
        var image = Image(width: width, height: height, channels: channels, bitDepth: 8)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels { image[x, y, c] = UInt16(20 + x * 4 + y * 3 + c * 30) }
            }
        }
        return image
    }

    private func assertMedSynthError(_ body: @autoclosure () throws -> Any, contains parts: [String],
                                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error containing \(parts)", file: file, line: line)
        } catch let error as MedSynthError {
            for part in parts {
                XCTAssertTrue(error.message.contains(part), "'\(error.message)' lacks '\(part)'", file: file, line: line)
            }
            XCTAssertFalse(error.message.contains("\n"), "error should be one line: \(error.message)", file: file, line: line)
        } catch {
            XCTFail("expected MedSynthError, got \(error)", file: file, line: line)
        }
    }

    // MARK: - Round trips

    func testPNGRoundTripsEveryLayoutAndDepthExactly() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        var seed: UInt64 = 1
        for bitDepth in [8, 16] {
            for channels in 1...4 {
                for interlaced in [false, true] {
                    seed += 1
                    let image = randomImage(width: 13, height: 7, channels: channels, bitDepth: bitDepth, seed: seed)
                    let bytes = try encodePNG(image, interlaced: interlaced)
                    XCTAssertEqual(ImageFormat.sniff(bytes), .png)
                    XCTAssertEqual(try decodeImage(bytes, name: "memory"), image, "\(channels)ch \(bitDepth)-bit interlaced=\(interlaced)")
                }
                let url = folder.appendingPathComponent("c\(channels)-d\(bitDepth).png")
                let image = randomImage(width: 5, height: 9, channels: channels, bitDepth: bitDepth, seed: seed + 100)
                try writePNG(image, to: url)
                XCTAssertEqual(try readImage(at: url), image)
                let header = try probeImage(readFileBytes(at: url), name: url.path)
                XCTAssertEqual(header, ImageHeader(format: .png, width: 5, height: 9, channels: channels, bitDepth: bitDepth))
            }
        }
        // Writing is atomic: no temporary files are left beside the outputs.
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        XCTAssertEqual(names.filter { $0.hasPrefix(".") }, [])
        XCTAssertEqual(names.count, 8)
    }

    func testPNGOverwriteReplacesTheFile() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("a.png")
        try writePNG(randomImage(width: 30, height: 30, channels: 3, bitDepth: 8, seed: 1), to: url)
        let second = randomImage(width: 2, height: 3, channels: 1, bitDepth: 16, seed: 2)
        try writePNG(second, to: url)
        XCTAssertEqual(try readImage(at: url), second)
    }

    func testJPEGRoundTripIsCloseAndQualityMatters() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        for channels in [1, 3] {
            let image = smoothImage(width: 24, height: 16, channels: channels)
            let url = folder.appendingPathComponent("smooth\(channels).jpg")
            try writeJPEG(image, to: url, quality: 98)
            let back = try readImage(at: url)
            XCTAssertEqual([back.width, back.height, back.channels, back.bitDepth], [24, 16, channels, 8])
            let errors = zip(image.samples, back.samples).map { abs(Int($0) - Int($1)) }
            let mean = Double(errors.reduce(0, +)) / Double(errors.count)
            XCTAssertLessThan(mean, 2.0, "\(channels) channels")
            XCTAssertLessThanOrEqual(errors.max()!, channels == 1 ? 6 : 24)
            XCTAssertEqual(try probeImage(readFileBytes(at: url), name: "x"),
                           ImageHeader(format: .jpeg, width: 24, height: 16, channels: channels, bitDepth: 8))
        }
        let noisy = randomImage(width: 32, height: 32, channels: 3, bitDepth: 8, seed: 9)
        XCTAssertLessThan(try encodeJPEG(noisy, quality: 20).count, try encodeJPEG(noisy, quality: 95).count)
    }

    func testJPEGRefusesWhatItCannotHold() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("x.jpg")
        assertMedSynthError(try writeJPEG(randomImage(width: 4, height: 4, channels: 1, bitDepth: 16, seed: 1), to: url),
                            contains: [url.path, "8-bit"])
        assertMedSynthError(try writeJPEG(randomImage(width: 4, height: 4, channels: 4, bitDepth: 8, seed: 1), to: url),
                            contains: [url.path, "4 channels"])
        assertMedSynthError(try encodeJPEG(randomImage(width: 4, height: 4, channels: 3, bitDepth: 8, seed: 1), quality: 0),
                            contains: ["quality"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
    }

    // MARK: - Fixtures from an independent encoder

    func testFixturesDecodeToTheExpectedSamples() throws {
        let expected = try expectedFixtures()
        XCTAssertEqual(Set(expected.keys), ["palette8.png", "palette4_trns.png", "gray2.png", "gray8_trns.png", "rgba16.png",
                                            "interlaced_rgb8.png", "interlaced_gray16.png", "gray_progressive.jpg"])
        for (name, want) in expected.sorted(by: { $0.key < $1.key }) {
            let image = try readImage(at: fixtureURL(name))
            XCTAssertEqual([image.width, image.height, image.channels, image.bitDepth],
                           [want.width, want.height, want.channels, want.bitDepth], name)
            if name.hasSuffix(".png") {
                XCTAssertEqual(image.samples, want.samples, name)
            } else {
                // Recorded from Pillow's libjpeg-turbo; allow one level for a different IDCT build.
                let worst = zip(image.samples, want.samples).map { abs(Int($0) - Int($1)) }.max() ?? 99
                XCTAssertLessThanOrEqual(worst, 1, name)
            }
        }
    }

    func testCMYKJPEGIsRefusedClearly() {
        let url = fixtureURL("cmyk.jpg")
        assertMedSynthError(try readImage(at: url), contains: [url.path, "CMYK JPEG is not supported"])
    }

    // MARK: - Bad input

    func testEmptyNonImageAndUnreadablePaths() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let empty = folder.appendingPathComponent("empty.png")
        try Data().write(to: empty)
        assertMedSynthError(try readImage(at: empty), contains: [empty.path, "empty"])

        let text = folder.appendingPathComponent("notes.png")
        try Data("these are not pixels".utf8).write(to: text)
        assertMedSynthError(try readImage(at: text), contains: [text.path, "not a PNG or JPEG"])

        let missing = folder.appendingPathComponent("missing.png")
        assertMedSynthError(try readImage(at: missing), contains: [missing.path, "No such file"])
        assertMedSynthError(try readImage(at: folder), contains: [folder.path, "folder"])

        // A PNG handed to the JPEG decoder (and vice versa) is named as such.
        let png = try encodePNG(randomImage(width: 2, height: 2, channels: 1, bitDepth: 8, seed: 3))
        assertMedSynthError(try decodeJPEG(png, name: "p.png"), contains: ["p.png", "not a JPEG"])
        let jpeg = try encodeJPEG(smoothImage(width: 8, height: 8, channels: 1))
        assertMedSynthError(try decodePNG(jpeg, name: "j.jpg"), contains: ["j.jpg", "not a PNG"])
    }

    func testEveryTruncationOfAPNGIsAnError() throws {
        let bytes = try encodePNG(randomImage(width: 9, height: 6, channels: 3, bitDepth: 16, seed: 4), interlaced: true)
        for length in 1..<bytes.count {
            assertMedSynthError(try decodeImage(Array(bytes[..<length]), name: "cut.png"), contains: ["cut.png"])
        }
        assertMedSynthError(try decodeImage(Array(bytes.dropLast(20)), name: "cut.png"), contains: ["cut.png", "truncated"])
    }

    func testEveryTruncationOfAJPEGIsAnError() throws {
        for progressive in [false, true] {
            let bytes = progressive
                ? try readFileBytes(at: fixtureURL("gray_progressive.jpg"))
                : try encodeJPEG(smoothImage(width: 20, height: 12, channels: 3), quality: 90)
            for length in 1..<bytes.count {
                assertMedSynthError(try decodeImage(Array(bytes[..<length]), name: "cut.jpg"), contains: ["cut.jpg"])
            }
            assertMedSynthError(try decodeImage(Array(bytes.dropLast(30)), name: "cut.jpg"), contains: ["cut.jpg", "truncated"])
        }
    }

    func testCorruptChunksAreErrors() throws {
        let png = try encodePNG(randomImage(width: 8, height: 8, channels: 1, bitDepth: 8, seed: 5))
        var header = png
        header[20] ^= 0xFF  // inside IHDR: its CRC no longer matches
        assertMedSynthError(try decodeImage(header, name: "bad.png"), contains: ["bad.png", "corrupt PNG", "CRC"])
        var data = png
        data[data.count - 20] ^= 0xFF  // inside the compressed IDAT data
        assertMedSynthError(try decodeImage(data, name: "bad.png"), contains: ["bad.png", "corrupt PNG"])

        var jpeg = try encodeJPEG(smoothImage(width: 8, height: 8, channels: 1))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 4] = 7  // sample precision 7 bits does not exist
        assertMedSynthError(try decodeImage(jpeg, name: "bad.jpg"), contains: ["bad.jpg", "JPEG", "precision"])
        var length = try encodeJPEG(smoothImage(width: 8, height: 8, channels: 1))
        length[sof + 3] = 5  // the frame header's length no longer matches its components
        assertMedSynthError(try decodeImage(length, name: "len.jpg"), contains: ["len.jpg", "corrupt JPEG"])
        // Lossless JPEG (SOF3, common in DICOM) is valid but beyond libjpeg's 8-bit API.
        var lossless = try encodeJPEG(smoothImage(width: 8, height: 8, channels: 1))
        lossless[sof + 1] = 0xC3
        assertMedSynthError(try decodeImage(lossless, name: "ll.jpg"), contains: ["ll.jpg", "unsupported JPEG"])
    }

    /// Random byte flips must give an image or a MedSynthError, never a crash or a hang.
    func testRandomCorruptionNeverCrashes() throws {
        let png = try encodePNG(randomImage(width: 12, height: 10, channels: 4, bitDepth: 8, seed: 6), interlaced: true)
        let jpeg = try encodeJPEG(smoothImage(width: 24, height: 16, channels: 3))
        var random = RandomStream(seed: 77)
        var failures = 0
        for original in [png, jpeg] {
            for _ in 0..<300 {
                var bytes = original
                for _ in 0..<(1 + random.int(below: 4)) {
                    bytes[3 + random.int(below: bytes.count - 3)] = UInt8(random.int(below: 256))
                }
                do { _ = try decodeImage(bytes, name: "fuzz") } catch let error as MedSynthError {
                    XCTAssertTrue(error.message.hasPrefix("fuzz: "), error.message)
                    failures += 1
                }
            }
        }
        XCTAssertGreaterThan(failures, 100)  // most PNG flips break a CRC
    }

    func testSideLimitIsCheckedBeforeDecoding() throws {
        let image = randomImage(width: 20, height: 10, channels: 1, bitDepth: 8, seed: 8)
        let png = try encodePNG(image)
        assertMedSynthError(try decodeImage(png, name: "big.png", maxSide: 16), contains: ["big.png", "20x10", "limit of 16"])
        XCTAssertEqual(try decodeImage(png, name: "ok.png", maxSide: 20), image)

        // Headers claiming 100000 x 100000 pixels are refused at the default limit without
        // allocating 10^10 samples. PNG: rewrite IHDR (bytes 16..<24) and its CRC.
        var huge = png
        let side: [UInt8] = [0x00, 0x01, 0x86, 0xA0]  // 100000, big-endian
        huge.replaceSubrange(16..<20, with: side)
        huge.replaceSubrange(20..<24, with: side)
        let crc = crc32(Array(huge[12..<29]))
        huge.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)])
        assertMedSynthError(try decodeImage(huge, name: "huge.png"), contains: ["huge.png", "100000x100000", "limit of 16384"])

        // JPEG: rewrite the SOF0 frame size (height, width 16-bit big-endian after the precision byte).
        var jpeg = try encodeJPEG(smoothImage(width: 8, height: 8, channels: 1))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: [0xEA, 0x60, 0xEA, 0x60])  // 60000 x 60000
        assertMedSynthError(try decodeImage(jpeg, name: "huge.jpg"), contains: ["huge.jpg", "60000x60000", "limit"])
    }

    /// CRC-32 as PNG defines it (ISO 3309), for patching a header in the test.
    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

/// Issue 16's crafted PNG/JPEG files (scripts/fixtures/make_hostile_fixtures.py).
extension CodecTests {
    func testJPEGCutShortByAnEndMarkerIsAnError() throws {
        let url = fixtureURL("hostile/jpeg_cut_eoi.jpg")
        assertMedSynthError(try readImage(at: url), contains: ["jpeg_cut_eoi.jpg", "premature end of JPEG data segment"])
    }

    func testTinyFilesDeclaringHugeImagesAreRefusedBeforeDecoding() throws {
        let start = Date()
        assertMedSynthError(try readImage(at: fixtureURL("hostile/jpeg_16384.jpg")),
                            contains: ["jpeg_16384.jpg", "16384x16384", "limit of 67108864 pixels per image"])
        assertMedSynthError(try readImage(at: fixtureURL("hostile/png_16384.png")),
                            contains: ["png_16384.png", "16384x16384", "limit of 67108864 pixels per image"])
        // The limit is a parameter: exactly at it decodes, one pixel over does not.
        let small = try encodePNG(Image(width: 20, height: 10, channels: 1, bitDepth: 8))
        assertMedSynthError(try decodeImage(small, name: "s.png", maxPixels: 199), contains: ["s.png", "20x10", "limit of 199 pixels"])
        XCTAssertNoThrow(try decodeImage(small, name: "s.png", maxPixels: 200))
        // Decoding 16384² would take many seconds and gigabytes; refusing takes milliseconds.
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }
}
