import Core
import Foundation

// MARK: - DICOM Secondary Capture writer
//
// Writes one Secondary Capture Image Storage instance (SOP class 1.2.840.10008.5.1.4.1.1.7,
// PS3.3 §A.8) in Explicit VR Little Endian, with Conversion Type "SYN" (synthetic image).
// Patient and study identifiers of a source file are copied only when asked for; otherwise the
// Type 2 attributes are written empty, a new Study Instance UID is made, and Patient Identity
// Removed (0012,0062) is "YES".

/// Options for `encodeDICOMSecondaryCapture`.
public struct DICOMWriteOptions: Sendable {
    /// The file the image derives from (patient/study fields), if any.
    public var source: DICOMFile?
    /// Copy the source's patient and study identifiers (name, ID, birth date, sex, study UID,
    /// date, time, ID, accession number, referring physician, description). Off by default.
    public var keepIdentifiers: Bool
    /// Series to put the image in; nil makes a new one. Pass the same value for a whole batch.
    public var seriesInstanceUID: String?
    /// Study to put the image in when identifiers are not kept; nil makes a new one.
    public var studyInstanceUID: String?
    public var instanceNumber: Int
    public var seriesDescription: String?
    /// Display window written as Window Center/Width (grayscale only); nil writes the full sample
    /// range (center 2^(n-1), width 2^n), which displays samples unchanged.
    public var window: (center: Double, width: Double)?
    /// Source of new UIDs: a seeded stream gives reproducible UIDs (tests, reruns that must match);
    /// nil draws them from the system UUID generator so that separate runs never collide.
    public var uidStream: RandomStream?
    /// For samples read with `--window stored` (grayscale): written as Rescale Slope/Intercept
    /// (SC Image module, PS3.3 §C.8.6.2) so modality values (HU) survive the shift of signed data.
    public var storedValues: StoredValueMapping?

    public init(source: DICOMFile? = nil, keepIdentifiers: Bool = false, seriesInstanceUID: String? = nil,
                studyInstanceUID: String? = nil, instanceNumber: Int = 1, seriesDescription: String? = nil,
                window: (center: Double, width: Double)? = nil, uidStream: RandomStream? = nil) {
        self.source = source
        self.keepIdentifiers = keepIdentifiers
        self.seriesInstanceUID = seriesInstanceUID
        self.studyInstanceUID = studyInstanceUID
        self.instanceNumber = instanceNumber
        self.seriesDescription = seriesDescription
        self.window = window
        self.uidStream = uidStream
    }
}

public enum DICOMUIDs {
    public static let secondaryCaptureSOPClass = "1.2.840.10008.5.1.4.1.1.7"
    /// medsynth's implementation class UID, under the UUID-derived root 2.25 (PS3.5 §B.2).
    public static let implementationClass = "2.25.208453985763519283726400317728563411471"

    /// A new UID "2.25.<128-bit integer>" (PS3.5 §B.2, ITU-T X.667 UUID-derived).
    /// Takes 128 bits from `stream` when given, else from a random UUID.
    public static func make(stream: inout RandomStream?) -> String {
        var hi: UInt64, lo: UInt64
        if stream != nil {
            hi = stream!.nextUInt64()
            lo = stream!.nextUInt64()
        } else {
            let u = UUID().uuid
            hi = [u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7].reduce(0) { $0 << 8 | UInt64($1) }
            lo = [u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15].reduce(0) { $0 << 8 | UInt64($1) }
        }
        // Decimal digits of hi·2^64 + lo by repeated division by 10.
        var digits: [UInt8] = []
        while hi != 0 || lo != 0 {
            let (qh, rh) = hi.quotientAndRemainder(dividingBy: 10)
            let (ql, rl) = (10 as UInt64).dividingFullWidth((rh, lo))
            hi = qh; lo = ql
            digits.append(UInt8(rl) + 48)
        }
        if digits.isEmpty { digits = [48] }
        return "2.25." + String(decoding: digits.reversed(), as: UTF8.self)
    }
}

