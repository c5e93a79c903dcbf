import Core
import TestSupport
import Foundation
import Imaging
@testable import MedicalFormats
import XCTest

/// Issue 16's crafted files (made by scripts/fixtures/make_hostile_fixtures.py, values from pydicom):
/// wrong results, memory and time driven by headers. Each must give the right values or one clear
/// error naming the file, quickly and without allocating what the header claims.
final class HostileInputTests: XCTestCase {
    func hostile(_ name: String) throws -> URL { try fixtureURL("hostile/" + name) }

    func hostileExpected(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: hostile("expected.json"))
        let all = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(all[name] as? [String: Any])
    }

    /// Runs `body` and fails when it takes longer than 10 × `seconds`: a guard against work driven
    /// by headers (the unfixed cases took minutes or ran away), with room for a loaded CI machine.
    func assertFast<T>(_ seconds: Double, _ what: String, _ body: () throws -> T) rethrows -> T {
        let start = Date()
        let result = try body()
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertLessThan(elapsed, 10 * seconds, "\(what) took \(elapsed) s")
        return result
    }

    // MARK: Wrong results

    /// `export --window stored` of signed data: int16 voxels equal to pydicom's pixel_array, and
    /// scl_slope/scl_inter such that raw × slope + inter equals pydicom's apply_modality_lut (HU),
    /// which is what nibabel's get_fdata() computes (checked with nibabel by the fixture script's
    /// --check-export).
    func testExportStoredKeepsSignedValuesAndTheModalityRescale() throws {
        for name in ["ct_signed_rescale.dcm", "mr_signed_slope.dcm"] {
            let want = try hostileExpected(name)
            let rows = try XCTUnwrap(want["rows"] as? Int), columns = try XCTUnwrap(want["columns"] as? Int)
            let folder = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(at: folder) }
            let out = folder.appendingPathComponent("out.nii")
            _ = try exportMedical(inputs: [hostile(name)], to: out, format: .nifti, readOptions: MedicalReadOptions(window: .stored))
            let bytes = [UInt8](try Data(contentsOf: out))
            func i16(_ o: Int) -> Int { Int(Int16(bitPattern: UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)) }
            func f32(_ o: Int) -> Double { Double(Float(bitPattern: UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24)) }
            XCTAssertEqual(i16(70), 4, "\(name): datatype DT_INT16")
            XCTAssertEqual(i16(72), 16, "\(name): bitpix")
            XCTAssertEqual(f32(112), want["slope"] as? Double, "\(name): scl_slope")
            XCTAssertEqual(f32(116), want["intercept"] as? Double, "\(name): scl_inter")
            // Image pixel (x, y) is voxel (x, H-1-y, 0).
            var raw: [Double] = [], scaled: [Double] = []
            for y in 0..<rows {
                for x in 0..<columns {
                    let v = Double(i16(352 + 2 * ((rows - 1 - y) * columns + x)))
                    raw.append(v)
                    scaled.append(v * f32(112) + f32(116))
                }
            }
            XCTAssertEqual(raw, numbers(want["pixel_array"]), "\(name): voxels are pydicom's pixel_array")
            XCTAssertEqual(scaled, numbers(want["modality"]), "\(name): scaled voxels are pydicom's apply_modality_lut")
            // Reading the NIfTI back (stored, then full range) gives the same values again.
            let volume = try NIfTIVolume(contentsOf: out)
            XCTAssertEqual(try volume.slice(.axial, index: 0, volume: 0).values.map(Double.init), raw)
        }
    }

    /// DICOM output of `--window stored` keeps modality values too: Rescale Intercept/Slope undo the
    /// shift of signed data (samples are written unsigned).
    func testExportStoredToDICOMCarriesTheRescale() throws {
        for name in ["ct_signed_rescale.dcm", "mr_signed_slope.dcm"] {
            let folder = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(at: folder) }
            let report = try exportMedical(inputs: [hostile(name)], to: folder, format: .dicom,
                                           readOptions: MedicalReadOptions(window: .stored), uidSeed: 1)
            let written = try DICOMFile(contentsOf: report.written[0])
            let (slices, encoding) = try readDICOMStoredFrames(written, window: .stored)
            let modality = slices[0].samples.map { Double($0) * encoding.slope + encoding.intercept }
            XCTAssertEqual(modality, numbers(try hostileExpected(name)["modality"]), name)
        }
    }

    func testStoredExportRefusesInputsWithDifferentRescales() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        assertMedSynthError(["mr_signed_slope.dcm", "--window stored", "cannot hold both"]) {
            try exportMedical(inputs: [hostile("ct_signed_rescale.dcm"), hostile("mr_signed_slope.dcm")],
                              to: folder.appendingPathComponent("x.nii"), format: .nifti, readOptions: MedicalReadOptions(window: .stored))
        }
    }

    /// Big-endian OW 8-bit data with an odd sample count: the last sample sits in the pad byte;
    /// values equal pydicom's, including across a frame boundary; no pad byte is an error.
    func testBigEndianOW8BitOddSampleCount() throws {
        for name in ["be_ow8_odd.dcm", "be_ow8_odd_2frames.dcm"] {
            let images = try readImages(at: hostile(name), options: MedicalReadOptions(window: .stored))
            XCTAssertEqual(images.flatMap { $0.samples }.map(Double.init), numbers(try hostileExpected(name)["pixel_array"]), name)
        }
        assertMedSynthError(["be_ow8_odd_nopad.dcm", "pixel data has 9 bytes"]) {
            try readImages(at: hostile("be_ow8_odd_nopad.dcm"), options: MedicalReadOptions(window: .stored))
        }
    }

    func testRescaleSlopeThatOverflowsIsRefused() throws {
        assertMedSynthError(["rescale_slope_1e308.dcm", "rescale slope 1e+308"]) { try readImages(at: hostile("rescale_slope_1e308.dcm")) }
        // Windowing can no longer produce NaN: an infinite modality value saturates.
        let frame = ScalarFrame(width: 3, height: 1, channels: 1, values: [.nan, .infinity, -.infinity])
        let slice = try renderFrames([frame], encoding: PixelEncoding(storedRange: nil, storedBits: 32), window: .explicit(center: 0, width: 10),
                                     bitDepth: 8, path: "x")[0]
        XCTAssertEqual(slice.samples, [0, 255, 0])
    }

    // MARK: Memory driven by headers

    func testJPEGInDICOMDeclaring65500SquaredIsRefusedBeforeDecoding() throws {
        assertFast(1, "65500² JPEG-in-DICOM") {
            assertMedSynthError(["jpeg_in_dicom_65500.dcm", "65500x65500", "above the limit of 67108864 pixels per image"]) {
                try readImages(at: hostile("jpeg_in_dicom_65500.dcm"))
            }
        }
    }

    func testDeflatedDICOMWith20MillionFramesIsRefusedBeforeInflatingThem() throws {
        assertFast(2, "20 M frames") {
            assertMedSynthError(["deflated_20M_frames.dcm", "20000000 images", "limit of 1048576"]) {
                try readImages(at: hostile("deflated_20M_frames.dcm"))
            }
        }
    }

    func testDeflateBombStopsNearTheDeclaredSize() throws {
        assertFast(2, "deflate bomb") {
            assertMedSynthError(["deflated_bomb.dcm", "inflates to more than the limit of 17826048 bytes"]) {
                try readImages(at: hostile("deflated_bomb.dcm"))
            }
        }
    }

    func testNIfTIHeadersClaimingHugeVolumesAreRefusedBeforeInflating() throws {
        assertFast(1, "NIfTI bombs") {
            assertMedSynthError(["nifti_huge.nii.gz", "32767x32767", "per image"]) { try readImages(at: hostile("nifti_huge.nii.gz")) }
            assertMedSynthError(["nifti_float64_300M.nii.gz", "1000x1000x300x1", "limit of 268435456 voxels"]) {
                try readImages(at: hostile("nifti_float64_300M.nii.gz"))
            }
        }
    }

    /// A 2×2×2 volume followed by 64 MB of zeros: only the declared bytes are inflated.
    func testNIfTIInflatesOnlyWhatTheHeaderDeclares() throws {
        let images = try assertFast(1, "trailing gzip bomb") {
            try readImages(at: hostile("nifti_trailing_bomb.nii.gz"), options: MedicalReadOptions(window: .stored))
        }
        // Axial slice k: voxels (x, y) = k*4 + y*2 + x + 1; row 0 is the top (largest y).
        XCTAssertEqual(images.map { $0.samples }, [[3, 4, 1, 2], [7, 8, 5, 6]])
    }

    func testPixelLimitsAreOptionsAndDefaults() throws {
        let url = try fixtureURL("ct_explicit_le.dcm")
        XCTAssertNoThrow(try readImages(at: url))
        assertMedSynthError(["ct_explicit_le.dcm", "above the limit of 10 pixels per file"]) {
            try readImages(at: url, options: MedicalReadOptions(maxPixels: 10))
        }
        assertMedSynthError(["ct_explicit_le.dcm", "above the limit of 10 pixels per image"]) {
            try readImages(at: url, options: MedicalReadOptions(maxImagePixels: 10))
        }
        XCTAssertEqual(DecodeLimits.defaultMaxPixels, 268_435_456)
    }

    // MARK: Time driven by headers

    /// Implicit VR data of (0000,0000) zero-length elements up to a final non-zero byte: the
    /// zero-tail test used to rescan the rest of the file at every element (39 s for 1 MB).
    func testImplicitVRZerosAreParsedInLinearTime() throws {
        var b = DICOMBuilder.implicitLE()
        b.body = [UInt8](repeating: 0, count: 4 << 20) + [0, 0, 0, 0, 0xFF, 0xFF, 0, 0]
        let bytes = b.build()
        assertFast(2, "4 MB of implicit VR zeros") {
            assertMedSynthError(["zeros.dcm", "truncated"]) { try DICOMFile(bytes: bytes, path: "zeros.dcm") }
        }
    }
}
