import Core
import Foundation

// MARK: - From stored values to display samples
//
// Both readers produce `ScalarFrame`s of stored values plus a `PixelEncoding` that says how to
// turn them into modality values (rescale slope/intercept: Hounsfield units for CT) and what the
// file's own display window is. A `MedicalWindow` then maps modality values to 8- or 16-bit
// samples with the DICOM linear VOI function (PS3.3 §C.11.2.1.2.1).

/// One frame of stored (file) values before rescale and windowing, row-major HWC.
public struct ScalarFrame: Sendable {
    public var width: Int
    public var height: Int
    /// 1 (grayscale) or 3 (RGB).
    public var channels: Int
    /// Stored values. Float32 holds every integer up to 2^24 exactly, so 8/16-bit data is lossless.
    public var values: [Float]

    public init(width: Int, height: Int, channels: Int, values: [Float]) {
        precondition(values.count == width * height * channels, "ScalarFrame: \(values.count) values for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.values = values
    }
}

/// How stored values become modality values, and the file's own display hints.
public struct PixelEncoding: Sendable, Equatable {
    /// Modality value = stored * slope + intercept (DICOM Rescale Slope/Intercept, NIfTI scl_slope/scl_inter).
    public var slope: Double = 1
    public var intercept: Double = 0
    /// The storage type's range for integer data of at most 16 bits (e.g. 0...4095, -32768...32767);
    /// nil for float or 32-bit data. Used by `MedicalWindow.stored`.
    public var storedRange: ClosedRange<Int>?
    /// Bits per stored sample (8, 12, 16, 32, 64): picks the default output depth.
    public var storedBits: Int
    /// MONOCHROME1: low values are white, so the display is inverted after windowing.
    public var invert = false
    /// The file's display window as (center, width): DICOM Window Center/Width, or NIfTI
    /// cal_min/cal_max turned into a window.
    public var fileWindow: (center: Double, width: Double)?

    public init(slope: Double = 1, intercept: Double = 0, storedRange: ClosedRange<Int>?, storedBits: Int,
                invert: Bool = false, fileWindow: (center: Double, width: Double)? = nil) {
        self.slope = slope
        self.intercept = intercept
        self.storedRange = storedRange
        self.storedBits = storedBits
        self.invert = invert
        self.fileWindow = fileWindow
    }

    /// Modality values (and window edges) are kept within ±1e300 so that differences and ratios in
    /// the display mapping stay finite.
    public static let largestModalityValue = 1e300

    public static func == (a: PixelEncoding, b: PixelEncoding) -> Bool {
        a.slope == b.slope && a.intercept == b.intercept && a.storedRange == b.storedRange && a.storedBits == b.storedBits
            && a.invert == b.invert && a.fileWindow?.center == b.fileWindow?.center && a.fileWindow?.width == b.fileWindow?.width
    }
}

/// Standard CT display windows (center, width in Hounsfield units), as tabulated by Radiopaedia
/// ("Windowing (CT)") and common PACS defaults.
public enum WindowPreset: String, CaseIterable, Sendable {
    case lung
    case mediastinum
    case bone
    case brain
    case softTissue = "soft-tissue"

    public var center: Double {
        switch self {
        case .lung: return -600
        case .mediastinum: return 50
        case .bone: return 400
        case .brain: return 40
        case .softTissue: return 50
        }
    }

    public var width: Double {
        switch self {
        case .lung: return 1500
        case .mediastinum: return 350
        case .bone: return 1800
        case .brain: return 80
        case .softTissue: return 400
        }
    }
}

/// How modality values are mapped to output samples.
public enum MedicalWindow: Equatable, Sendable {
    /// The file's window (DICOM Window Center/Width, first value; NIfTI cal_min/cal_max), else `.fullRange`.
    case fileDefault
    /// A named CT preset.
    case preset(WindowPreset)
    /// Explicit center and width in modality units (width >= 1, as DICOM requires).
    case explicit(center: Double, width: Double)
    /// The data's own minimum and maximum (over the whole file or volume) map to 0 and the maximum sample.
    case fullRange
    /// No windowing: stored integers are kept exactly, shifted so the storage type's minimum is 0
    /// (signed 16-bit: +32768). Rescale is not applied. Needs integer data of at most 16 bits.
    case stored