/// Accumulates explicit VR little endian elements.
private struct ElementWriter {
    var out = ByteWriter()

    mutating func element(_ tag: DICOMTag, _ vr: String, _ value: [UInt8]) {
        let long = DICOMFile.longVRs.contains(vr)
        // Short-form lengths are 16 bits; text copied from a source file may be longer.
        var value = long ? value : Array(value.prefix(65534))
        // Values have even length: UIDs pad with NUL, other text with a space, binary with 0.
        if value.count % 2 == 1 { value.append(vr == "UI" || vr == "OB" || vr == "OW" ? 0 : 0x20) }
        out.u16(tag.group)
        out.u16(tag.element)
        out.bytes += Array(vr.utf8)
        if long {
            out.u16(0)
            out.u32(UInt32(value.count))
        } else {
            out.u16(UInt16(value.count))
        }
        out.bytes += value
    }

    mutating func text(_ tag: DICOMTag, _ vr: String, _ s: String) { element(tag, vr, Array(s.utf8)) }

    mutating func us(_ tag: DICOMTag, _ v: Int) {
        var w = ByteWriter()
        w.u16(UInt16(v))
        element(tag, "US", w.bytes)
    }
}

/// Encodes a slice as a DICOM Part 10 Secondary Capture file (Explicit VR Little Endian).
public func encodeDICOMSecondaryCapture(_ slice: Image, options: DICOMWriteOptions = .init(), path: String) throws -> [UInt8] {
    guard slice.channels == 1 || slice.channels == 3 else {
        throw MedSynthError(file: path, "DICOM output needs 1 or 3 channels, image has \(slice.channels)")
    }
    guard slice.width >= 1, slice.height >= 1, slice.width <= 65535, slice.height <= 65535 else {
        throw MedSynthError(file: path, "DICOM output needs 1...65535 rows and columns, image is \(slice.width)x\(slice.height)")
    }
    guard slice.bitDepth == 8 || slice.bitDepth == 16 else {
        throw MedSynthError(file: path, "DICOM output needs 8- or 16-bit samples, image has \(slice.bitDepth)")
    }
    guard let pixelBytes = checkedProduct([slice.width, slice.height, slice.channels, slice.bitDepth / 8]),
          pixelBytes < Int(UInt32.max) else {
        throw MedSynthError(file: path, "image is too large for uncompressed DICOM pixel data (4 GiB)")
    }
    var uids = options.uidStream
    let instanceUID = DICOMUIDs.make(stream: &uids)
    let seriesUID = options.seriesInstanceUID ?? DICOMUIDs.make(stream: &uids)
    let keep = options.keepIdentifiers && options.source != nil
    let source = keep ? options.source : nil
    func kept(_ tag: DICOMTag) -> String { source?.string(tag) ?? "" }
    let studyUID = source?.string(.studyInstanceUID).flatMap { $0.isEmpty ? nil : $0 }
        ?? options.studyInstanceUID ?? DICOMUIDs.make(stream: &uids)

    // Data set, in ascending tag order.
    var ds = ElementWriter()
    if let charset = source?.string(.specificCharacterSet), !charset.isEmpty { ds.text(.specificCharacterSet, "CS", charset) }
    ds.text(DICOMTag(0x0008, 0x0008), "CS", "DERIVED\\SECONDARY")
    ds.text(.sopClassUID, "UI", DICOMUIDs.secondaryCaptureSOPClass)
    ds.text(.sopInstanceUID, "UI", instanceUID)
    ds.text(.studyDate, "DA", kept(.studyDate))
    ds.text(.studyTime, "TM", kept(.studyTime))
    ds.text(.accessionNumber, "SH", kept(.accessionNumber))
    ds.text(.modality, "CS", "OT")
    ds.text(DICOMTag(0x0008, 0x0064), "CS", "SYN")  // Conversion Type: synthetic image
    ds.text(.referringPhysicianName, "PN", kept(.referringPhysicianName))
    if let d = source?.string(.studyDescription), !d.isEmpty { ds.text(.studyDescription, "LO", d) }
    if let d = options.seriesDescription { ds.text(DICOMTag(0x0008, 0x103E), "LO", String(d.prefix(64))) }
    ds.text(DICOMTag(0x0008, 0x1090), "LO", "medsynth \(MedSynthVersion.current)")  // Manufacturer's Model Name
    ds.text(.patientName, "PN", kept(.patientName))
    ds.text(.patientID, "LO", kept(.patientID))
    ds.text(.patientBirthDate, "DA", kept(.patientBirthDate))
    ds.text(.patientSex, "CS", kept(.patientSex))
    if !keep {
        ds.text(DICOMTag(0x0012, 0x0062), "CS", "YES")  // Patient Identity Removed
        ds.text(DICOMTag(0x0012, 0x0063), "LO", "medsynth: source identifiers not copied")
    }
    ds.text(.studyInstanceUID, "UI", studyUID)
    ds.text(.seriesInstanceUID, "UI", seriesUID)
    ds.text(.studyID, "SH", kept(.studyID))
    ds.text(DICOMTag(0x0020, 0x0011), "IS", "1")  // Series Number
    ds.text(.instanceNumber, "IS", String(options.instanceNumber))
    ds.text(DICOMTag(0x0020, 0x0020), "CS", "")  // Patient Orientation (type 2C)
    ds.us(.samplesPerPixel, slice.channels)
    ds.text(.photometricInterpretation, "CS", slice.channels == 3 ? "RGB" : "MONOCHROME2")
    if slice.channels == 3 { ds.us(.planarConfiguration, 0) }
    ds.us(.rows, slice.height)
    ds.us(.columns, slice.width)
    ds.us(.bitsAllocated, slice.bitDepth)
    ds.us(.bitsStored, slice.bitDepth)
    ds.us(.highBit, slice.bitDepth - 1)
    ds.us(.pixelRepresentation, 0)
    // Rescale: modality value = sample × slope + (intercept + slope × stored minimum).
    let rescale = slice.channels == 1 ? options.storedValues.flatMap { m -> (slope: Double, intercept: Double)? in
        let intercept = m.intercept + m.slope * Double(m.storedMinimum)
        return m.slope == 1 && intercept == 0 ? nil : (m.slope, intercept)
    } : nil
    if slice.channels == 1 {
        // Default window: the whole sample range, which the linear VOI function maps to itself
        // (edges 0 and 2^n - 1), so viewers and our reader show the samples unchanged. VOI applies
        // to modality values, so with a rescale the same range is given in modality units.
        let full = Double(1 << slice.bitDepth)
        let w = options.window ?? (rescale.map { r in (center: r.intercept + r.slope * full / 2, width: abs(r.slope) * full) }
                                   ?? (center: full / 2, width: full))
        ds.text(.windowCenter, "DS", formatDS(w.center))
        ds.text(.windowWidth, "DS", formatDS(w.width))
        if let rescale {
            ds.text(.rescaleIntercept, "DS", formatDS(rescale.intercept))
            ds.text(.rescaleSlope, "DS", formatDS(rescale.slope))
            ds.text(DICOMTag(0x0028, 0x1054), "LO", "US")  // Rescale Type: unspecified
        }
    }
    var pixels = ByteWriter()
    pixels.bytes.reserveCapacity(slice.samples.count * slice.bitDepth / 8)
    if slice.bitDepth == 8 {
        for s in slice.samples { pixels.u8(UInt8(min(s, 255))) }
    } else {
        for s in slice.samples { pixels.u16(s) }
    }
    ds.element(.pixelData, slice.bitDepth == 8 ? "OB" : "OW", pixels.bytes)

    // File meta group; (0002,0000) holds the length of the elements after it.
    var meta = ElementWriter()
    meta.element(DICOMTag(0x0002, 0x0001), "OB", [0x00, 0x01])
    meta.text(DICOMTag(0x0002, 0x0002), "UI", DICOMUIDs.secondaryCaptureSOPClass)
    meta.text(DICOMTag(0x0002, 0x0003), "UI", instanceUID)
    meta.text(.transferSyntaxUID, "UI", TransferSyntax.explicitLittleUID)
    meta.text(DICOMTag(0x0002, 0x0012), "UI", DICOMUIDs.implementationClass)
    meta.text(DICOMTag(0x0002, 0x0013), "SH", "MEDSYNTH_" + MedSynthVersion.current)
    var groupLength = ByteWriter()
    groupLength.u32(UInt32(meta.out.bytes.count))
    var head = ElementWriter()
    head.element(DICOMTag(0x0002, 0x0000), "UL", groupLength.bytes)

    return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + head.out.bytes + meta.out.bytes + ds.out.bytes
}

