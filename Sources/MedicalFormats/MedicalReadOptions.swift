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

    public init(window: MedicalWindow = .fileDefault, bitDepth: Int? = nil, axis: SliceAxis = .axial,
                slices: SliceSelection = .all, volume: Int? = nil, maxDecompressedBytes: Int = 2 << 30) {
        self.window = window
        self.bitDepth = bitDepth
        self.axis = axis
        self.slices = slices
        self.volume = volume
        self.maxDecompressedBytes = maxDecompressedBytes
    }
}
