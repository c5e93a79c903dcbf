import Core
import Foundation

// MARK: - DICOM Part 10 parsing
//
// Layout (DICOM PS3.10 §7.1): a 128-byte preamble, "DICM", the file meta group (0002,xxxx) always
// in explicit VR little endian, then the data set in the transfer syntax named by (0002,0010).
// Element encoding follows PS3.5 §7.1: explicit VR elements carry a two-letter VR and a 2-byte
// length, or 2 reserved bytes and a 4-byte length for the long VRs (OB, OW, SQ, UN, UT, ...);
// implicit VR elements carry a 4-byte length only. Undefined lengths (0xFFFFFFFF) mark sequences
// (items ended by delimiters, PS3.5 §7.5) and encapsulated pixel data (PS3.5 §A.4).
//
// Only top-level elements of even (public) groups are kept. Sequences are walked to find their
// end but their contents are dropped; private (odd-group) elements are skipped.

/// A DICOM attribute tag (group, element).
public struct DICOMTag: Hashable, Comparable, CustomStringConvertible, Sendable {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    public static func < (a: DICOMTag, b: DICOMTag) -> Bool {
        (a.group, a.element) < (b.group, b.element)
    }

    public var description: String {
        let g = String(group, radix: 16, uppercase: true), e = String(element, radix: 16, uppercase: true)
        return "(" + String(repeating: "0", count: 4 - g.count) + g + "," + String(repeating: "0", count: 4 - e.count) + e + ")"
    }

    // Attributes this module reads or writes (PS3.6 data dictionary).
    public static let transferSyntaxUID = DICOMTag(0x0002, 0x0010)
    public static let specificCharacterSet = DICOMTag(0x0008, 0x0005)
    public static let sopClassUID = DICOMTag(0x0008, 0x0016)
    public static let sopInstanceUID = DICOMTag(0x0008, 0x0018)
    public static let studyDate = DICOMTag(0x0008, 0x0020)
    public static let studyTime = DICOMTag(0x0008, 0x0030)
    public static let accessionNumber = DICOMTag(0x0008, 0x0050)
    public static let modality = DICOMTag(0x0008, 0x0060)
    public static let referringPhysicianName = DICOMTag(0x0008, 0x0090)
    public static let studyDescription = DICOMTag(0x0008, 0x1030)
    public static let patientName = DICOMTag(0x0010, 0x0010)
    public static let patientID = DICOMTag(0x0010, 0x0020)
    public static let patientBirthDate = DICOMTag(0x0010, 0x0030)
    public static let patientSex = DICOMTag(0x0010, 0x0040)
    public static let studyInstanceUID = DICOMTag(0x0020, 0x000D)
    public static let seriesInstanceUID = DICOMTag(0x0020, 0x000E)
    public static let studyID = DICOMTag(0x0020, 0x0010)
    public static let instanceNumber = DICOMTag(0x0020, 0x0013)
    public static let samplesPerPixel = DICOMTag(0x0028, 0x0002)
    public static let photometricInterpretation = DICOMTag(0x0028, 0x0004)
    public static let planarConfiguration = DICOMTag(0x0028, 0x0006)
    public static let numberOfFrames = DICOMTag(0x0028, 0x0008)
    public static let rows = DICOMTag(0x0028, 0x0010)
    public static let columns = DICOMTag(0x0028, 0x0011)
    public static let bitsAllocated = DICOMTag(0x0028, 0x0100)
    public static let bitsStored = DICOMTag(0x0028, 0x0101)
    public static let highBit = DICOMTag(0x0028, 0x0102)
    public static let pixelRepresentation = DICOMTag(0x0028, 0x0103)
    public static let windowCenter = DICOMTag(0x0028, 0x1050)
    public static let windowWidth = DICOMTag(0x0028, 0x1051)
    public static let rescaleIntercept = DICOMTag(0x0028, 0x1052)
    public static let rescaleSlope = DICOMTag(0x0028, 0x1053)
    public static let pixelData = DICOMTag(0x7FE0, 0x0010)

    static let item = DICOMTag(0xFFFE, 0xE000)
    static let itemDelimitation = DICOMTag(0xFFFE, 0xE00D)
    static let sequenceDelimitation = DICOMTag(0xFFFE, 0xE0DD)
}