/// A decimal string (DS, at most 16 characters).
func formatDS(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    var s = String(format: "%.6g", v)
    if s.count > 16 { s = String(format: "%.8e", v) }
    return s
}

/// Writes a Secondary Capture file atomically.
public func writeDICOMSecondaryCapture(_ slice: Image, to url: URL, options: DICOMWriteOptions = .init()) throws {
    let bytes = try encodeDICOMSecondaryCapture(slice, options: options, path: url.path)
    try writeAtomically(Data(bytes), to: url)
}

// MARK: - NIfTI-1 stack writer
//
// Stacks equal-sized grayscale slices into a 3-D volume: uint8 (DT_UINT8) or uint16 (DT_UINT16),
// identity sform/qform (1 mm voxels), so that reading it back with the axial axis returns the same
// images in the same order: image pixel (x, y) of slice k is voxel (x, H-1-y, k).

/// How the samples of slices read with `--window stored` relate to the file's values: stored value
/// = sample + `storedMinimum` (signed data was shifted up by its storage minimum), modality value
/// (e.g. Hounsfield units) = stored × `slope` + `intercept`.
public struct StoredValueMapping: Equatable, Sendable {
    public var storedMinimum: Int
    public var slope: Double
    public var intercept: Double

    public init(storedMinimum: Int, slope: Double = 1, intercept: Double = 0) {
        self.storedMinimum = storedMinimum
        self.slope = slope
        self.intercept = intercept
    }

