import Core
import Engine
import Foundation
import Imaging

// MARK: - Lesion patches

/// One lesion: colour planes in the patch's own native units, its binary mask (same size),
/// and where it came from (written to the manifest).
public struct LesionPatch: Sendable {
    public var name: String
    public var planes: [Plane]
    public var mask: BinaryMask
    /// 8 or 16: the unit of `planes` (0...255 or 0...65535).
    public var bitDepth: Int

    public init(name: String, planes: [Plane], mask: BinaryMask, bitDepth: Int) {
        precondition(planesFit(planes, mask), "LesionPatch: planes and mask must share one size")
        self.name = name
        self.planes = planes
        self.mask = mask
        self.bitDepth = bitDepth
    }

    /// The patch with `channels` colour planes in units of `bitDepth` (gray → colour replicates,
    /// colour → gray averages).
    func converted(channels: Int, bitDepth target: Int) -> [Plane] {
        let factor = Float(target == 16 ? 65535 : 255) / Float(bitDepth == 16 ? 65535 : 255)
        var planes = self.planes
        if factor != 1 { planes = planes.map { Plane(width: $0.width, height: $0.height, values: $0.values.map { $0 * factor }) } }
        if planes.count == channels { return planes }
        if planes.count == 1 { return Array(repeating: planes[0], count: channels) }
        var gray = Plane(width: mask.width, height: mask.height)
        for p in planes { for i in gray.values.indices { gray.values[i] += p.values[i] / Float(planes.count) } }
        return Array(repeating: gray, count: channels)
    }
}

/// Where lesions come from. Sources are indexed so a run can pick lesion `i` from a seeded
/// stream and get the same patch on every machine. Folder and procedural sources exist now;
/// a generator-checkpoint source (GAN or diffusion samples cropped to their content) conforms
/// to the same protocol once the generator modules can sample from a checkpoint.
public protocol LesionSource {
    /// Number of distinct lesions.
    var count: Int { get }
    /// Lesion `index` in 0..<count; the same index always gives the same patch.
    func lesion(_ index: Int) throws -> LesionPatch
    /// Short text for the manifest's `lesion_source` field of lesion `index`.
    func sourceLabel(_ index: Int) -> String
}

// MARK: - Folder source

/// Lesion patches from a folder of PNG/JPEG files. Each patch's mask is, in order of preference:
/// `NAME_mask.png` beside `NAME.png` (nonzero = lesion), the patch's alpha channel (≥ half = lesion),
/// or an automatic mask (Otsu threshold, the class that does not dominate the patch border,
/// largest component, holes filled).
public struct FolderLesionSource: LesionSource {
    public let folder: URL
    public let patches: [LesionPatch]
    let files: [String]

    /// Reads every patch in `folder` (not recursive; hidden files and `*_mask.*` are skipped).
    public init(folder: URL) throws {
        self.folder = folder
        let names = try listImageFiles(in: folder).filter { !stem($0).hasSuffix("_mask") }
        if names.isEmpty { throw MedSynthError(file: folder.path, "no lesion patches (PNG or JPEG files) found") }
        var patches: [LesionPatch] = []
        for name in names {
            patches.append(try loadLesionPatch(folder.appendingPathComponent(name)))
        }
        self.patches = patches
        self.files = names
    }

    public var count: Int { patches.count }
    public func lesion(_ index: Int) throws -> LesionPatch { patches[index] }
    public func sourceLabel(_ index: Int) -> String { files[index] }
}

/// Reads one lesion patch and its mask (see `FolderLesionSource`).
public func loadLesionPatch(_ url: URL) throws -> LesionPatch {
    let image = try readImage(at: url)
    let planes = image.colorPlanes()
    let maskURL = url.deletingLastPathComponent().appendingPathComponent(stem(url.lastPathComponent) + "_mask.png")
    var mask: BinaryMask
    if FileManager.default.fileExists(atPath: maskURL.path) {
        let maskImage = try readImage(at: maskURL)
        guard maskImage.width == image.width && maskImage.height == image.height else {
            throw MedSynthError(file: maskURL.path, "mismatched mask size: mask is \(maskImage.width)x\(maskImage.height), "
                                + "patch \(url.lastPathComponent) is \(image.width)x\(image.height)")
        }
        mask = BinaryMask(maskImage.grayPlane(), above: 0)
    } else if image.hasAlpha {
        mask = BinaryMask(image.plane(channel: image.channels - 1), above: Float(image.maxValue) / 2 - 0.5)
    } else {
        mask = automaticLesionMask(image.grayPlane())
    }
    if mask.count == 0 { throw MedSynthError(file: url.path, "lesion mask is empty") }
    return LesionPatch(name: url.lastPathComponent, planes: planes, mask: mask, bitDepth: image.bitDepth)
}

/// Otsu threshold; the lesion is the class that holds fewer of the border pixels
/// (so a dark lesion on bright tissue works as well as a bright one); largest component, holes filled.
public func automaticLesionMask(_ gray: Plane) -> BinaryMask {
    let t = otsuThreshold(gray)
    var bright = BinaryMask(gray, above: t)
    let w = gray.width, h = gray.height
    var borderBright = 0, border = 0
    for y in 0..<h {
        for x in 0..<w where x == 0 || y == 0 || x == w - 1 || y == h - 1 {
            border += 1
            if bright[x, y] { borderBright += 1 }
        }
    }
    if 2 * borderBright > border { bright = bright.inverted }
    return fillHoles(largestComponent(bright))
}

// MARK: - Files

/// PNG/JPEG file names in `folder`, sorted (byte order, so every machine agrees), hidden files skipped.
func listImageFiles(in folder: URL) throws -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw MedSynthError(file: folder.path, "not a folder")
    }
    let names: [String]
    do { names = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
        throw MedSynthError(file: folder.path, "cannot list folder (\(error.localizedDescription))")
    }
    let extensions: Set<String> = ["png", "jpg", "jpeg"]
    return names.filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }
        .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
}

/// File name without its extension.
func stem(_ name: String) -> String { (name as NSString).deletingPathExtension }

/// True when there is at least one plane and every plane has the mask's size.
func planesFit(_ planes: [Plane], _ mask: BinaryMask) -> Bool {
    !planes.isEmpty && planes.allSatisfy { $0.width == mask.width && $0.height == mask.height }
}