    /// Parses a command-line window: `file`, `full`, `stored`, a preset name, or `C,W`.
    public init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        switch t {
        case "file", "default": self = .fileDefault; return
        case "full", "minmax", "full-range": self = .fullRange; return
        case "stored", "none", "raw": self = .stored; return
        default: break
        }
        if let preset = WindowPreset(rawValue: t) { self = .preset(preset); return }
        let parts = t.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2, let c = Double(parts[0]), let w = Double(parts[1]), c.isFinite, w.isFinite {
            guard w >= 1 else { throw MedSynthError("window '\(text)': width must be at least 1") }
            self = .explicit(center: c, width: w)
            return
        }
        let names = WindowPreset.allCases.map(\.rawValue).joined(separator: "|")
        throw MedSynthError("window '\(text)': expected file|full|stored|\(names) or CENTER,WIDTH")
    }
}

// MARK: - Display mapping

/// A resolved mapping from stored values to output samples.
enum DisplayMapping {
    /// DICOM linear VOI: modality values at or below `lower` give 0, above `upper` give the maximum.
    case linear(lower: Double, upper: Double)
    /// Stored integers shifted by `-minimum`.
    case stored(minimum: Int, maximum: Int)
}

/// Lower and upper edges of a DICOM linear window (PS3.3 §C.11.2.1.2.1):
/// x <= c - 0.5 - (w-1)/2 → minimum; x > c - 0.5 + (w-1)/2 → maximum; linear in between.
func windowEdges(center c: Double, width w: Double) -> (lower: Double, upper: Double) {
    (c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2)
}

/// Output bit depth: the caller's choice, else 8 for data stored in at most 8 bits and 16 otherwise.
func resolveBitDepth(_ requested: Int?, encoding: PixelEncoding, path: String) throws -> Int {
    if let requested {
        guard requested == 8 || requested == 16 else {
            throw MedSynthError(file: path, "output bit depth must be 8 or 16, got \(requested)")
        }
        return requested
    }
    return encoding.storedBits <= 8 ? 8 : 16
}

/// Picks the mapping for `window`; `dataRange` (modality values) is needed only for `.fullRange`
/// and the fallback when the file has no window, and is computed lazily.
func resolveMapping(_ window: MedicalWindow, encoding: PixelEncoding, bitDepth: Int, path: String,
                    dataRange: () throws -> ClosedRange<Double>?) throws -> DisplayMapping {
    func fullRange() throws -> DisplayMapping {
        guard let range = try dataRange() else { return .linear(lower: 0, upper: 1) }
        // Edges at min and max, so min → 0 and max → maximum exactly.
        return .linear(lower: range.lowerBound, upper: range.upperBound)
    }
    switch window {
    case .fileDefault:
        if let w = encoding.fileWindow, w.width >= 1, abs(w.center) <= PixelEncoding.largestModalityValue,
           w.width <= PixelEncoding.largestModalityValue {
            let e = windowEdges(center: w.center, width: w.width)
            return .linear(lower: e.lower, upper: e.upper)
        }
        return try fullRange()
    case .preset(let preset):
        let e = windowEdges(center: preset.center, width: preset.width)
        return .linear(lower: e.lower, upper: e.upper)
    case .explicit(let center, let width):
        guard width >= 1, abs(center) <= PixelEncoding.largestModalityValue, width <= PixelEncoding.largestModalityValue else {
            throw MedSynthError(file: path, "window width must be at least 1, got \(width)")
        }
        let e = windowEdges(center: center, width: width)
        return .linear(lower: e.lower, upper: e.upper)
    case .fullRange:
        return try fullRange()
    case .stored:
        guard let range = encoding.storedRange else {
            throw MedSynthError(file: path, "window 'stored' needs integer data of at most 16 bits; use a window or 'full'")
        }
        let span = range.upperBound - range.lowerBound
        guard span <= (1 << bitDepth) - 1 else {
            throw MedSynthError(file: path, "window 'stored' needs \(bitDepth == 8 ? "16-bit" : "wider") output: stored values span \(span + 1) levels")
        }
        return .stored(minimum: range.lowerBound, maximum: range.upperBound)
    }
}