    /// Samples are the values themselves (PNG, JPEG, unsigned data without rescale).
    public static let identity = StoredValueMapping(storedMinimum: 0)

    /// The mapping of samples rendered with `MedicalWindow.stored` from data with this encoding.
    public init?(storedSamplesOf encoding: PixelEncoding) {
        guard let range = encoding.storedRange else { return nil }
        self.init(storedMinimum: range.lowerBound, slope: encoding.slope, intercept: encoding.intercept)
    }
}

/// Encodes slices as a single-file NIfTI-1 volume (uncompressed), in memory (see `NIfTIStackWriter`
/// for the format and `values`).
public func encodeNIfTIStack(_ slices: [Image], values: StoredValueMapping? = nil, path: String) throws -> [UInt8] {
    guard let first = slices.first else { throw MedSynthError(file: path, "no images to write") }
    let layout = try NIfTIStackLayout(first: first, values: values, path: path)
    var out = ByteWriter()
    for (i, s) in slices.enumerated() { try layout.appendVoxels(s, index: i, into: &out) }
    return layout.header(count: slices.count) + out.bytes
}

/// What every slice of a stack shares (size, depth, voxel type, value mapping), settled from the
/// first slice, and the encoding of voxels and header.
struct NIfTIStackLayout {
    let width: Int, height: Int, bitDepth: Int
    let dataType: NIfTIDataType
    let mapping: StoredValueMapping
    let path: String

    init(first: Image, values: StoredValueMapping?, path: String) throws {
        guard first.width <= 32767, first.height <= 32767 else {
            throw MedSynthError(file: path, "NIfTI-1 dimensions are limited to 32767")
        }
        let mapping = values ?? .identity
        guard mapping.slope.isFinite, mapping.intercept.isFinite, abs(mapping.slope) <= Double(Float.greatestFiniteMagnitude),
              abs(mapping.intercept) <= Double(Float.greatestFiniteMagnitude), mapping.slope != 0 else {
            throw MedSynthError(file: path, "rescale slope \(mapping.slope) / intercept \(mapping.intercept) cannot be NIfTI scl_slope/scl_inter")
        }
        width = first.width; height = first.height; bitDepth = first.bitDepth
        self.mapping = mapping
        self.path = path
        dataType = mapping.storedMinimum < 0 ? .int16 : (first.bitDepth == 8 ? .uint8 : .uint16)
    }

