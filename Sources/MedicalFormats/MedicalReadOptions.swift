import Core
import Foundation

/// Which plane a NIfTI volume is cut into. Planes are taken after reorienting the volume to RAS+
/// (see `NIfTIVolume`), so "axial" means the same anatomy whatever the file's storage order.
public enum SliceAxis: String, CaseIterable, Sendable {
    case axial, coronal, sagittal

    public init(parsing text: String) throws {
        guard let axis = SliceAxis(rawValue: text.lowercased()) else {
            throw MedSynthError("axis '\(text)': expected axial|coronal|sagittal")
        }
        self = axis
    }
}

/// Which slices of a volume become images.
public enum SliceSelection: Equatable, Sendable {
    /// Every slice along the axis.
    case all
    /// Slice indices along the axis (0 = inferior for axial, posterior for coronal, the patient's
    /// left for sagittal), inclusive.
    case range(ClosedRange<Int>)
    /// Slices in which at least `minFraction` of the pixels are foreground: modality value above
    /// `min + 10% × (max − min)` of the volume (or above `threshold` when given).
    case foreground(minFraction: Double, threshold: Double?)

    /// Parses `all`, `N`, `A-B`, `foreground`, `foreground:F` or `foreground:F@T` (F a fraction, T a
    /// threshold in modality units, e.g. HU).
    public init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if t == "all" { self = .all; return }
        if t.hasPrefix("foreground") {
            var fraction = 0.1, threshold: Double? = nil
            let rest = t.dropFirst("foreground".count)
            if !rest.isEmpty {
                guard rest.first == ":" else { throw Self.syntaxError(text) }
                let parts = rest.dropFirst().split(separator: "@", omittingEmptySubsequences: false)
                guard let f = Double(parts[0]), f >= 0, f <= 1 else { throw Self.syntaxError(text) }
                fraction = f
                if parts.count == 2 {
                    guard let th = Double(parts[1]), th.isFinite else { throw Self.syntaxError(text) }
                    threshold = th
                } else if parts.count > 2 { throw Self.syntaxError(text) }
            }
            self = .foreground(minFraction: fraction, threshold: threshold)
            return
        }
        let bounds = t.split(separator: "-", omittingEmptySubsequences: false)
        if bounds.count == 1, let n = Int(bounds[0]), n >= 0 { self = .range(n...n); return }
        if bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0, a <= b { self = .range(a...b); return }
        throw Self.syntaxError(text)
    }

    static func syntaxError(_ text: String) -> MedSynthError {
        MedSynthError("slices '\(text)': expected all, N, A-B, foreground, foreground:FRACTION or foreground:FRACTION@THRESHOLD")
    }
}

/// Limits on what a file's header can make a reader decode or allocate. Every reader checks the
/// sizes a header declares against these before it inflates, decodes or allocates anything, so a
/// few hundred hostile bytes cannot claim gigabytes.
///
/// - `maxPixels`: decoded pixels per file, all frames, slices and volumes together
///   (rows × columns × frames for DICOM, nx × ny × nz × volumes for NIfTI). Default 2^28 =
///   268,435,456, more than any real scan (a 512 × 512 × 1000 CT is 262 M); environment variable
///   `MEDSYNTH_MAX_PIXELS` or `--max-pixels` overrides it.
/// - `maxImagePixels`: pixels of one 2-D image (PNG, JPEG, a DICOM frame, a NIfTI slice).
///   Default 2^26 = 67,108,864 (8192 × 8192, above full-field mammography); environment variable
///   `MEDSYNTH_MAX_IMAGE_PIXELS` or `--max-image-pixels` overrides it.
/// - `maxImagesPerFile`: frames or slices one file may give (2^20), since each costs a few hundred
///   bytes of bookkeeping even when it is a single pixel.
public enum DecodeLimits {
    public static let defaultMaxPixels = 1 << 28
    public static let defaultMaxImagePixels = 1 << 26
    public static let maxImagesPerFile = 1 << 20

    /// Per-file pixel limit used when a caller passes none. Set once at start-up (the CLI's
    /// `--max-pixels`), before any reading starts.
    nonisolated(unsafe) public static var maxPixels: Int = environmentLimit("MEDSYNTH_MAX_PIXELS") ?? defaultMaxPixels
    /// Per-image pixel limit used when a caller passes none (see `maxPixels`).
    nonisolated(unsafe) public static var maxImagePixels: Int = environmentLimit("MEDSYNTH_MAX_IMAGE_PIXELS") ?? defaultMaxImagePixels

    /// A positive integer from the environment, or nil when unset or not a positive integer.
    static func environmentLimit(_ name: String) -> Int? {
        guard let text = ProcessInfo.processInfo.environment[name], let value = Int(text), value > 0 else { return nil }
        return value
    }

    /// Throws unless `pixels` (an image of `width` × `height`, or a whole file) fits the limits.
    /// `what` names the thing in the message, e.g. "DICOM frame" or "volume".
    public static func check(imageWidth width: Int, height: Int, images: Int = 1, maxImagePixels: Int = DecodeLimits.maxImagePixels,
                             maxPixels: Int = DecodeLimits.maxPixels, what: String, path: String) throws {
        guard let perImage = checkedProduct([width, height]), perImage <= maxImagePixels else {
            throw MedSynthError(file: path, "\(what) of \(width)x\(height) pixels is above the limit of \(maxImagePixels) pixels per image (--max-image-pixels / MEDSYNTH_MAX_IMAGE_PIXELS)")
        }
        guard images <= maxImagesPerFile else {
            throw MedSynthError(file: path, "\(images) images (frames or slices) in one file is above the limit of \(maxImagesPerFile)")
        }
        guard let total = checkedProduct([perImage, images]), total <= maxPixels else {
            throw MedSynthError(file: path, "\(images) image(s) of \(width)x\(height) pixels are above the limit of \(maxPixels) pixels per file (--max-pixels / MEDSYNTH_MAX_PIXELS)")
        }
    }
}

/// Options for reading DICOM and NIfTI files as 2-D images.
public struct MedicalReadOptions: Equatable, Sendable {
    /// Modality values → samples (DICOM and NIfTI).
    public var window: MedicalWindow
    /// 8 or 16; nil: 8 for data stored in at most 8 bits, 16 otherwise.
    public var bitDepth: Int?
    /// NIfTI only: plane to cut.
    public var axis: SliceAxis
    /// NIfTI only: which slices.
    public var slices: SliceSelection
    /// NIfTI only: which volume of a 4-D file (0-based); nil reads every volume in order.
    public var volume: Int?
    /// Cap on decompressed bytes (.nii.gz, deflated DICOM); a file claiming more is refused.
    public var maxDecompressedBytes: Int
    /// Decoded pixels per file and per 2-D image (see `DecodeLimits`).
    public var maxPixels: Int
    public var maxImagePixels: Int

    public init(window: MedicalWindow = .fileDefault, bitDepth: Int? = nil, axis: SliceAxis = .axial,
                slices: SliceSelection = .all, volume: Int? = nil, maxDecompressedBytes: Int = 2 << 30,
                maxPixels: Int = DecodeLimits.maxPixels, maxImagePixels: Int = DecodeLimits.maxImagePixels) {
        self.maxPixels = maxPixels
        self.maxImagePixels = maxImagePixels
        self.window = window
        self.bitDepth = bitDepth
        self.axis = axis
        self.slices = slices
        self.volume = volume
        self.maxDecompressedBytes = maxDecompressedBytes
    }
}
