import Core
import Foundation

// MARK: - DICOM pixel data
//
// Image Pixel module attributes (PS3.3 §C.7.6.3) describe how Pixel Data (7FE0,0010) is laid out:
// Rows × Columns × Samples per Pixel × Number of Frames samples of Bits Allocated bits, of which
// Bits Stored are significant, ending at High Bit, signed when Pixel Representation = 1.

/// The attributes needed to decode and display a DICOM image.
public struct DICOMImageInfo: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    public var samplesPerPixel: Int
    public var bitsAllocated: Int
    public var bitsStored: Int
    public var highBit: Int
    public var isSigned: Bool
    /// MONOCHROME1, MONOCHROME2, RGB, YBR_FULL_422, ...
    public var photometric: String
    /// 0: RGBRGB...; 1: RR..GG..BB.. per frame.
    public var planarConfiguration: Int
    public var numberOfFrames: Int
    public var rescaleSlope: Double
    public var rescaleIntercept: Double
    /// First Window Center/Width value pair, if the file has one.
    public var window: (center: Double, width: Double)?

    public static func == (a: DICOMImageInfo, b: DICOMImageInfo) -> Bool {
        a.rows == b.rows && a.columns == b.columns && a.samplesPerPixel == b.samplesPerPixel
            && a.bitsAllocated == b.bitsAllocated && a.bitsStored == b.bitsStored && a.highBit == b.highBit
            && a.isSigned == b.isSigned && a.photometric == b.photometric && a.planarConfiguration == b.planarConfiguration
            && a.numberOfFrames == b.numberOfFrames && a.rescaleSlope == b.rescaleSlope
            && a.rescaleIntercept == b.rescaleIntercept && a.window?.center == b.window?.center && a.window?.width == b.window?.width
    }

    /// How stored values become modality values and the file's window.
    public var encoding: PixelEncoding {
        let range: ClosedRange<Int> = isSigned ? -(1 << (bitsStored - 1))...((1 << (bitsStored - 1)) - 1) : 0...((1 << bitsStored) - 1)
        return PixelEncoding(slope: rescaleSlope, intercept: rescaleIntercept, storedRange: range,
                             storedBits: bitsStored, invert: photometric == "MONOCHROME1", fileWindow: window)
    }
}

/// Pixel data as found in the file.
public enum DICOMPixelData: Sendable {
    /// Uncompressed frames of stored values.
    case native([ScalarFrame])
    /// JPEG baseline: one complete JPEG stream per frame, to be decoded by libjpeg.
    case jpegBaseline([[UInt8]])
}

extension DICOMFile {
    func requiredUInt16(_ tag: DICOMTag, _ name: String) throws -> Int {
        guard let v = try uint16(tag) else { throw MedSynthError(file: path, "missing \(name) \(tag)") }
        return Int(v)
    }

