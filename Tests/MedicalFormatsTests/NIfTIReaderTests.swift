import Foundation
import Imaging
import MedicalFormats
import XCTest
import TestSupport
import Core

final class NIfTIReaderTests: XCTestCase {
    /// Compares every slice along every axis (and every volume) with nibabel's canonical slices.
    func checkAgainstNibabel(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let volume = try NIfTIVolume(contentsOf: fixtureURL(name))
        let expected = try expectedValues()[name] as! [String: Any]
        for axis in SliceAxis.allCases {
            let slices = expected[axis.rawValue] as! [Any]
            var ours: [[Double]] = []
            for t in 0..<volume.header.volumes {
                for k in 0..<volume.sliceCount(axis) {
                    let frame = try volume.slice(axis, index: k, volume: t)
                    ours.append(frame.values.map { Double($0) * volume.header.slope + volume.header.intercept })
                }
            }
            XCTAssertEqual(ours.count, slices.count, "\(name) \(axis): slice count", file: file, line: line)
            for (k, (mine, theirs)) in zip(ours, slices.map(numbers)).enumerated() {
                XCTAssertEqual(mine.count, theirs.count, "\(name) \(axis) slice \(k): size", file: file, line: line)
                let worst = zip(mine, theirs).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-4, "\(name) \(axis) slice \(k): \(mine) vs \(theirs)", file: file, line: line)
            }
        }
    }

    func testGzippedInt16WithScalingAndFlippedAffine() throws {
        try checkAgainstNibabel("int16_las_scaled.nii.gz")
        let header = try NIfTIVolume(contentsOf: fixtureURL("int16_las_scaled.nii.gz")).header
        XCTAssertEqual(header.slope, 0.5)
        XCTAssertEqual(header.intercept, -10)
        XCTAssertEqual(header.orientation.flip, [true, false, false])
    }

    func testBigEndianFloat32FourDimensional() throws {
        try checkAgainstNibabel("float32_be_4d.nii")
        let volume = try NIfTIVolume(contentsOf: fixtureURL("float32_be_4d.nii"))
        XCTAssertTrue(volume.header.bigEndian)
        XCTAssertEqual(volume.header.volumes, 2)
        // Both volumes' axial slices by default; one volume when asked.
        XCTAssertEqual(try volume.slices().count, 4)
        XCTAssertEqual(try volume.slices(MedicalReadOptions(volume: 1)).count, 2)
        assertMedSynthError(["volume 2 does not exist"]) { try volume.slices(MedicalReadOptions(volume: 2)) }
    }

    func testPermutedSformAndQformOnlyOrientations() throws {
        try checkAgainstNibabel("uint8_permuted.nii")
        try checkAgainstNibabel("uint8_qform_rot90.nii")
    }

    func testWindowingOfVolumeUsesWholeVolumeRange() throws {
        // int16 fixture: modality = 0.5·stored - 10 with stored = 100i + 10j + k - 50 → -35...181.
        let images = try readImages(at: fixtureURL("int16_las_scaled.nii.gz"), options: MedicalReadOptions(bitDepth: 8))
        XCTAssertEqual(images.count, 3)
        let all = images.flatMap(\.samples)
        XCTAssertEqual(all.min(), 0)
        XCTAssertEqual(all.max(), 255)
        // Axial slice 0 (k = 0), top-left pixel: most anterior row (j = 3) and patient's left
        // (after flipping i, x = 0 is i = 4): stored 400 + 30 - 50 = 380 → 180; (180+35)/216·255 = 253.8.
        XCTAssertEqual(images[0][0, 0, 0], 254)
        // Stored path keeps int16 values exactly (+32768).
        let exact = try readImages(at: fixtureURL("int16_las_scaled.nii.gz"), options: MedicalReadOptions(window: .stored))
        XCTAssertEqual(Int(exact[0][0, 0, 0]) - 32768, 380)
    }

    func testSliceSelection() throws {
        // 4x4x5 uint8 volume; slice k has (k) foreground pixels of value 200 on a background of 0.
        var voxels = [UInt16](repeating: 0, count: 4 * 4 * 5)
        for k in 0..<5 { for p in 0..<k * 3 { voxels[k * 16 + p] = 200 } }
        let slices = (0..<5).map { k in
            Image(width: 4, height: 4, channels: 1, bitDepth: 8, samples: Array(voxels[(k * 16)..<(k * 16 + 16)]))
        }
        let bytes = try encodeNIfTIStack(slices, path: "sel.nii")
        let volume = try NIfTIVolume(bytes: bytes, path: "sel.nii")
        let stored = MedicalReadOptions(window: .stored)
        var options = stored
        options.slices = .range(1...3)
        XCTAssertEqual(try volume.slices(options), Array(slices[1...3]))
        options.slices = try SliceSelection(parsing: "foreground:0.5")  // ≥ 8 of 16 pixels: k = 3 (9), 4 (12)
        XCTAssertEqual(try volume.slices(options), Array(slices[3...4]))
        options.slices = try SliceSelection(parsing: "foreground:0.1@150")  // ≥ 1.6 pixels above 150: k ≥ 1
        XCTAssertEqual(try volume.slices(options).count, 4)
        options.slices = .range(2...7)
        assertMedSynthError(["sel.nii", "outside 0-4 along axial"]) { try volume.slices(options) }
        XCTAssertEqual(try SliceSelection(parsing: "7"), .range(7...7))
        XCTAssertEqual(try SliceSelection(parsing: "foreground"), .foreground(minFraction: 0.1, threshold: nil))
        assertMedSynthError(["expected all, N, A-B"]) { try SliceSelection(parsing: "5-2") }
        // Coronal and sagittal cuts have the other shapes.
        XCTAssertEqual(volume.sliceCount(.coronal), 4)
        let coronal = try volume.slices(MedicalReadOptions(window: .stored, axis: .coronal))
        XCTAssertEqual(coronal.count, 4)
        XCTAssertEqual(coronal[0].width, 4)
        XCTAssertEqual(coronal[0].height, 5)
    }

    // MARK: - Bad input

    func testHeaderErrors() throws {
        let good = try encodeNIfTIStack([Image(width: 2, height: 2, channels: 1, bitDepth: 8, samples: [1, 2, 3, 4])], path: "g.nii")
        XCTAssertNoThrow(try NIfTIVolume(bytes: good, path: "g.nii"))
        assertMedSynthError(["s.nii", "truncated", "348"]) { try NIfTIVolume(bytes: Array(good.prefix(100)), path: "s.nii") }
        assertMedSynthError(["d.nii", "truncated", "need 4 bytes"]) { try NIfTIVolume(bytes: Array(good.dropLast(1)), path: "d.nii") }
        var bad = good
        bad[0] = 0x10
        assertMedSynthError(["h.nii", "not a NIfTI-1 file"]) { try NIfTIVolume(bytes: bad, path: "h.nii") }
        bad = good
        bad[345] = 0x69  // "ni1": header/image pair
        assertMedSynthError(["p.nii", ".hdr/.img"]) { try NIfTIVolume(bytes: bad, path: "p.nii") }
        bad = good
        bad[70] = 32; bad[71] = 0  // DT_COMPLEX64
        assertMedSynthError(["c.nii", "not supported: NIfTI datatype 32"]) { try NIfTIVolume(bytes: bad, path: "c.nii") }
        bad = good
        bad[42] = 0xFF; bad[43] = 0xFF  // dim[1] = -1
        assertMedSynthError(["n.nii", "dim[1] is -1"]) { try NIfTIVolume(bytes: bad, path: "n.nii") }
        bad = good
        for d in 1...3 { bad[40 + 2 * d] = 0xFF; bad[41 + 2 * d] = 0x7F }  // 32767³ voxels in a 356-byte file
        assertMedSynthError(["big.nii", "truncated"]) { try NIfTIVolume(bytes: bad, path: "big.nii") }
    }

    func testGzipErrorsAndDecompressionLimit() throws {
        let gz = try fixtureBytes("int16_las_scaled.nii.gz")
        XCTAssertNoThrow(try NIfTIVolume(bytes: gz, path: "ok.nii.gz"))
        assertMedSynthError(["cut.nii.gz", "gzip data is truncated"]) { try NIfTIVolume(bytes: Array(gz.prefix(gz.count / 2)), path: "cut.nii.gz") }
        var corrupt = gz
        for i in 12..<40 { corrupt[i] ^= 0x5A }
        assertMedSynthError(["bad.nii.gz", "gzip data"]) { try NIfTIVolume(bytes: corrupt, path: "bad.nii.gz") }
        assertMedSynthError(["ok.nii.gz", "exceeds the limit of 300 decompressed bytes"]) {
            try NIfTIVolume(bytes: gz, path: "ok.nii.gz", maxDecompressedBytes: 300)
        }
    }
}
