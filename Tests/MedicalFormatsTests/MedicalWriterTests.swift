import Foundation
import Imaging
import MedicalFormats
import XCTest
import TestSupport
import Core

final class MedicalWriterTests: XCTestCase {
    func randomImage(width: Int, height: Int, channels: Int, bitDepth: Int, seed: UInt64) -> Image {
        var stream = RandomStream(seed: seed)
        let top = bitDepth == 16 ? 65536 : 256
        return Image(width: width, height: height, channels: channels, bitDepth: bitDepth,
                     samples: (0..<(width * height * channels)).map { _ in UInt16(stream.int(below: top)) })
    }

    func testDICOMSecondaryCaptureRoundTripsEvery16BitValue() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        var image = randomImage(width: 7, height: 5, channels: 1, bitDepth: 16, seed: 1)
        image.samples[0] = 0
        image.samples[1] = 65535
        let url = folder.appendingPathComponent("sc.dcm")
        try writeDICOM(image, to: url)
        XCTAssertEqual(try readImages(at: url, options: MedicalReadOptions(window: .stored)), [image])
        // The default window written with the file maps every sample to itself.
        XCTAssertEqual(try readImages(at: url), [image])
        let file = try DICOMFile(contentsOf: url)
        XCTAssertEqual(file.transferSyntax, .explicitVRLittleEndian)
        XCTAssertEqual(file.string(.sopClassUID), DICOMUIDs.secondaryCaptureSOPClass)
        XCTAssertEqual(file.string(.photometricInterpretation), "MONOCHROME2")
        XCTAssertEqual(file.string(DICOMTag(0x0008, 0x0064)), "SYN")
        XCTAssertTrue(file.string(.sopInstanceUID)!.hasPrefix("2.25."))
        XCTAssertLessThanOrEqual(file.string(.sopInstanceUID)!.count, 64, "UIDs are at most 64 characters")
        // The meta group's instance UID matches the data set's.
        XCTAssertEqual(file.string(DICOMTag(0x0002, 0x0003)), file.string(.sopInstanceUID))
        // No temporary files left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["sc.dcm"])
    }

    func testDICOMRGBAndEightBitRoundTrip() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let rgb = randomImage(width: 3, height: 4, channels: 3, bitDepth: 8, seed: 2)
        let gray = randomImage(width: 5, height: 1, channels: 1, bitDepth: 8, seed: 3)
        let rgba = randomImage(width: 2, height: 2, channels: 4, bitDepth: 8, seed: 4)
        for (name, image, expected) in [("rgb", rgb, rgb), ("gray", gray, gray), ("rgba", rgba, rgba.converted(channels: 3))] {
            let url = folder.appendingPathComponent("\(name).dcm")
            try writeDICOM(image, to: url)
            XCTAssertEqual(try readImages(at: url), [expected], name)
        }
    }

    func testIdentifiersAreRemovedUnlessKept() throws {
        let source = try DICOMFile(contentsOf: fixtureURL("ct_explicit_le.dcm"))
        let image = Image(width: 2, height: 2, channels: 1, bitDepth: 8, samples: [1, 2, 3, 4])
        let removed = try DICOMFile(bytes: encodeDICOMSecondaryCapture(image, options: DICOMWriteOptions(source: source), path: "a"), path: "a")
        XCTAssertEqual(removed.string(.patientName), "")
        XCTAssertEqual(removed.string(.patientID), "")
        XCTAssertEqual(removed.string(DICOMTag(0x0012, 0x0062)), "YES")
        XCTAssertNotEqual(removed.string(.studyInstanceUID), source.string(.studyInstanceUID))
        XCTAssertFalse(removed.bytes.contains(subsequence: Array("Doe^Jane".utf8)), "patient name leaked")

        let kept = try DICOMFile(bytes: encodeDICOMSecondaryCapture(image, options: DICOMWriteOptions(source: source, keepIdentifiers: true), path: "b"), path: "b")
        XCTAssertEqual(kept.string(.patientName), "Doe^Jane")
        XCTAssertEqual(kept.string(.patientID), "ID-0042")
        XCTAssertEqual(kept.string(.studyInstanceUID), source.string(.studyInstanceUID))
        XCTAssertNil(kept.string(DICOMTag(0x0012, 0x0062)))
        // Never the source's series or instance.
        XCTAssertNotEqual(kept.string(.seriesInstanceUID), source.string(.seriesInstanceUID))
        XCTAssertNotEqual(kept.string(.sopInstanceUID), source.string(.sopInstanceUID))
    }

    func testSeededUIDsAreReproducibleAndDistinct() throws {
        var a: RandomStream? = RandomStream(seed: 7), b: RandomStream? = RandomStream(seed: 7), c: RandomStream? = RandomStream(seed: 8)
        let first = DICOMUIDs.make(stream: &a)
        XCTAssertEqual(first, DICOMUIDs.make(stream: &b))
        XCTAssertNotEqual(first, DICOMUIDs.make(stream: &a))
        XCTAssertNotEqual(first, DICOMUIDs.make(stream: &c))
        // 2.25 UIDs are a decimal integer below 2^128 without leading zeros (PS3.5 §B.2).
        let digits = first.dropFirst(5)
        XCTAssertTrue(digits.allSatisfy(\.isNumber))
        XCTAssertFalse(digits.hasPrefix("0") && digits.count > 1)
        XCTAssertLessThanOrEqual(digits.count, 39)
        var none: RandomStream? = nil
        XCTAssertNotEqual(DICOMUIDs.make(stream: &none), DICOMUIDs.make(stream: &none))
    }

    func testUIDDecimalConversionOfKnownValues() {
        // A stream whose first two 64-bit draws we know gives the same digits as Python's int().
        var stream = RandomStream(seed: 42)
        let hi = stream.nextUInt64(), lo = stream.nextUInt64()
        var again: RandomStream? = RandomStream(seed: 42)
        let uid = DICOMUIDs.make(stream: &again)
        // Check hi·2^64 + lo = digits by recomputing modulo 10^9 pieces.
        let digits = Array(uid.dropFirst(5)).map { UInt64(String($0))! }
        var rem: UInt64 = 0  // value mod (2^61 - 1) computed both ways
        let p: UInt64 = (1 << 61) - 1
        for d in digits { rem = UInt64((UInt128(rem) * 10 + UInt128(d)) % UInt128(p)) }
        let direct = UInt64((UInt128(hi) << 64 | UInt128(lo)) % UInt128(p))
        XCTAssertEqual(rem, direct)
    }

    func testNIfTIStackRoundTripsThroughGzip() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        for bitDepth in [8, 16] {
            let images = (0..<3).map { randomImage(width: 6, height: 4, channels: 1, bitDepth: bitDepth, seed: UInt64(10 + $0)) }
            for name in ["stack\(bitDepth).nii", "stack\(bitDepth).nii.gz"] {
                let url = folder.appendingPathComponent(name)
                try writeNIfTI(images, to: url)
                XCTAssertEqual(try readImages(at: url, options: MedicalReadOptions(window: .stored)), images, name)
            }
            let gz = try Data(contentsOf: folder.appendingPathComponent("stack\(bitDepth).nii.gz"))
            XCTAssertEqual(Array(gz.prefix(2)), [0x1F, 0x8B])
        }
        assertMedSynthError(["mixed.nii", "image 1 is 3x4"]) {
            try writeNIfTI([randomImage(width: 6, height: 4, channels: 1, bitDepth: 8, seed: 1),
                            randomImage(width: 3, height: 4, channels: 1, bitDepth: 8, seed: 1)],
                           to: folder.appendingPathComponent("mixed.nii"))
        }
    }

    func testExportConvertsBetweenFormats() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Multi-frame DICOM → one NIfTI stack → DICOM series, values kept throughout.
        let input = try fixtureURL("mono1_3frames.dcm")
        let stored = MedicalReadOptions(window: .stored)
        let frames = try readImages(at: input, options: stored)
        let nii = folder.appendingPathComponent("frames.nii.gz")
        let toNIfTI = try exportMedical(inputs: [input], to: nii, format: .nifti, readOptions: stored)
        XCTAssertEqual(toNIfTI.images, 3)
        XCTAssertEqual(try readImages(at: nii, options: stored), frames)
        let series = folder.appendingPathComponent("series")
        let toDICOM = try exportMedical(inputs: [nii], to: series, format: .dicom, readOptions: stored, uidSeed: 5)
        XCTAssertEqual(toDICOM.written.map(\.lastPathComponent), ["frames_0000.dcm", "frames_0001.dcm", "frames_0002.dcm"])
        let back = try toDICOM.written.flatMap { try readImages(at: $0, options: stored) }
        XCTAssertEqual(back, frames)
        let files = try toDICOM.written.map { try DICOMFile(contentsOf: $0) }
        XCTAssertEqual(Set(files.map { $0.string(.seriesInstanceUID)! }).count, 1, "one series")
        XCTAssertEqual(Set(files.map { $0.string(.sopInstanceUID)! }).count, 3, "distinct instances")
        XCTAssertEqual(files.map { $0.string(.instanceNumber)! }, ["1", "2", "3"])
        // Same seed, same UIDs.
        let again = try exportMedical(inputs: [nii], to: folder.appendingPathComponent("again"), format: .dicom, readOptions: stored, uidSeed: 5)
        XCTAssertEqual(try DICOMFile(contentsOf: again.written[0]).string(.sopInstanceUID), files[0].string(.sopInstanceUID))
        assertMedSynthError(["out.png", "must end in .nii"]) {
            try exportMedical(inputs: [input], to: folder.appendingPathComponent("out.png"), format: .nifti)
        }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard subsequence.count <= count else { return false }
        for start in 0...(count - subsequence.count) where Array(self[start..<(start + subsequence.count)]) == subsequence {
            return true
        }
        return false
    }
}