    /// Reads and checks the Image Pixel module attributes.
    public func imageInfo() throws -> DICOMImageInfo {
        let rows = try requiredUInt16(.rows, "Rows")
        let columns = try requiredUInt16(.columns, "Columns")
        guard rows > 0, columns > 0 else { throw MedSynthError(file: path, "image is \(columns)x\(rows) pixels") }
        let spp = try uint16(.samplesPerPixel).map(Int.init) ?? 1
        guard spp == 1 || spp == 3 else { throw MedSynthError(file: path, "not supported: \(spp) samples per pixel") }
        let allocated = try requiredUInt16(.bitsAllocated, "Bits Allocated")
        guard allocated == 8 || allocated == 16 else {
            throw MedSynthError(file: path, "not supported: \(allocated) bits allocated (8 or 16 are)")
        }
        let stored = try uint16(.bitsStored).map(Int.init) ?? allocated
        let high = try uint16(.highBit).map(Int.init) ?? (stored - 1)
        guard stored >= 1, stored <= allocated, high < allocated, high + 1 >= stored else {
            throw MedSynthError(file: path, "inconsistent bits: allocated \(allocated), stored \(stored), high bit \(high)")
        }
        let signed = (try uint16(.pixelRepresentation) ?? 0) == 1
        let photometric = string(.photometricInterpretation).map { $0.uppercased() } ?? (spp == 1 ? "MONOCHROME2" : "RGB")
        let planar = try uint16(.planarConfiguration).map(Int.init) ?? 0
        guard planar == 0 || planar == 1 else { throw MedSynthError(file: path, "planar configuration \(planar) is not 0 or 1") }
        let frames = try numbers(.numberOfFrames).first ?? 1
        guard frames >= 1, frames <= Double(Int32.max), frames == frames.rounded() else {
            throw MedSynthError(file: path, "invalid number of frames \(frames)")
        }
        let slope = try numbers(.rescaleSlope).first ?? 1
        let intercept = try numbers(.rescaleIntercept).first ?? 0
        // Modality values must stay far inside Double's range, or windowing arithmetic turns them
        // into infinities and NaN (a slope of 1e308 on 12-bit data gave black images).
        let largestStored = Double(1 << stored)
        guard abs(slope) * largestStored + abs(intercept) <= PixelEncoding.largestModalityValue else {
            throw MedSynthError(file: path, "rescale slope \(slope) and intercept \(intercept) give values beyond ±\(PixelEncoding.largestModalityValue) for \(stored)-bit data")
        }
        let centers = try numbers(.windowCenter), widths = try numbers(.windowWidth)
        // A window outside the representable modality range is ignored (as if absent).
        let window = (centers.first != nil && widths.first != nil
                      && abs(centers[0]) <= PixelEncoding.largestModalityValue && abs(widths[0]) <= PixelEncoding.largestModalityValue)
            ? (centers[0], widths[0]) : nil
        return DICOMImageInfo(rows: rows, columns: columns, samplesPerPixel: spp, bitsAllocated: allocated,
                              bitsStored: stored, highBit: high, isSigned: signed, photometric: photometric,
                              planarConfiguration: planar, numberOfFrames: Int(frames),
                              rescaleSlope: slope == 0 ? 1 : slope, rescaleIntercept: intercept, window: window)
    }

    /// Extracts the pixel data: native frames, or JPEG baseline streams (one per frame).
    /// Other compressed transfer syntaxes throw "not supported: <name>". The declared image size is
    /// checked against `maxPixels` (per file) and `maxImagePixels` (per frame) first.
    public func pixelData(info: DICOMImageInfo, maxPixels: Int = DecodeLimits.maxPixels,
                          maxImagePixels: Int = DecodeLimits.maxImagePixels) throws -> DICOMPixelData {
        switch try pixelSource(info: info, maxPixels: maxPixels, maxImagePixels: maxImagePixels) {
        case .native(let element):
            return .native(try (0..<info.numberOfFrames).map { try nativeFrame(element, info: info, index: $0) })
        case .jpegBaseline(let streams):
            return .jpegBaseline(streams)
        }
    }

    /// Where the pixels are, with every check that can fail made: native pixel data (the element,
    /// decoded a frame at a time by `nativeFrame`) or the JPEG streams.
    enum PixelSource {
        case native(DICOMElement)
        case jpegBaseline([[UInt8]])
    }

    func pixelSource(info: DICOMImageInfo, maxPixels: Int, maxImagePixels: Int) throws -> PixelSource {
        guard let element = elements[.pixelData] else { throw MedSynthError(file: path, "no Pixel Data (7FE0,0010)") }
        func checkLimits() throws {
            try DecodeLimits.check(imageWidth: info.columns, height: info.rows, images: info.numberOfFrames,
                                   maxImagePixels: maxImagePixels, maxPixels: maxPixels, what: "DICOM frame", path: path)
        }
        switch transferSyntax {
        case .unsupported(_, let name):
            throw MedSynthError(file: path, "not supported: \(name)")
        case .jpegBaseline:
            guard let fragments = element.fragments else {
                throw MedSynthError(file: path, "JPEG Baseline file has native (not encapsulated) pixel data")
            }
            try checkLimits()
            return .jpegBaseline(try jpegFrames(fragments: fragments, frames: info.numberOfFrames))
        default:
            guard element.fragments == nil else {
                throw MedSynthError(file: path, "encapsulated pixel data in uncompressed transfer syntax \(transferSyntax.name)")
            }
            try requirePixelBytes(element, info: info)
            try checkLimits()
            guard info.photometric == "MONOCHROME1" || info.photometric == "MONOCHROME2" || info.photometric == "RGB" else {
                throw MedSynthError(file: path, "not supported: photometric interpretation \(info.photometric)")
            }
            guard (info.samplesPerPixel == 3) == (info.photometric == "RGB") else {
                throw MedSynthError(file: path, "\(info.photometric) with \(info.samplesPerPixel) samples per pixel")
            }
            return .native(element)
        }
    }

