import Foundation
import Imaging
@testable import MedicalFormats
import XCTest
import TestSupport
import Core

/// Seeded random-mutation fuzzing of the DICOM, NIfTI, PNG and JPEG readers: every mutated input
/// must either decode or throw a `MedSynthError`; a crash, trap or other error fails the run.
final class ReaderFuzzTests: XCTestCase {
    /// Inputs per test run; MEDSYNTH_FUZZ_INPUTS overrides it for longer runs by hand.
    static let inputsPerRun = ProcessInfo.processInfo.environment["MEDSYNTH_FUZZ_INPUTS"].flatMap(Int.init) ?? 10_000

    func seeds() throws -> [(name: String, bytes: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for name in ["ct_explicit_le.dcm", "ct_deflated.dcm", "mr_implicit_le.dcm", "explicit_be.dcm", "rgb_planar1_2frames.dcm",
                     "mono1_3frames.dcm", "jpeg_baseline_2frames.dcm", "int16_las_scaled.nii.gz", "float32_be_4d.nii",
                     "uint8_permuted.nii", "uint8_qform_rot90.nii"] {
            seeds.append((name, try fixtureBytes(name)))
        }
        let gray = Image(width: 5, height: 4, channels: 1, bitDepth: 16, samples: (0..<20).map { UInt16($0 * 3000) })
        let rgb = Image(width: 6, height: 5, channels: 3, bitDepth: 8, samples: (0..<90).map { UInt16($0 * 7 % 256) })
        let slice = Image(width: 4, height: 3, channels: 1, bitDepth: 16, samples: (0..<12).map { UInt16($0 * 5000) })
        seeds.append(("written.dcm", try encodeDICOMSecondaryCapture(slice, path: "written.dcm")))
        seeds.append(("written.nii", try encodeNIfTIStack([slice, slice], path: "written.nii")))
        seeds.append(("gray16.png", try encodePNG(gray)))
        seeds.append(("rgb.png", try encodePNG(rgb)))
        seeds.append(("rgb.jpg", try encodeJPEG(rgb)))
        return seeds
    }

    /// One to four mutations: bit flips, special bytes and 32-bit lengths, truncation, chunk
    /// deletion and duplication (the shapes that break length-driven parsers).
    func mutate(_ input: [UInt8], _ stream: inout RandomStream) -> [UInt8] {
        var bytes = input
        for _ in 0...stream.int(below: 4) {
            if bytes.isEmpty { break }
            let at = stream.int(below: bytes.count)
            switch stream.int(below: 7) {
            case 0:
                bytes[at] ^= UInt8(1 << stream.int(below: 8))
            case 1:
                bytes[at] = [0x00, 0xFF, 0x7F, 0x80, 0x01][stream.int(below: 5)]
            case 2:
                let word: [UInt32] = [0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0x0000_FFFF, 0x0001_0000, 0xFFFF_FFFE]
                let v = word[stream.int(below: word.count)]
                for k in 0..<4 where at + k < bytes.count { bytes[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) }
            case 3:
                bytes.removeSubrange(at...)
            case 4:
                let end = min(bytes.count, at + 1 + stream.int(below: 16))
                bytes.removeSubrange(at..<end)
            case 5:
                let end = min(bytes.count, at + 1 + stream.int(below: 32))
                bytes.insert(contentsOf: Array(bytes[at..<end]), at: at)
            default:
                bytes[at] = UInt8(truncatingIfNeeded: stream.int(below: 256))
            }
        }
        return bytes
    }

    func testMutatedInputsOnlyEverThrowMedSynthErrors() throws {
        let seeds = try self.seeds()
        var stream = RandomStream(seed: 20_250_808).split(1)
        let windows: [MedicalWindow] = [.fileDefault, .stored, .fullRange, .preset(.lung)]
        var decoded = 0, rejected = 0
        var unexpected: [String] = []
        let start = Date()
        for run in 0..<ReaderFuzzTests.inputsPerRun {
            let seed = seeds[stream.int(below: seeds.count)]
            var bytes = mutate(seed.bytes, &stream)
            // Uncompressed NIfTI mutations are sometimes gzipped, so the two-step bounded
            // inflate sees hostile headers too.
            if seed.name.hasSuffix(".nii") && stream.int(below: 3) == 0 {
                bytes = try gzipCompress(bytes, path: seed.name)
            }
            let name = bytes.starts(with: [0x1F, 0x8B]) && seed.name.hasSuffix(".nii") ? seed.name + ".gz" : seed.name
            var options = MedicalReadOptions(window: windows[stream.int(below: windows.count)],
                                             bitDepth: [nil, 8, 16][stream.int(below: 3)],
                                             axis: SliceAxis.allCases[stream.int(below: 3)])
            options.maxDecompressedBytes = 1 << 24
            do {
                let images = try decodeImages(bytes, name: name, options: options)
                decoded += 1
                for image in images {
                    XCTAssertEqual(image.samples.count, image.width * image.height * image.channels)
                }
            } catch is MedSynthError {
                rejected += 1
            } catch {
                unexpected.append("run \(run) (\(name)): \(error)")
            }
        }
        let seconds = Date().timeIntervalSince(start)
        print("reader fuzz: \(ReaderFuzzTests.inputsPerRun) mutated inputs from \(seeds.count) seeds in \(String(format: "%.2f", seconds)) s: \(decoded) decoded, \(rejected) rejected with MedSynthError, \(unexpected.count) other errors, 0 crashes")
        XCTAssertEqual(unexpected, [])
        XCTAssertEqual(decoded + rejected, ReaderFuzzTests.inputsPerRun)
        // Both outcomes must occur, or the mutations are too weak or too strong to test anything.
        XCTAssertGreaterThan(decoded, 100)
        XCTAssertGreaterThan(rejected, 100)
    }

    /// Deflated data sets whose Pixel Data is inflated into a temporary file (`spillPixelDataAbove`
    /// 0) read exactly as in memory: mutated data sets (mutated before deflating, so the element
    /// walk that finds the pixel data sees hostile headers, not just a corrupt stream) give the same
    /// elements and frames both ways, or a MedSynthError both ways.
    func testMutatedDeflatedDataSetsReadTheSameSpilledAndInMemory() throws {
        // Data sets: the explicit VR little endian fixtures without their meta group, and one with
        // an undefined-length sequence before three frames and an element after them.
        var bodies: [[UInt8]] = []
        for name in ["ct_explicit_le.dcm", "rgb_planar1_2frames.dcm", "mono1_3frames.dcm"] {
            let bytes = try fixtureBytes(name)
            var end = 132
            while end + 8 <= bytes.count, bytes[end] == 0x02, bytes[end + 1] == 0x00 {
                let long = ["OB", "OW", "SQ", "UN", "UT"].contains(String(decoding: bytes[(end + 4)..<(end + 6)], as: UTF8.self))
                end += long ? 12 + Int(readUInt32(bytes, at: end + 8, bigEndian: false)) : 8 + Int(readUInt16(bytes, at: end + 6, bigEndian: false))
            }
            bodies.append(Array(bytes[end...]))
        }
        bodies.append(DICOMBuilder.sequenceThenThreeFrames().body)
        var meta = DICOMBuilder.explicitLE()
        meta.transferSyntax = TransferSyntax.deflatedUID
        let header = meta.build()

        var stream = RandomStream(seed: 20_261_202).split(2)
        var same = 0, refused = 0, spilledReads = 0
        for run in 0..<2_000 {
            let body = bodies[stream.int(below: bodies.count)]
            let mutated = run < bodies.count ? bodies[run] : mutate(body, &stream)
            let gzip = try gzipCompress(mutated.isEmpty ? [0] : mutated, path: "fuzz.dcm")
            let bytes = header + gzip[10..<(gzip.count - 8)]
            func read(_ spillAbove: Int) throws -> (DICOMFile, [Image]?) {
                let file = try DICOMFile(bytes: bytes, path: "fuzz.dcm", spillPixelDataAbove: spillAbove)
                return (file, try? readDICOMSlices(file, window: .stored))
            }
            var results: [(DICOMFile, [Image]?)?] = []
            for spillAbove in [DICOMFile.inMemoryPixelBytes, 0] {
                do { results.append(try read(spillAbove)) } catch is MedSynthError { results.append(nil) } catch {
                    XCTFail("run \(run): \(error)")
                    results.append(nil)
                }
            }
            guard let memory = results[0], let spilled = results[1] else {
                XCTAssertTrue(results[0] == nil && results[1] == nil, "run \(run): one reading failed, the other did not")
                refused += 1
                continue
            }
            XCTAssertEqual(Set(spilled.0.elements.keys), Set(memory.0.elements.keys), "run \(run)")
            for (tag, element) in memory.0.elements where tag != .pixelData {
                XCTAssertEqual(spilled.0.elements[tag].map { spilled.0.bytes[$0.value] }, memory.0.bytes[element.value], "run \(run) \(tag)")
            }
            XCTAssertEqual(spilled.1, memory.1, "run \(run)")
            if spilled.0.pixelSpill != nil && spilled.1 != nil { spilledReads += 1 }
            same += 1
        }
        print("deflated spill fuzz: 2000 data sets: \(same) read the same both ways (\(spilledReads) with frames from the temporary file), \(refused) refused both ways")
        XCTAssertGreaterThan(spilledReads, 100)
        XCTAssertGreaterThan(refused, 100)
    }
}