/// How the data set is encoded (PS3.5 §10 and Annex A).
public enum TransferSyntax: Equatable, Sendable {
    case implicitVRLittleEndian
    case explicitVRLittleEndian
    case explicitVRBigEndian
    case deflatedExplicitVRLittleEndian
    case jpegBaseline
    /// A known compressed syntax this module cannot decode; the data set still parses.
    case unsupported(uid: String, name: String)

    public static let implicitLittleUID = "1.2.840.10008.1.2"
    public static let explicitLittleUID = "1.2.840.10008.1.2.1"
    public static let deflatedUID = "1.2.840.10008.1.2.1.99"
    public static let explicitBigUID = "1.2.840.10008.1.2.2"
    public static let jpegBaselineUID = "1.2.840.10008.1.2.4.50"

    /// Names of the encapsulated syntaxes (PS3.6 Annex A) for "not supported" messages.
    static let compressedNames: [String: String] = [
        "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57": "JPEG Lossless, Non-Hierarchical (Process 14)",
        "1.2.840.10008.1.2.4.70": "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless Image Compression",
        "1.2.840.10008.1.2.4.81": "JPEG-LS Lossy (Near-Lossless) Image Compression",
        "1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
        "1.2.840.10008.1.2.4.91": "JPEG 2000 Image Compression",
        "1.2.840.10008.1.2.4.92": "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)",
        "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 Multi-component Image Compression",
        "1.2.840.10008.1.2.4.94": "JPIP Referenced",
        "1.2.840.10008.1.2.4.95": "JPIP Referenced Deflate",
        "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile / Main Level",
        "1.2.840.10008.1.2.4.101": "MPEG2 Main Profile / High Level",
        "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile / Level 4.1",
        "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
        "1.2.840.10008.1.2.4.104": "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video",
        "1.2.840.10008.1.2.4.105": "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video",
        "1.2.840.10008.1.2.4.106": "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2",
        "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile / Level 5.1",
        "1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile / Level 5.1",
        "1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
        "1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
        "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000 Image Compression",
        "1.2.840.10008.1.2.5": "RLE Lossless",
    ]

    /// The syntax for a UID, or nil when the UID is not a known transfer syntax.
    public init?(uid: String) {
        switch uid {
        case Self.implicitLittleUID: self = .implicitVRLittleEndian
        case Self.explicitLittleUID: self = .explicitVRLittleEndian
        case Self.explicitBigUID: self = .explicitVRBigEndian
        case Self.deflatedUID: self = .deflatedExplicitVRLittleEndian
        case Self.jpegBaselineUID: self = .jpegBaseline
        default:
            guard let name = Self.compressedNames[uid] else { return nil }
            self = .unsupported(uid: uid, name: name)
        }
    }

    public var name: String {
        switch self {
        case .implicitVRLittleEndian: return "Implicit VR Little Endian"
        case .explicitVRLittleEndian: return "Explicit VR Little Endian"
        case .explicitVRBigEndian: return "Explicit VR Big Endian"
        case .deflatedExplicitVRLittleEndian: return "Deflated Explicit VR Little Endian"
        case .jpegBaseline: return "JPEG Baseline (Process 1)"
        case .unsupported(_, let name): return name
        }
    }

    var isExplicitVR: Bool { self != .implicitVRLittleEndian }
    var isBigEndian: Bool { self == .explicitVRBigEndian }
}

/// One top-level element: where its value lives in `DICOMFile.bytes`.
public struct DICOMElement: Sendable {
    public let tag: DICOMTag
    /// Two-letter value representation; for implicit VR files, the data dictionary's VR for the
    /// attributes this module knows and "UN" otherwise.
    public let vr: String
    /// Byte range of the value (empty for encapsulated pixel data).
    public let value: Range<Int>
    /// Byte order of the value.
    public let bigEndian: Bool
    /// Encapsulated pixel data only: the item ranges, the first being the Basic Offset Table.
    public let fragments: [Range<Int>]?
}

