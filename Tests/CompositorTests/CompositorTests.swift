import Compositor
import Engine
import Foundation
import Imaging
import XCTest
import TestSupport
import Core

// MARK: - Test data

/// A smooth, textured w×h plane in 8-bit-like units, reproducible from `seed`.
private func texturedPlane(width: Int, height: Int, seed: UInt64, base: Float = 100) -> Plane {
    var random = RandomStream(seed: seed)
    var plane = Plane(width: width, height: height)
    for y in 0..<height {
        for x in 0..<width {
            plane[x, y] = base + 2 * Float(x) + Float(y) + 15 * sin(Float(x) / 3) * cos(Float(y) / 4) + 4 * random.normal()
        }
    }
    return plane
}

/// A lobed blob mask in a w×h patch.
private func blobMask(width: Int, height: Int) -> BinaryMask {
    var mask = BinaryMask(width: width, height: height)
    let cx = Float(width - 1) / 2, cy = Float(height - 1) / 2, r = Float(min(width, height)) * 0.36
    for y in 0..<height {
        for x in 0..<width {
            let dx = Float(x) - cx, dy = Float(y) - cy
            if (dx * dx + dy * dy).squareRoot() <= r * (1 + 0.2 * cos(3 * atan2(dy, dx))) { mask[x, y] = true }
        }
    }
    return mask
}

private func crop(_ plane: Plane, x: Int, y: Int, width: Int, height: Int) -> Plane {
    var out = Plane(width: width, height: height)
    for j in 0..<height { for i in 0..<width { out[i, j] = plane[x + i, y + j] } }
    return out
}

/// 4 v_p − Σ v_q over the 5-point stencil.
private func laplacian(_ v: (Int, Int) -> Float, _ x: Int, _ y: Int) -> Float {
    4 * v(x, y) - v(x - 1, y) - v(x + 1, y) - v(x, y - 1) - v(x, y + 1)
}

final class CompositorTests: XCTestCase {
    let background = texturedPlane(width: 40, height: 36, seed: 1)
    let origin = (x: 11, y: 9)
    let mask = blobMask(width: 16, height: 14)

    // MARK: - Poisson properties