final class MedicalDatasetTests: XCTestCase {
    /// A DICOM folder is a dataset: multi-frame files give one entry per frame, stray files are skipped.
    func testDICOMFolderLoadsAsADataset() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = root.appendingPathComponent("series")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var values: [UInt16] = []
        for i in 0..<(8 * 8) { values.append(UInt16(i * 1000)) }
        let image = Image(width: 8, height: 8, channels: 1, bitDepth: 16, samples: values)
        try writeDICOM(image, to: folder.appendingPathComponent("slice1.dcm"))
        try writeDICOM(image, to: folder.appendingPathComponent("slice2.dcm"))
        try Data("not dicom".utf8).write(to: folder.appendingPathComponent("DICOMDIR.txt"))
        try writeNIfTI([image, image, image], to: folder.appendingPathComponent("volume.nii.gz"))
        let dataset = try ImageFolderDataset(root: folder, imageSize: 8, channels: 1)
        XCTAssertEqual(dataset.count, 5, "2 DICOM slices + 3 NIfTI slices")
        XCTAssertEqual(dataset.skipped.map(\.url.lastPathComponent), ["DICOMDIR.txt"])
        XCTAssertEqual(dataset.entries.filter { $0.url.lastPathComponent == "volume.nii.gz" }.map(\.frame), [0, 1, 2])
        // The 16-bit values come through exactly.
        XCTAssertEqual(try dataset.image(at: 0).samples, values)
    }
}