/// A parsed DICOM Part 10 file: transfer syntax plus the top-level public elements.
public struct DICOMFile: Sendable {
    /// Path used in error messages.
    public let path: String
    public let transferSyntax: TransferSyntax
    /// The file's bytes (for deflated files: meta group followed by the inflated data set, without
    /// the value of a large Pixel Data element, which is in `pixelSpill`).
    public let bytes: [UInt8]
    /// A deflated file's Pixel Data value when larger than `inMemoryPixelBytes`: inflated into an
    /// anonymous temporary file, read back a frame at a time.
    let pixelSpill: PixelSpill?
    /// Top-level public elements of the file meta group and the data set.
    public let elements: [DICOMTag: DICOMElement]

    /// Sequences nested deeper than this are rejected rather than risking the stack.
    static let maxDepth = 32

    /// True when `bytes` carry "DICM" at offset 128 (PS3.10 §7.1), the test the dataset loader
    /// uses to tell DICOM files from everything else in a folder.
    public static func hasPart10Signature(_ bytes: some Collection<UInt8>) -> Bool {
        guard bytes.count >= 132 else { return false }
        let start = bytes.index(bytes.startIndex, offsetBy: 128)
        return Array(bytes[start..<bytes.index(start, offsetBy: 4)]) == [0x44, 0x49, 0x43, 0x4D]
    }

    public init(contentsOf url: URL) throws {
        try self.init(bytes: readFileBytes(url), path: url.path)
    }

    /// Parses a Part 10 file. Throws `MedSynthError(file: path, ...)` for anything malformed.
    /// - Parameters:
    ///   - maxInflatedBytes: cap on the inflated data set of deflated files.
    ///   - maxPixels, maxImagePixels: deflated files only: the image size the data set declares is
    ///     checked against these (see `DecodeLimits`) before the pixel data is inflated, and
    ///     inflation stops past the declared size.
    ///   - spillPixelDataAbove: deflated files only: a Pixel Data value of more bytes than this is
    ///     inflated into a temporary file instead of memory (see `inflateDataSet`).
    public init(bytes: [UInt8], path: String, maxInflatedBytes: Int = 1 << 30,
                maxPixels: Int = DecodeLimits.maxPixels, maxImagePixels: Int = DecodeLimits.maxImagePixels,
                spillPixelDataAbove: Int = DICOMFile.inMemoryPixelBytes) throws {
        self.path = path
        guard DICOMFile.hasPart10Signature(bytes) else {
            throw MedSynthError(file: path, "not a DICOM Part 10 file (no 'DICM' at offset 128)")
        }
        var elements: [DICOMTag: DICOMElement] = [:]
        // File meta group: explicit VR little endian, group 0002 only.
        var reader = ByteReader(bytes: bytes, path: path, position: 132)
        while reader.remaining >= 2, readUInt16(bytes, at: reader.position, bigEndian: false) == 0x0002 {
            let header = try DICOMFile.readHeader(&reader, explicit: true)
            guard header.length != DICOMFile.undefinedLength else {
                throw MedSynthError(file: path, "file meta element \(header.tag) has undefined length")
            }
            try reader.require(header.length, "file meta element \(header.tag)")
            elements[header.tag] = DICOMElement(tag: header.tag, vr: header.vr,
                                                value: reader.position..<(reader.position + header.length),
                                                bigEndian: false, fragments: nil)
            reader.position += header.length
        }
        guard let tsElement = elements[.transferSyntaxUID] else {
            throw MedSynthError(file: path, "file meta has no Transfer Syntax UID (0002,0010)")
        }
        let uid = DICOMFile.decodeString(bytes[tsElement.value])
        guard let syntax = TransferSyntax(uid: uid) else {
            throw MedSynthError(file: path, "not supported: unknown transfer syntax '\(uid)'")
        }
        self.transferSyntax = syntax

        var dataBytes = bytes
        var spill: PixelSpill? = nil
        if syntax == .deflatedExplicitVRLittleEndian {
            // PS3.5 §A.5: the data set after the meta group is one raw deflate stream.
            let allowed = try DICOMFile.deflatedAllowance(bytes: bytes, metaEnd: reader.position, elements: elements, path: path,
                                                          maxInflatedBytes: maxInflatedBytes, maxPixels: maxPixels,
                                                          maxImagePixels: maxImagePixels)
            (dataBytes, spill) = try DICOMFile.inflateDataSet(bytes, metaEnd: reader.position, allowed: allowed,
                                                              spillAbove: spillPixelDataAbove, path: path)
        }
        self.bytes = dataBytes
        self.pixelSpill = spill
        reader = ByteReader(bytes: dataBytes, path: path, position: reader.position, bigEndian: syntax.isBigEndian)
        try DICOMFile.parseElements(&reader, explicit: syntax.isExplicitVR, depth: 0, inItem: false, into: &elements, spilled: spill)
        self.elements = elements
    }