    func testPoissonWithPatchEqualToBackgroundLeavesItUnchanged() {
        let patch = crop(background, x: origin.x, y: origin.y, width: mask.width, height: mask.height)
        var target = [background]
        let outcome = poissonBlend(PlacedPatch(planes: [patch], mask: mask, x: origin.x, y: origin.y), into: &target, mixed: false)
        XCTAssertEqual(outcome.pixels.count, mask.count)
        let worst = zip(target[0].values, background.values).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 0.01, "blending a patch equal to the background changed it by \(worst)")
    }

    func testPoissonConstantOffsetPatchGivesBackgroundInsideMask() {
        var patch = crop(background, x: origin.x, y: origin.y, width: mask.width, height: mask.height)
        patch.values = patch.values.map { $0 + 40 }
        for mixed in [false, true] {
            var target = [background]
            let outcome = poissonBlend(PlacedPatch(planes: [patch], mask: mask, x: origin.x, y: origin.y), into: &target, mixed: mixed)
            let worst = outcome.pixels.map { abs(target[0].values[$0] - background.values[$0]) }.max()!
            XCTAssertLessThan(worst, 0.01, "offset patch (mixed: \(mixed)) moved the inside by \(worst)")
        }
    }

    func testPoissonBoundaryPixelsEqualBackground() {
        let patch = texturedPlane(width: mask.width, height: mask.height, seed: 7, base: 180)
        var target = [background]
        let outcome = poissonBlend(PlacedPatch(planes: [patch], mask: mask, x: origin.x, y: origin.y), into: &target, mixed: false)
        let inside = Set(outcome.pixels)
        let w = background.width
        var boundary = 0
        for p in background.values.indices where !inside.contains(p) {
            XCTAssertEqual(target[0].values[p], background.values[p], "pixel \(p % w),\(p / w) outside the mask changed")
            if [p - 1, p + 1, p - w, p + w].contains(where: inside.contains) { boundary += 1 }
        }
        XCTAssertGreaterThan(boundary, 20, "the mask should have a boundary ring")
        // And the inside did change (the patch is much brighter).
        XCTAssertGreaterThan(outcome.pixels.map { abs(target[0].values[$0] - background.values[$0]) }.max()!, 5)
    }

    func testPoissonLaplacianInsideMaskMatchesSource() {
        let patch = texturedPlane(width: mask.width, height: mask.height, seed: 9, base: 30)
        var target = [background]
        let outcome = poissonBlend(PlacedPatch(planes: [patch], mask: mask, x: origin.x, y: origin.y), into: &target, mixed: false)
        let w = background.width
        let result = target[0]
        var worst: Float = 0
        for p in outcome.pixels {
            let x = p % w, y = p / w
            let lf = laplacian({ result[$0, $1] }, x, y)
            let lg = laplacian({ patch[$0 - self.origin.x, $1 - self.origin.y] }, x, y)
            worst = max(worst, abs(lf - lg))
        }
        XCTAssertLessThan(worst, 0.05, "Laplacian of the result differs from the source's by \(worst)")
    }

    func testPoissonMatchesExactSparseSolve() throws {
        struct Golden: Decodable {
            let width, height, patch_width, patch_height, x, y: Int
            let background, patch, poisson, mixed: [Float]
            let mask: [UInt8]
        }
        let url = try XCTUnwrap(Bundle.module.url(forResource: "poisson_golden", withExtension: "json", subdirectory: "Fixtures"))
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        let background = Plane(width: golden.width, height: golden.height, values: golden.background)
        let patch = PlacedPatch(planes: [Plane(width: golden.patch_width, height: golden.patch_height, values: golden.patch)],
                                mask: BinaryMask(width: golden.patch_width, height: golden.patch_height, bits: golden.mask),
                                x: golden.x, y: golden.y)
        for (mixed, expected) in [(false, golden.poisson), (true, golden.mixed)] {
            var target = [background]
            let outcome = poissonBlend(patch, into: &target, mixed: mixed)
            XCTAssertEqual(outcome.pixels.count, golden.mask.filter { $0 != 0 }.count)
            let worst = zip(target[0].values, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 0.5, "mixed: \(mixed): \(worst) gray levels from SciPy's spsolve")
            XCTAssertLessThan(worst, 0.02, "mixed: \(mixed): tolerance 0.01 should hold (got \(worst))")
        }
    }

    // MARK: - Alpha

    func testAlphaModeChangesExactlyTheRecordedMask() throws {
        // A dark 16-bit scan and mid-gray procedural lesions, no matching: every masked pixel moves a lot.
        var scan = Image(width: 48, height: 48, channels: 1, bitDepth: 16)
        for i in scan.samples.indices { scan.samples[i] = UInt16(1000 + (i * 37) % 200) }
        var options = CompositeOptions(backgrounds: URL(fileURLWithPath: "/unused"), out: URL(fileURLWithPath: "/unused"))
        options.perImage = 3
        options.match = .none
        options.blend = BlendSettings(mode: .alpha, feather: 2)
        options.seed = 11
        let source = ProceduralLesionSource(seed: 3, count: 5, settings: ProceduralLesionSettings(size: 14, polarity: .hyper, bitDepth: 16))
        let result = try compositeImage(background: scan, name: "scan.png", index: 0,
                                        region: BinaryMask(width: 48, height: 48, filled: true), lesions: source, options: options)
        XCTAssertEqual(result.records.count, 3)
        var changedCount = 0
        for p in scan.samples.indices {
            let changed = result.image.samples[p] != scan.samples[p]
            XCTAssertEqual(changed, result.labels.samples[p] != 0, "pixel \(p % 48),\(p / 48): changed \(changed), label \(result.labels.samples[p])")
            if changed { changedCount += 1 }
        }
        XCTAssertEqual(changedCount, result.records.map(\.area).reduce(0, +))
        for record in result.records {
            XCTAssertEqual(result.labels.samples.filter { Int($0) == record.instance }.count, record.area)
        }
    }

    // MARK: - Runs

    /// A folder with two 16-bit scans (a bright disc on black) and a folder of 8-bit procedural lesions.
    private func makeInputs(in folder: URL) throws -> (scans: URL, lesions: URL) {
        let scans = folder.appendingPathComponent("scans")
        try FileManager.default.createDirectory(at: scans, withIntermediateDirectories: true)
        for k in 0..<3 {
            var scan = Image(width: 56, height: 52, channels: 1, bitDepth: 16)
            var random = RandomStream(seed: 100 + UInt64(k))
            for y in 0..<52 {
                for x in 0..<56 {
                    let r = hypot(Float(x) - 27.5, Float(y) - 25.5)
                    let tissue: Float = r < 23 ? 30000 + 80 * Float(x) + 500 * random.normal() : 0
                    scan[x, y, 0] = UInt16(max(0, min(65535, tissue.rounded())))
                }
            }
            try writePNG(scan, to: scans.appendingPathComponent("scan\(k).png"))
        }
        let lesions = folder.appendingPathComponent("lesions")
        try writeProceduralLesions(to: lesions, count: 4, seed: 5,
                                   settings: ProceduralLesionSettings(size: 16, polarity: .mixed, bitDepth: 8))
        return (scans, lesions)
    }

    func test16BitInputStays16Bit() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (scans, lesionFolder) = try makeInputs(in: folder)
        var options = CompositeOptions(backgrounds: scans, out: folder.appendingPathComponent("out"))
        options.perImage = 2
        options.contrast = 0.3
        let summary = try runComposite(options, lesions: FolderLesionSource(folder: lesionFolder))
        XCTAssertEqual(summary.written, 3)
        XCTAssertEqual(summary.lesions, 6)
        for k in 0..<3 {
            let image = try readImage(at: options.out.appendingPathComponent("images/scan\(k).png"))
            let input = try readImage(at: scans.appendingPathComponent("scan\(k).png"))
            XCTAssertEqual(image.bitDepth, 16)
            XCTAssertEqual(image.channels, 1)
            let labels = try readImage(at: options.out.appendingPathComponent("masks/scan\(k).png"))
            XCTAssertEqual(Set(labels.samples), [0, 1, 2])
            // Changed pixels carry 16-bit precision (not a multiple of 257, as an 8-bit detour would give).
            let changed = image.samples.indices.filter { image.samples[$0] != input.samples[$0] }
            XCTAssertFalse(changed.isEmpty)
            XCTAssertTrue(changed.contains { image.samples[$0] % 257 != 0 })
        }
    }

    func testSameSeedSameOutput() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (scans, lesionFolder) = try makeInputs(in: folder)
        let source = try FolderLesionSource(folder: lesionFolder)
        func run(_ name: String, seed: UInt64, shard: Shard = Shard()) throws -> URL {
            var options = CompositeOptions(backgrounds: scans, out: folder.appendingPathComponent(name))
            options.perImage = 2
            options.seed = seed
            options.shard = shard
            options.blend = BlendSettings(mode: .mixed)
            _ = try runComposite(options, lesions: source)
            return options.out
        }
        func bytes(_ url: URL, _ path: String) throws -> Data { try Data(contentsOf: url.appendingPathComponent(path)) }
        let first = try run("a", seed: 42), second = try run("b", seed: 42), other = try run("c", seed: 43)
        let files = (0..<3).flatMap { ["images/scan\($0).png", "masks/scan\($0).png"] } + ["manifest.jsonl"]
        for file in files { XCTAssertEqual(try bytes(first, file), try bytes(second, file), file) }
        XCTAssertNotEqual(try bytes(first, "images/scan0.png"), try bytes(other, "images/scan0.png"))
        // Two shards write the same image files as the single run (scan i depends only on seed and i).
        let shard0 = try run("s", seed: 42, shard: Shard(index: 0, count: 2))
        _ = try run("s", seed: 42, shard: Shard(index: 1, count: 2))
        for file in files.dropLast() { XCTAssertEqual(try bytes(first, file), try bytes(shard0, file), file) }
        let shardLines = try ["manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl"]
            .flatMap { String(decoding: try bytes(shard0, $0), as: UTF8.self).split(separator: "\n") }
        let fullLines = String(decoding: try bytes(first, "manifest.jsonl"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(shardLines.sorted(), fullLines.sorted())
    }

    // MARK: - Crowded scans and foreign manifests (issue 16)

    /// scan1's allowed region is an 18x18 square: room for one (≈5 px) lesion, and with a 20 px
    /// spacing none for a second; the full 56x52 regions of scans 0 and 2 hold both. The run skips it, finishes the others and lists it at the end and in the manifest.
    func testAScanWithoutRoomIsSkippedAndListedInsteadOfAbortingTheRun() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (scans, lesionFolder) = try makeInputs(in: folder)
        let regions = folder.appendingPathComponent("regions")
        try FileManager.default.createDirectory(at: regions, withIntermediateDirectories: true)
        for k in 0..<3 {
            var mask = Image(width: 56, height: 52, channels: 1, bitDepth: 8)
            for y in 0..<52 { for x in 0..<56 where k != 1 || (x >= 18 && x < 36 && y >= 16 && y < 34) { mask[x, y, 0] = 255 } }
            try writePNG(mask, to: regions.appendingPathComponent("scan\(k).png"))
        }
        var options = CompositeOptions(backgrounds: scans, out: folder.appendingPathComponent("out"))
        options.perImage = 2
        options.spacing = 20
        options.jitter = .none
        options.regionMasks = regions
        options.seed = 3
        let source = try FolderLesionSource(folder: lesionFolder)
        // Outputs of an earlier run (another seed) under scan1's names must not survive as if made by this one.
        var earlier = options
        earlier.regionMasks = nil
        earlier.seed = 99
        _ = try runComposite(earlier, lesions: source)
        XCTAssertTrue(FileManager.default.fileExists(atPath: options.out.appendingPathComponent("manifest.d/scan1.jsonl").path))
        let summary = try runComposite(options, lesions: source)
        XCTAssertEqual(summary.noRoom.map(\.url.lastPathComponent), ["scan1.png"])
        guard summary.noRoom.count == 1 else { return }
        XCTAssertTrue(summary.noRoom[0].reason.hasPrefix("no room left in the allowed region for lesion 2 of 2"), summary.noRoom[0].reason)
        XCTAssertEqual(summary.written, 2)
        XCTAssertEqual(summary.lesions, 4)
        let fm = FileManager.default
        XCTAssertFalse(fm.fileExists(atPath: options.out.appendingPathComponent("images/scan1.png").path))
        XCTAssertFalse(fm.fileExists(atPath: options.out.appendingPathComponent("masks/scan1.png").path))
        XCTAssertFalse(fm.fileExists(atPath: options.out.appendingPathComponent("manifest.d/scan1.jsonl").path))
        let lines = try String(contentsOf: summary.manifest, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.map { $0["index"] as! Int }, [0, 0, 1, 2, 2], "manifest in scan order, the skipped scan in its place")
        XCTAssertEqual(lines[2]["background"] as? String, "scan1.png")
        XCTAssertEqual(lines[2]["seed"] as? Int, 3)
        XCTAssertTrue((lines[2]["skipped"] as? String)?.hasPrefix("no room left") == true)
        XCTAssertNil(lines[2]["image"])
        // The lesions of the other scans are the ones an undisturbed run places (scan i depends only on seed and i).
        var only0 = options
        only0.out = folder.appendingPathComponent("single")
        only0.shard = Shard(index: 0, count: 3)
        _ = try runComposite(only0, lesions: source)
        XCTAssertEqual(try Data(contentsOf: options.out.appendingPathComponent("images/scan0.png")),
                       try Data(contentsOf: only0.out.appendingPathComponent("images/scan0.png")))
        // A resumed run keeps the finished scans and reports the crowded one again.
        options.resume = true
        let again = try runComposite(options, lesions: source)
        XCTAssertEqual([again.written, again.skipped, again.noRoom.count], [0, 2, 1])
        XCTAssertEqual(try Data(contentsOf: again.manifest), try Data(contentsOf: summary.manifest))
        // A damaged output, or a resume under another seed, makes those scans again.
        let firstManifest = try Data(contentsOf: summary.manifest)
        let scan2 = try Data(contentsOf: options.out.appendingPathComponent("images/scan2.png"))
        try Data().write(to: options.out.appendingPathComponent("images/scan2.png"))
        let repaired = try runComposite(options, lesions: source)
        XCTAssertEqual([repaired.written, repaired.skipped], [1, 1])
        XCTAssertEqual(try Data(contentsOf: options.out.appendingPathComponent("images/scan2.png")), scan2)
        XCTAssertEqual(try Data(contentsOf: repaired.manifest), firstManifest)
        options.seed = 4
        let reseeded = try runComposite(options, lesions: source)
        XCTAssertEqual(reseeded.skipped, 0, "parts of seed 3 are not kept for seed 4")
        XCTAssertEqual(reseeded.written + reseeded.noRoom.count, 3)
        options.seed = 3
        // compositeImage on its own still throws for such a scan.
        let scan1 = try readImage(at: scans.appendingPathComponent("scan1.png"))
        let region = try regionFromMask(readImage(at: regions.appendingPathComponent("scan1.png")), path: "r", width: 56, height: 52)
        XCTAssertThrowsError(try compositeImage(background: scan1, name: "scan1.png", index: 1, region: region, lesions: source, options: options))
    }

    func testCompositeRefusesToOverwriteAForeignManifestAndCleansItsStaleTemporaries() throws {
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (scans, lesionFolder) = try makeInputs(in: folder)
        let out = folder.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out.appendingPathComponent("images"), withIntermediateDirectories: true)
        let foreign = Data("{\"study\": \"ours, not medsynth's\"}\n".utf8)
        try foreign.write(to: out.appendingPathComponent("manifest.jsonl"))
        // Left by a killed run: pid 999999999 does not exist (the kernel's pid limit is lower).
        let stale = out.appendingPathComponent("images/.scan0.png.tmp-999999999-42")
        try Data("partial".utf8).write(to: stale)
        var options = CompositeOptions(backgrounds: scans, out: out)
        let source = try FolderLesionSource(folder: lesionFolder)
        XCTAssertThrowsError(try runComposite(options, lesions: source)) {
            XCTAssertTrue("\($0)".contains("manifest.jsonl: exists and is not a manifest of `medsynth composite`"), "\($0)")
        }
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("manifest.jsonl")), foreign, "left untouched")
        try FileManager.default.removeItem(at: out.appendingPathComponent("manifest.jsonl"))
        let summary = try runComposite(options, lesions: source)
        XCTAssertEqual(summary.removedTemporaries, [stale])
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path))
        // Its own manifest is replaced without complaint.
        options.seed = 1
        XCTAssertEqual(try runComposite(options, lesions: source).written, 3)
    }
}