/// Applies a mapping to one frame. Grayscale frames are windowed; RGB frames are not windowed
/// (DICOM applies VOI to grayscale only) and only change depth: 8→16 by ×257, 16→8 by rounding.
func renderFrame(_ frame: ScalarFrame, encoding: PixelEncoding, mapping: DisplayMapping, bitDepth: Int) -> Image {
    let maxOut = bitDepth == 16 ? 65535.0 : 255.0
    var samples = [UInt16](repeating: 0, count: frame.values.count)
    frame.values.withUnsafeBufferPointer { src in
        samples.withUnsafeMutableBufferPointer { dst in
            if frame.channels == 3 {
                let maxIn = encoding.storedBits <= 8 ? 255.0 : 65535.0
                for i in 0..<src.count {
                    let v = Double(src[i]).isNaN ? 0 : min(max(Double(src[i]), 0), maxIn)
                    dst[i] = UInt16((v * maxOut / maxIn).rounded())
                }
                return
            }
            switch mapping {
            case .linear(let lower, let upper):
                let slope = encoding.slope, intercept = encoding.intercept, span = upper - lower
                for i in 0..<src.count {
                    let x = Double(src[i]) * slope + intercept
                    var y: Double
                    if x.isNaN || x <= lower { y = 0 }
                    else if x > upper || span <= 0 { y = maxOut }
                    else { y = ((x - lower) / span * maxOut).rounded() }
                    if encoding.invert { y = maxOut - y }
                    // Never trap on a value the checks above should have excluded.
                    dst[i] = y.isNaN ? 0 : UInt16(min(max(y, 0), maxOut))
                }
            case .stored(let minimum, let maximum):
                let top = Float(maximum - minimum), offset = Float(minimum)
                for i in 0..<src.count {
                    // Stored values are integers within the range, so this is exact.
                    let v = min(max(src[i] - offset, 0), top)
                    dst[i] = UInt16(encoding.invert ? top - v : v)
                }
            }
        }
    }
    return Image(width: frame.width, height: frame.height, channels: frame.channels, bitDepth: bitDepth, samples: samples)
}

/// Modality-value range of grayscale frames (NaNs ignored); nil when there is no finite value.
func modalityRange(_ frames: [ScalarFrame], encoding: PixelEncoding) -> ClosedRange<Double>? {
    var extremes = StoredExtremes()
    for frame in frames { extremes.add(frame) }
    return extremes.modalityRange(encoding)
}

/// Smallest and largest finite stored value seen, frame by frame.
struct StoredExtremes {
    var lo = Float.infinity, hi = -Float.infinity

    mutating func add(_ frame: ScalarFrame) {
        var lo = self.lo, hi = self.hi
        frame.values.withUnsafeBufferPointer { v in
            for x in v where x.isFinite {
                lo = min(lo, x)
                hi = max(hi, x)
            }
        }
        self.lo = lo
        self.hi = hi
    }

    /// The range in modality values; nil when there is no finite value.
    func modalityRange(_ encoding: PixelEncoding) -> ClosedRange<Double>? {
        guard lo <= hi else { return nil }
        let a = Double(lo) * encoding.slope + encoding.intercept, b = Double(hi) * encoding.slope + encoding.intercept
        return min(a, b)...max(a, b)
    }
}

/// Windows a list of frames that share one encoding (a DICOM file's frames). `.fullRange` uses the
/// range over all frames, so frames of one file stay comparable.
public func renderFrames(_ frames: [ScalarFrame], encoding: PixelEncoding, window: MedicalWindow,
                         bitDepth: Int?, path: String) throws -> [Image] {
    let depth = try resolveBitDepth(bitDepth, encoding: encoding, path: path)
    let mapping = try resolveMapping(window, encoding: encoding, bitDepth: depth, path: path) {
        modalityRange(frames, encoding: encoding)
    }
    return frames.map { renderFrame($0, encoding: encoding, mapping: mapping, bitDepth: depth) }
}