    /// Where a spilled Pixel Data value is: the file, and the position in `bytes` where the value
    /// would start (its element's value range starts there and runs `length` bytes, past `bytes`).
    struct PixelSpill: Sendable {
        let file: SpillFile
        let valueStart: Int
        let length: Int
    }

    /// A deflated file's Pixel Data value larger than this goes to a temporary file, not memory.
    public static let inMemoryPixelBytes = 64 << 20

    /// Inflates a deflated data set (after the meta group at `metaEnd`) into memory, except a top-level
    /// Pixel Data value of more than `spillAbove` bytes (`inMemoryPixelBytes`), which is inflated into a `SpillFile` on
    /// the way (the .nii.gz reader's temporary file): a 0.65 MB file at the pixel limit holds 512 MB
    /// of pixels. The element headers are walked as the bytes arrive to find that value; anything
    /// the walk cannot follow is left to `parseElements` to report. At most `allowed` bytes are
    /// inflated in all.
    static func inflateDataSet(_ bytes: [UInt8], metaEnd: Int, allowed: Int, spillAbove: Int, path: String) throws -> ([UInt8], PixelSpill?) {
        let inflater = try StreamingInflater(Array(bytes[metaEnd...]), format: .raw, path: path)
        var buffer = Array(bytes[..<metaEnd])
        var spilled = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        func overLimit() -> MedSynthError { MedSynthError(file: path, "deflate data inflates to more than the limit of \(allowed) bytes") }
        /// Inflates into `buffer` until it holds `count` bytes or the stream ends.
        func fill(to count: Int) throws {
            while buffer.count < count && !inflater.ended {
                let room = allowed - (buffer.count - metaEnd) - spilled
                let want = min(chunk.count, max(0, room) + 1, max(1, count - buffer.count))
                let n = try chunk.withUnsafeMutableBytes { try inflater.readSome(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
                if n > room { throw overLimit() }
                buffer += chunk[0..<n]
            }
        }
        var position = metaEnd
        var spill: PixelSpill? = nil
        walk: while true {
            try fill(to: position + 12)
            guard position < buffer.count else { break }
            var reader = ByteReader(bytes: buffer, path: path, position: position)
            guard let header = try? readHeader(&reader, explicit: true), header.tag.group != 0xFFFE else { break }
            if header.length == undefinedLength {
                // A sequence or encapsulated pixel data: inflate until it can be skipped whole.
                while true {
                    var probe = ByteReader(bytes: buffer, path: path, position: reader.position)  // the bytes inflated so far
                    do {
                        if header.tag == .pixelData { _ = try readFragments(&probe) } else {
                            guard header.vr == "SQ" || header.vr == "UN" else { break walk }
                            try skipSequence(&probe, explicit: header.vr != "UN", depth: 1)
                        }
                        position = probe.position
                        break
                    } catch {
                        if inflater.ended { break walk }
                        try fill(to: max(buffer.count * 2, buffer.count + chunk.count))
                    }
                }
                continue
            }
            if header.tag == .pixelData && header.length > spillAbove {
                let file = try SpillFile(for: path)
                let start = reader.position
                // The value's bytes already inflated, then the rest straight from the stream.
                let early = max(0, min(buffer.count - start, header.length))
                if early > 0 { try buffer[start..<(start + early)].withUnsafeBytes { try file.write($0, at: 0) } }
                let after = Array(buffer[(start + early)...])
                buffer.removeSubrange(start...)
                spilled = early
                while spilled < header.length && !inflater.ended {
                    let room = allowed - (buffer.count - metaEnd) - spilled
                    let want = min(chunk.count, header.length - spilled, max(0, room) + 1)
                    let n = try chunk.withUnsafeMutableBytes { try inflater.readSome(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
                    if n > room { throw overLimit() }
                    try chunk.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: spilled) }
                    spilled += n
                }
                guard spilled == header.length else {
                    throw MedSynthError(file: path, "truncated: value of \(DICOMTag.pixelData) (length \(header.length)) needs \(header.length) bytes at offset \(start), only \(spilled) left")
                }
                buffer += after
                spill = PixelSpill(file: file, valueStart: start, length: header.length)
                break
            }
            position = reader.position + header.length
        }
        try fill(to: Int.max)
        return (buffer, spill)
    }

    /// A file assembled from parts (used to read a deflated file's leading attributes).
    init(path: String, transferSyntax: TransferSyntax, bytes: [UInt8], elements: [DICOMTag: DICOMElement]) {
        self.path = path
        self.transferSyntax = transferSyntax
        self.bytes = bytes
        self.pixelSpill = nil
        self.elements = elements
    }

    /// Inflated bytes a deflated data set may take. The first MiB is inflated and parsed as far as
    /// it goes; the image it declares (rows × columns × samples × frames) is checked against the
    /// pixel limits and bounds the rest, with 16 MiB to spare for other attributes. A 20 KB file
    /// claiming millions of frames is therefore refused before anything big is inflated.
    static func deflatedAllowance(bytes: [UInt8], metaEnd: Int, elements: [DICOMTag: DICOMElement], path: String,
                                  maxInflatedBytes: Int, maxPixels: Int, maxImagePixels: Int) throws -> Int {
        let probeSize = 1 << 20, spare = 16 << 20
        let head = try inflateBounded(bytes[metaEnd...], format: .raw, maxOutput: probeSize, stopAtLimit: true,
                                      prefix: Array(bytes[..<metaEnd]), path: path)
        guard head.count - metaEnd >= probeSize else { return maxInflatedBytes }  // the whole data set is small
        var partial = elements
        var reader = ByteReader(bytes: head, path: path, position: metaEnd)
        // Stops with an error at the cut; the elements before it are kept.
        try? parseElements(&reader, explicit: true, depth: 0, inItem: false, into: &partial)
        let probe = DICOMFile(path: path, transferSyntax: .deflatedExplicitVRLittleEndian, bytes: head, elements: partial)
        guard let info = try? probe.imageInfo() else { return min(maxInflatedBytes, probeSize + spare) }
        try DecodeLimits.check(imageWidth: info.columns, height: info.rows, images: info.numberOfFrames,
                               maxImagePixels: maxImagePixels, maxPixels: maxPixels, what: "DICOM frame", path: path)
        let declared = checkedProduct([info.rows, info.columns, info.samplesPerPixel, info.bitsAllocated / 8, info.numberOfFrames]) ?? Int.max
        return min(maxInflatedBytes, declared > Int.max - probeSize - spare ? Int.max : declared + probeSize + spare)
    }

    // MARK: Element headers

    static let undefinedLength = Int(UInt32.max)

    /// VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1).
    static let longVRs: Set<String> = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]

    /// VRs of the attributes read from implicit VR files (PS3.6); everything else is "UN".
    static let implicitVRs: [DICOMTag: String] = [
        .transferSyntaxUID: "UI", .specificCharacterSet: "CS", .sopClassUID: "UI", .sopInstanceUID: "UI",
        .studyDate: "DA", .studyTime: "TM", .accessionNumber: "SH", .modality: "CS", .referringPhysicianName: "PN",
        .studyDescription: "LO", .patientName: "PN", .patientID: "LO", .patientBirthDate: "DA", .patientSex: "CS",
        .studyInstanceUID: "UI", .seriesInstanceUID: "UI", .studyID: "SH", .instanceNumber: "IS",
        .samplesPerPixel: "US", .photometricInterpretation: "CS", .planarConfiguration: "US", .numberOfFrames: "IS",
        .rows: "US", .columns: "US", .bitsAllocated: "US", .bitsStored: "US", .highBit: "US", .pixelRepresentation: "US",
        .windowCenter: "DS", .windowWidth: "DS", .rescaleIntercept: "DS", .rescaleSlope: "DS", .pixelData: "OW",
    ]

    struct Header {
        let tag: DICOMTag
        let vr: String
        let length: Int
    }

    /// Reads a tag, VR (explicit only) and length. Item and delimiter tags never carry a VR.
    static func readHeader(_ reader: inout ByteReader, explicit: Bool) throws -> Header {
        let start = reader.position
        let group = try reader.u16("element tag")
        let element = try reader.u16("element tag")
        let tag = DICOMTag(group, element)
        if group == 0xFFFE || !explicit {
            let length = Int(try reader.u32("length of \(tag)"))
            return Header(tag: tag, vr: group == 0xFFFE ? "" : (implicitVRs[tag] ?? "UN"), length: length)
        }
        try reader.require(2, "VR of \(tag)")
        let a = reader.bytes[reader.position], b = reader.bytes[reader.position + 1]
        guard (65...90).contains(a), (65...90).contains(b) else {
            throw MedSynthError(file: reader.path, "invalid VR bytes 0x\(String(a, radix: 16)) 0x\(String(b, radix: 16)) for \(tag) at offset \(start)")
        }
        let vr = String(decoding: [a, b], as: UTF8.self)
        reader.position += 2
        if longVRs.contains(vr) {
            try reader.skip(2, "reserved bytes of \(tag)")
            return Header(tag: tag, vr: vr, length: Int(try reader.u32("length of \(tag)")))
        }
        return Header(tag: tag, vr: vr, length: Int(try reader.u16("length of \(tag)")))
    }

    // MARK: Data set walking

    /// Parses elements until the end of the bytes, or, inside an item of undefined length, until
    /// its Item Delimitation Item. Top-level public elements are stored; nested ones are dropped.
    /// `spilled`: a Pixel Data value kept out of the bytes (see `inflateDataSet`), recorded with its
    /// length where its header ends.
    static func parseElements(_ reader: inout ByteReader, explicit: Bool, depth: Int, inItem: Bool,
                              into elements: inout [DICOMTag: DICOMElement], spilled: PixelSpill? = nil) throws {
        guard depth <= maxDepth else {
            throw MedSynthError(file: reader.path, "sequences nested deeper than \(maxDepth) levels")
        }
        // Some writers pad files with zero bytes after the last element; (0000,0000) cannot start
        // a data set element, so an all-zero tail ends the data set. Where that tail starts is found
        // once: testing "only zeros from here on" at every element was quadratic in the file size.
        let zeroTail = depth == 0 ? (reader.bytes.lastIndex(where: { $0 != 0 }).map { $0 + 1 } ?? 0) : Int.max
        while !reader.atEnd {
            let start = reader.position
            if start >= zeroTail { break }
            let header = try readHeader(&reader, explicit: explicit)
            let tag = header.tag
            if tag.group == 0xFFFE {
                if tag == .itemDelimitation && inItem { return }
                throw MedSynthError(file: reader.path, "unexpected item or delimiter tag \(tag) at offset \(start)")
            }
            if header.length == undefinedLength {
                if tag == .pixelData && depth == 0 {
                    let fragments = try readFragments(&reader)
                    elements[tag] = DICOMElement(tag: tag, vr: header.vr, value: reader.position..<reader.position,
                                                 bigEndian: reader.bigEndian, fragments: fragments)
                } else if header.vr == "SQ" || header.vr == "UN" || !explicit {
                    // PS3.5 §6.2.2: UN of undefined length holds implicit VR little endian items.
                    let valueStart = reader.position, savedOrder = reader.bigEndian
                    if header.vr == "UN" && explicit { reader.bigEndian = false }
                    try skipSequence(&reader, explicit: explicit && header.vr != "UN", depth: depth + 1)
                    reader.bigEndian = savedOrder
                    // Recorded (contents unparsed) so callers can see the sequence exists.
                    if depth == 0 && tag.group % 2 == 0 {
                        elements[tag] = DICOMElement(tag: tag, vr: header.vr, value: valueStart..<reader.position,
                                                     bigEndian: reader.bigEndian, fragments: nil)
                    }
                } else {
                    throw MedSynthError(file: reader.path, "element \(tag) with VR \(header.vr) has undefined length at offset \(start)")
                }
                continue
            }
            if let spilled, depth == 0, tag == .pixelData, reader.position == spilled.valueStart, header.length == spilled.length {
                elements[tag] = DICOMElement(tag: tag, vr: header.vr, value: spilled.valueStart..<(spilled.valueStart + spilled.length),
                                             bigEndian: reader.bigEndian, fragments: nil)
                continue    // the value is in the spill file; what follows it in the data set is next in the bytes
            }
            try reader.require(header.length, "value of \(tag) (length \(header.length))")
            if depth == 0 && tag.group % 2 == 0 && tag.group != 0x0002 {
                elements[tag] = DICOMElement(tag: tag, vr: header.vr,
                                             value: reader.position..<(reader.position + header.length),
                                             bigEndian: reader.bigEndian, fragments: nil)
            }
            reader.position += header.length
        }
        if inItem {
            throw MedSynthError(file: reader.path, "truncated: item of undefined length has no delimiter before the end of the file")
        }
    }

    /// Skips a sequence of undefined length: items (defined or undefined length) up to the
    /// Sequence Delimitation Item.
    static func skipSequence(_ reader: inout ByteReader, explicit: Bool, depth: Int) throws {
        guard depth <= maxDepth else {
            throw MedSynthError(file: reader.path, "sequences nested deeper than \(maxDepth) levels")
        }
        var discarded: [DICOMTag: DICOMElement] = [:]
        while true {
            let start = reader.position
            let header = try readHeader(&reader, explicit: explicit)
            switch header.tag {
            case .sequenceDelimitation:
                return
            case .item where header.length == undefinedLength:
                try parseElements(&reader, explicit: explicit, depth: depth + 1, inItem: true, into: &discarded)
            case .item:
                try reader.skip(header.length, "sequence item (length \(header.length))")
            default:
                throw MedSynthError(file: reader.path, "expected a sequence item at offset \(start), found \(header.tag)")
            }
        }
    }

    /// Reads encapsulated pixel data items (PS3.5 §A.4) up to the Sequence Delimitation Item.
    static func readFragments(_ reader: inout ByteReader) throws -> [Range<Int>] {
        var fragments: [Range<Int>] = []
        while true {
            let start = reader.position
            let header = try readHeader(&reader, explicit: false)
            switch header.tag {
            case .sequenceDelimitation:
                guard !fragments.isEmpty else {
                    throw MedSynthError(file: reader.path, "encapsulated pixel data has no Basic Offset Table item")
                }
                return fragments
            case .item where header.length != undefinedLength:
                try reader.require(header.length, "pixel data fragment (length \(header.length))")
                fragments.append(reader.position..<(reader.position + header.length))
                reader.position += header.length
            default:
                throw MedSynthError(file: reader.path, "expected a pixel data fragment at offset \(start), found \(header.tag)")
            }
        }
    }

    // MARK: Values

    static func decodeString(_ bytes: ArraySlice<UInt8>) -> String {
        // Values are padded with a space (or NUL for UIDs) to even length.
        String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \0"))
    }

    /// The element's value as text (padding trimmed), or nil when absent.
    public func string(_ tag: DICOMTag) -> String? {
        guard let e = elements[tag] else { return nil }
        return DICOMFile.decodeString(bytes[e.value])
    }

    /// A multi-valued text attribute split at backslashes.
    public func strings(_ tag: DICOMTag) -> [String] {
        guard let s = string(tag), !s.isEmpty else { return [] }
        return s.split(separator: "\\", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// An unsigned short (US) value, or nil when absent.
    public func uint16(_ tag: DICOMTag) throws -> UInt16? {
        guard let e = elements[tag] else { return nil }
        guard e.value.count >= 2 else {
            throw MedSynthError(file: path, "\(tag) should hold a 2-byte value, has \(e.value.count) bytes")
        }
        return readUInt16(bytes, at: e.value.lowerBound, bigEndian: e.bigEndian)
    }

    /// Decimal string (DS) or integer string (IS) values as numbers; empty when absent.
    public func numbers(_ tag: DICOMTag) throws -> [Double] {
        try strings(tag).map { text in
            guard let value = Double(text), value.isFinite else {
                throw MedSynthError(file: path, "\(tag) value '\(text)' is not a number")
            }
            return value
        }
    }
}