    /// Stored values of native frame `f`; `element` must have passed `pixelSource`'s checks. A
    /// spilled value (see `inflateDataSet`) is read back one frame at a time.
    func nativeFrame(_ element: DICOMElement, info: DICOMImageInfo, index f: Int) throws -> ScalarFrame {
        guard let spill = pixelSpill, element.tag == .pixelData, element.value.lowerBound == spill.valueStart else {
            return nativeFrame(element, info: info, index: f, from: bytes, valueStart: element.value.lowerBound)
        }
        // Deflated data sets are little endian: no byte pairs to swap across frames.
        let frameBytes = info.rows * info.columns * info.samplesPerPixel * (info.bitsAllocated / 8)
        var raw = [UInt8](repeating: 0, count: frameBytes)
        try raw.withUnsafeMutableBytes { try spill.file.read(into: $0, at: f * frameBytes) }
        return nativeFrame(element, info: info, index: f, from: raw, valueStart: -f * frameBytes)
    }

    /// `nativeFrame` on the bytes holding the element's value, which starts at `valueStart` in them.
    private func nativeFrame(_ element: DICOMElement, info: DICOMImageInfo, index f: Int, from bytes: [UInt8], valueStart: Int) -> ScalarFrame {
        let bytesPerSample = info.bitsAllocated / 8
        let samplesPerFrame = info.rows * info.columns * info.samplesPerPixel
        let shift = info.highBit + 1 - info.bitsStored
        let mask = (1 << info.bitsStored) - 1
        let signBit = 1 << (info.bitsStored - 1)
        let bigEndian = element.bigEndian
        // OW data in big endian holds 8-bit samples swapped within each 16-bit word (PS3.5 §8.1.1).
        let swapBytePairs = bigEndian && element.vr == "OW" && bytesPerSample == 1
        let planar = info.samplesPerPixel == 3 && info.planarConfiguration == 1
        let pixels = info.rows * info.columns
        var values = [Float](repeating: 0, count: samplesPerFrame)
        bytes.withUnsafeBufferPointer { raw in
            values.withUnsafeMutableBufferPointer { out in
                let base = valueStart + f * samplesPerFrame * bytesPerSample
                // Byte pairs are swapped across the whole value, not per frame: sample g of
                // the value lives at byte g ^ 1 (the value is padded to even length).
                let firstSample = f * samplesPerFrame
                if bytesPerSample == 2 && !bigEndian && !planar {
                    // The common case (16-bit little endian, one plane) without per-sample branches
                    // on the layout: every frame is converted twice for a data-range window.
                    let source = UnsafeRawPointer(raw.baseAddress! + base)
                    for s in 0..<samplesPerFrame {
                        var word = Int(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * s, as: UInt16.self)))
                        word = (word >> shift) & mask
                        if info.isSigned && word & signBit != 0 { word -= signBit << 1 }
                        out[s] = Float(word)
                    }
                    return
                }
                for s in 0..<samplesPerFrame {
                    var word: Int
                    if bytesPerSample == 1 {
                        word = Int(raw[swapBytePairs ? valueStart + ((firstSample + s) ^ 1) : base + s])
                    } else {
                        let a = Int(raw[base + 2 * s]), b = Int(raw[base + 2 * s + 1])
                        word = bigEndian ? (a << 8 | b) : (b << 8 | a)
                    }
                    word = (word >> shift) & mask
                    if info.isSigned && word & signBit != 0 { word -= signBit << 1 }
                    // Planar configuration 1 stores each colour plane whole; interleave it.
                    let destination = planar ? (s % pixels) * 3 + s / pixels : s
                    out[destination] = Float(word)
                }
            }
        }
        return ScalarFrame(width: info.columns, height: info.rows, channels: info.samplesPerPixel, values: values)
    }

    /// Throws unless the native pixel data holds every sample the header declares; for byte-swapped
    /// 8-bit OW data (big endian) that includes the pad byte of an odd count, where the last sample
    /// lives. Checked before anything is allocated.
    func requirePixelBytes(_ element: DICOMElement, info: DICOMImageInfo) throws {
        let bytesPerSample = info.bitsAllocated / 8
        let swapBytePairs = element.bigEndian && element.vr == "OW" && bytesPerSample == 1
        guard let samples = checkedProduct([info.rows, info.columns, info.samplesPerPixel, info.numberOfFrames]),
              let needed = checkedProduct([samples, bytesPerSample]),
              needed + (swapBytePairs ? needed % 2 : 0) <= element.value.count else {
            throw MedSynthError(file: path, "pixel data has \(element.value.count) bytes, \(info.numberOfFrames) frame(s) of \(info.columns)x\(info.rows)x\(info.samplesPerPixel) at \(info.bitsAllocated) bits need more")
        }
    }

    /// Groups encapsulated fragments into one JPEG stream per frame (PS3.5 §A.4): a single frame
    /// takes every fragment; otherwise a fragment starting with an SOI marker (FF D8) starts a frame.
    func jpegFrames(fragments: [Range<Int>], frames: Int) throws -> [[UInt8]] {
        let data = fragments.dropFirst()  // the first item is the Basic Offset Table
        guard !data.isEmpty else { throw MedSynthError(file: path, "encapsulated pixel data has no fragments") }
        var streams: [[UInt8]] = []
        for range in data {
            let fragment = bytes[range]
            let startsFrame = fragment.count >= 2 && fragment[range.lowerBound] == 0xFF && fragment[range.lowerBound + 1] == 0xD8
            if streams.isEmpty || (frames > 1 && startsFrame) {
                streams.append(Array(fragment))
            } else {
                streams[streams.count - 1] += fragment
            }
        }
        guard streams.count == frames else {
            throw MedSynthError(file: path, "encapsulated pixel data holds \(streams.count) JPEG stream(s) for \(frames) frame(s)")
        }
        return streams
    }
}