    /// Appends slice `index`'s voxels (bottom image row first) after checking it fits the stack.
    func appendVoxels(_ s: Image, index i: Int, into out: inout ByteWriter) throws {
        guard s.channels == 1 else { throw MedSynthError(file: path, "NIfTI stacks are grayscale; image \(i) has \(s.channels) channels") }
        guard s.width == width, s.height == height, s.bitDepth == bitDepth else {
            throw MedSynthError(file: path, "image \(i) is \(s.width)x\(s.height) at \(s.bitDepth) bits, image 0 is \(width)x\(height) at \(bitDepth) bits")
        }
        guard i < 32767 else { throw MedSynthError(file: path, "NIfTI-1 dimensions are limited to 32767") }
        if dataType == .int16 {
            let top = Int(s.samples.max() ?? 0)
            guard mapping.storedMinimum >= -32768, top + mapping.storedMinimum <= 32767 else {
                throw MedSynthError(file: path, "stored values \(mapping.storedMinimum)...\(top + mapping.storedMinimum) do not fit NIfTI int16")
            }
        }
        // Little-endian voxels written by index into a sized buffer (appending byte by byte was a
        // tenth of an export's time at the pixel limit).
        let (w, h, size) = (width, height, dataType.bytes)
        let base = out.bytes.count
        out.bytes += [UInt8](repeating: 0, count: w * h * size)
        for j in 0..<h {
            let y = h - 1 - j
            for x in 0..<w {
                let v = s.samples[y * w + x]
                let o = base + (j * w + x) * size
                switch dataType {
                case .uint8: out.bytes[o] = UInt8(min(v, 255))
                case .int16:
                    let stored = UInt16(bitPattern: Int16(Int(v) + mapping.storedMinimum))
                    out.bytes[o] = UInt8(stored & 0xFF); out.bytes[o + 1] = UInt8(stored >> 8)
                default: out.bytes[o] = UInt8(v & 0xFF); out.bytes[o + 1] = UInt8(v >> 8)
                }
            }
        }
    }

    /// The 352-byte header (348 + no extensions) of a stack of `count` slices.
    func header(count n: Int) -> [UInt8] {
        var out = ByteWriter()
        out.i32(348)                                   // sizeof_hdr
        out.bytes += [UInt8](repeating: 0, count: 36)  // data_type, db_name, extents, session_error, regular
        out.bytes[38] = UInt8(ascii: "r")              // regular = 'r' (ANALYZE legacy)
        for d in [3, width, height, n, 1, 1, 1, 1] { out.i16(Int16(d)) }  // dim
        for _ in 0..<3 { out.f32(0) }                                   // intent_p1...p3
        out.i16(0)                                                      // intent_code
        out.i16(dataType.rawValue)
        out.i16(Int16(dataType.bytes * 8))                              // bitpix
        out.i16(0)                                                      // slice_start
        for p in [1, 1, 1, 1, 0, 0, 0, 0] as [Float] { out.f32(p) }     // pixdim (qfac = 1)
        out.f32(352)                                                    // vox_offset
        out.f32(Float(mapping.slope)); out.f32(Float(mapping.intercept)) // scl_slope, scl_inter
        out.i16(0); out.u8(0); out.u8(10)                               // slice_end, slice_code, xyzt_units (mm, s)
        out.f32(0); out.f32(0); out.f32(0); out.f32(0)                  // cal_max, cal_min, slice_duration, toffset
        out.i32(0); out.i32(0)                                          // glmax, glmin
        out.ascii("medsynth \(MedSynthVersion.current)", length: 80)    // descrip
        out.ascii("", length: 24)                                       // aux_file
        out.i16(1); out.i16(1)                                          // qform_code, sform_code: scanner
        for _ in 0..<6 { out.f32(0) }                                   // quatern_b,c,d, qoffset_x,y,z
        for row in [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]] as [[Float]] { for v in row { out.f32(v) } }
        out.ascii("", length: 16)                                       // intent_name
        out.bytes += [0x6E, 0x2B, 0x31, 0x00]                           // magic "n+1"
        out.bytes += [0, 0, 0, 0]                                       // no extensions
        precondition(out.bytes.count == 352, "NIfTI header layout")
        return out.bytes
    }
}

