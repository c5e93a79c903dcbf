import Foundation
import XCTest
import TestSupport
import Core

/// URL of a committed fixture (made by scripts/fixtures/make_medical_fixtures.py).
func fixtureURL(_ name: String) throws -> URL {
    guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        throw MedSynthError("test fixtures folder is missing from the bundle")
    }
    return folder.appendingPathComponent(name)
}

func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: fixtureURL(name)))
}

/// The values pydicom/nibabel/Pillow read from the fixtures (Fixtures/expected.json).
func expectedValues() throws -> [String: Any] {
    let data = try Data(contentsOf: fixtureURL("expected.json"))
    return try JSONSerialization.jsonObject(with: data) as! [String: Any]
}

func numbers(_ any: Any?) -> [Double] {
    (any as? [Any] ?? []).map { ($0 as? NSNumber)?.doubleValue ?? .nan }
}


/// Builds small DICOM Part 10 files element by element, independently of medsynth's writer, in
/// any of the three uncompressed encodings.
struct DICOMBuilder {
    var transferSyntax = "1.2.840.10008.1.2.1"
    var explicit = true
    var bigEndian = false
    var body: [UInt8] = []

    static func explicitLE() -> DICOMBuilder { DICOMBuilder() }
    static func implicitLE() -> DICOMBuilder { DICOMBuilder(transferSyntax: "1.2.840.10008.1.2", explicit: false) }
    static func explicitBE() -> DICOMBuilder { DICOMBuilder(transferSyntax: "1.2.840.10008.1.2.2", bigEndian: true) }

    /// Explicit LE: an undefined-length sequence, 3 signed 16-bit frames of 6×5 (values 37·i − 1500)
    /// and an element after the pixel data — the layout that tripped the deflated data-set walk.
    static func sequenceThenThreeFrames(modality: String? = nil) -> DICOMBuilder {
        var b = DICOMBuilder.explicitLE()
        if let modality { b.text(0x0008, 0x0060, "CS", modality) }
        b.add(0x0008, 0x1140, "SQ", [], length: 0xFFFF_FFFF)
        b.body += [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
        b.text(0x0008, 0x1150, "UI", "1.2.3")
        b.body += [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
        b.grayImage(rows: 6, cols: 5, signed: true, frames: 3)
        b.pixels16((0..<90).map { UInt16(bitPattern: Int16($0 * 37 - 1500)) })
        b.add(0xFFFC, 0xFFFC, "OB", [1, 2, 3, 4])
        return b
    }

    func u16(_ v: UInt16) -> [UInt8] { bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
    func u32(_ v: UInt32) -> [UInt8] { bigEndian ? u16(UInt16(v >> 16)) + u16(UInt16(v & 0xFFFF)) : u16(UInt16(v & 0xFFFF)) + u16(UInt16(v >> 16)) }

    /// Appends one element; `length` overrides the encoded length (to lie about it).
    mutating func add(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: [UInt8], length: UInt32? = nil) {
        var value = value
        if value.count % 2 == 1 { value.append(vr == "UI" ? 0 : 0x20) }
        body += u16(group) + u16(element)
        let long = ["OB", "OW", "SQ", "UN", "UT"].contains(vr)
        if explicit {
            body += Array(vr.utf8)
            if long { body += [0, 0] + u32(length ?? UInt32(value.count)) }
            else { body += u16(UInt16(length ?? UInt32(value.count))) }
        } else {
            body += u32(length ?? UInt32(value.count))
        }
        body += value
    }

    mutating func text(_ group: UInt16, _ element: UInt16, _ vr: String, _ s: String) { add(group, element, vr, Array(s.utf8)) }
    mutating func us(_ group: UInt16, _ element: UInt16, _ v: UInt16) { add(group, element, "US", u16(v)) }

    /// Image Pixel module attributes for a grayscale image.
    mutating func grayImage(rows: Int, cols: Int, bits: Int = 16, stored: Int? = nil, high: Int? = nil,
                            signed: Bool = false, frames: Int? = nil, photometric: String = "MONOCHROME2") {
        us(0x0028, 0x0002, 1)
        text(0x0028, 0x0004, "CS", photometric)
        if let frames { text(0x0028, 0x0008, "IS", String(frames)) }
        us(0x0028, 0x0010, UInt16(rows))
        us(0x0028, 0x0011, UInt16(cols))
        us(0x0028, 0x0100, UInt16(bits))
        us(0x0028, 0x0101, UInt16(stored ?? bits))
        us(0x0028, 0x0102, UInt16(high ?? ((stored ?? bits) - 1)))
        us(0x0028, 0x0103, signed ? 1 : 0)
    }

    /// 16-bit pixel data from words.
    mutating func pixels16(_ words: [UInt16]) { add(0x7FE0, 0x0010, "OW", words.flatMap { u16($0) }) }

    /// Preamble, "DICM", a file meta group (explicit VR LE) and the body.
    func build() -> [UInt8] {
        var tsValue = Array(transferSyntax.utf8)
        if tsValue.count % 2 == 1 { tsValue.append(0) }
        let meta: [UInt8] = [0x02, 0x00, 0x10, 0x00] + Array("UI".utf8) + [UInt8(tsValue.count), 0] + tsValue
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + meta + body
    }
}