/// Decodes one JPEG frame to stored values; supplied by module Imaging (libjpeg). A stream whose
/// own header declares more than `maxPixels` pixels must be refused before it is decoded.
public typealias JPEGFrameDecoder = (_ stream: [UInt8], _ frameIndex: Int, _ maxPixels: Int) throws -> ScalarFrame

/// A DICOM file's frames as images, made one at a time by `forEach`: native frames are converted
/// and windowed as they are visited, so a multi-frame file costs its bytes plus one frame, not
/// every frame as Float values and again as samples (1,024 frames of 512x512 were 2.1 GB).
public struct DICOMFrames {
    public let file: DICOMFile
    public let info: DICOMImageInfo
    /// How stored values become samples and modality values (what `--window stored` writes back).
    public let encoding: PixelEncoding
    enum Source {
        case native(DICOMElement)
        case decoded([ScalarFrame])
    }
    let source: Source
    let mapping: DisplayMapping
    let bitDepth: Int

    /// Number of images `forEach` gives.
    public var count: Int {
        switch source {
        case .native: return info.numberOfFrames
        case .decoded(let frames): return frames.count
        }
    }

    /// Calls `body` with each frame in order, windowed.
    public func forEach(_ body: (Image) throws -> Void) throws {
        switch source {
        case .native(let element):
            for f in 0..<info.numberOfFrames {
                try body(renderFrame(try file.nativeFrame(element, info: info, index: f), encoding: encoding, mapping: mapping, bitDepth: bitDepth))
            }
        case .decoded(let frames):
            for frame in frames { try body(renderFrame(frame, encoding: encoding, mapping: mapping, bitDepth: bitDepth)) }
        }
    }
}

extension DICOMFrames {
    /// Frame `index` alone, windowed (what `forEach` gives at that position).
    public func image(at index: Int) throws -> Image {
        guard index >= 0 && index < count else {
            throw MedSynthError(file: file.path, "frame \(index) does not exist (the file has \(count))")
        }
        switch source {
        case .native(let element):
            return renderFrame(try file.nativeFrame(element, info: info, index: index), encoding: encoding, mapping: mapping, bitDepth: bitDepth)
        case .decoded(let frames):
            return renderFrame(frames[index], encoding: encoding, mapping: mapping, bitDepth: bitDepth)
        }
    }
}