/// Writes a NIfTI-1 stack one slice at a time, so memory holds one slice, not the volume: voxels go
/// to a temporary file beside the output, the header (which needs the slice count) is written
/// last, and `finish` renames it into place (gzip-compressing it first for a ".gz" name).
/// Dropping an unfinished writer removes its temporary file.
/// `values`: for samples read with `--window stored`: the voxels become the stored values again
/// (int16 when any can be negative, as dcm2niix writes signed CT/MR) and scl_slope/scl_inter carry
/// the modality rescale, so nibabel's `get_fdata()` gives modality values (HU) and the raw voxels
/// equal pydicom's `pixel_array`. nil writes the samples as they are.
public final class NIfTIStackWriter {
    public let url: URL
    private let values: StoredValueMapping?
    private let temporary: String
    private var file: UnsafeMutablePointer<FILE>?
    private var layout: NIfTIStackLayout?
    public private(set) var count = 0

    public init(url: URL, values: StoredValueMapping? = nil) throws {
        self.url = url
        self.values = values
        let folder = url.deletingLastPathComponent().path
        temporary = folder + "/" + temporaryFilePrefix(for: url) + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard let file = fopen(temporary, "wb") else {
            throw MedSynthError(file: url.path, "cannot write: \(String(cString: strerror(errno)))")
        }
        self.file = file
        // Room for the header, written by `finish`.
        try write([UInt8](repeating: 0, count: 352))
    }

    deinit {
        if let file { fclose(file); unlink(temporary) }
    }

    private func write(_ bytes: [UInt8]) throws {
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard written == bytes.count else { throw MedSynthError(file: url.path, "cannot write: \(String(cString: strerror(errno)))") }
    }

    /// Appends one slice (same size and depth as the first, one channel).
    public func append(_ slice: Image) throws {
        if layout == nil { layout = try NIfTIStackLayout(first: slice, values: values, path: url.path) }
        var out = ByteWriter()
        try layout!.appendVoxels(slice, index: count, into: &out)
        try write(out.bytes)
        count += 1
    }

    /// Writes the header and moves the finished file into place.
    public func finish() throws {
        guard let layout, count > 0 else { throw MedSynthError(file: url.path, "no images to write") }
        guard fseek(file, 0, SEEK_SET) == 0 else { throw MedSynthError(file: url.path, "cannot write: \(String(cString: strerror(errno)))") }
        try write(layout.header(count: count))
        let flushed = fflush(file) == 0
        let savedErrno = errno
        fclose(file)
        file = nil
        defer { unlink(temporary) }
        guard flushed else { throw MedSynthError(file: url.path, "cannot write: \(String(cString: strerror(savedErrno)))") }
        var finished = temporary
        if url.pathExtension.lowercased() == "gz" {
            finished = temporary + "z"
            do { try gzipCompressFile(source: temporary, destination: finished, path: url.path) } catch {
                unlink(finished)
                throw error
            }
        }
        guard rename(finished, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(finished)
            throw MedSynthError(file: url.path, "cannot move the finished file into place: \(reason)")
        }
    }
}

/// Writes a NIfTI-1 stack atomically; a name ending in ".gz" is gzip-compressed.
/// `values`: see `NIfTIStackWriter`.
public func writeNIfTIStack(_ slices: [Image], values: StoredValueMapping? = nil, to url: URL) throws {
    let writer = try NIfTIStackWriter(url: url, values: values)
    for slice in slices { try writer.append(slice) }
    try writer.finish()
}