/// Opens a DICOM file's frames for windowing (see `readDICOMSlices` for the parameters). Every
/// check that can fail is made here; JPEG frames are decoded here, native frames by `forEach`.
public func openDICOMFrames(_ file: DICOMFile, window: MedicalWindow = .fileDefault, bitDepth: Int? = nil,
                            decodeJPEG: JPEGFrameDecoder? = nil, maxPixels: Int = DecodeLimits.maxPixels,
                            maxImagePixels: Int = DecodeLimits.maxImagePixels) throws -> DICOMFrames {
    let info = try file.imageInfo()
    var encoding = info.encoding
    let source: DICOMFrames.Source
    switch try file.pixelSource(info: info, maxPixels: maxPixels, maxImagePixels: maxImagePixels) {
    case .native(let element):
        source = .native(element)
    case .jpegBaseline(let streams):
        guard let decodeJPEG else { throw MedSynthError(file: file.path, "not supported: JPEG Baseline without a JPEG decoder") }
        guard info.bitsAllocated == 8 else {
            throw MedSynthError(file: file.path, "JPEG Baseline with \(info.bitsAllocated) bits allocated (must be 8)")
        }
        source = .decoded(try streams.enumerated().map { index, stream in
            let frame = try decodeJPEG(stream, index, info.rows * info.columns)
            guard frame.width == info.columns, frame.height == info.rows, frame.channels == info.samplesPerPixel else {
                throw MedSynthError(file: file.path, "JPEG frame \(index) is \(frame.width)x\(frame.height)x\(frame.channels), header says \(info.columns)x\(info.rows)x\(info.samplesPerPixel)")
            }
            return frame
        })
        // libjpeg returns unsigned 8-bit samples (and converts YBR to RGB).
        encoding.storedRange = 0...255
        encoding.storedBits = 8
    }
    let depth = try resolveBitDepth(bitDepth, encoding: encoding, path: file.path)
    // `.fullRange` (and a file without a window) takes the range over all frames, so frames of one
    // file stay comparable; native frames are converted once more for it, one at a time.
    let mapping = try resolveMapping(window, encoding: encoding, bitDepth: depth, path: file.path) { [encoding] in
        var extremes = StoredExtremes()
        switch source {
        case .native(let element):
            for f in 0..<info.numberOfFrames { extremes.add(try file.nativeFrame(element, info: info, index: f)) }
        case .decoded(let frames):
            for frame in frames { extremes.add(frame) }
        }
        return extremes.modalityRange(encoding)
    }
    return DICOMFrames(file: file, info: info, encoding: encoding, source: source, mapping: mapping, bitDepth: depth)
}

/// Reads every frame of a DICOM file as display samples.
/// - Parameters:
///   - window: mapping from modality values to samples (`.fileDefault` uses Window Center/Width).
///   - bitDepth: 8 or 16; nil picks 8 for data stored in at most 8 bits, else 16.
///   - decodeJPEG: decoder for JPEG baseline frames; without one such files throw.
///   - maxPixels, maxImagePixels: limits on decoded pixels per file and per frame (`DecodeLimits`).
public func readDICOMSlices(_ file: DICOMFile, window: MedicalWindow = .fileDefault, bitDepth: Int? = nil,
                            decodeJPEG: JPEGFrameDecoder? = nil, maxPixels: Int = DecodeLimits.maxPixels,
                            maxImagePixels: Int = DecodeLimits.maxImagePixels) throws -> [Image] {
    try readDICOMStoredFrames(file, window: window, bitDepth: bitDepth, decodeJPEG: decodeJPEG,
                              maxPixels: maxPixels, maxImagePixels: maxImagePixels).slices
}

/// `readDICOMSlices`, also returning how the samples relate to stored and modality values
/// (needed to write them on exactly, e.g. `--window stored` into NIfTI).
public func readDICOMStoredFrames(_ file: DICOMFile, window: MedicalWindow = .fileDefault, bitDepth: Int? = nil,
                                  decodeJPEG: JPEGFrameDecoder? = nil, maxPixels: Int = DecodeLimits.maxPixels,
                                  maxImagePixels: Int = DecodeLimits.maxImagePixels) throws -> (slices: [Image], encoding: PixelEncoding) {
    let frames = try openDICOMFrames(file, window: window, bitDepth: bitDepth, decodeJPEG: decodeJPEG,
                                     maxPixels: maxPixels, maxImagePixels: maxImagePixels)
    var slices: [Image] = []
    slices.reserveCapacity(frames.count)
    try frames.forEach { slices.append($0) }
    return (slices, frames.encoding)
}
