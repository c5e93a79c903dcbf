import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Evaluation
@testable import Workflows
import TestSupport
import Core

/// A folder `root/<class>/<name>.png` of constant 8×8 gray images, one per value.
func writeConstantImages(_ root: URL, _ className: String, values: [UInt16], size: Int = 8) throws {
    let folder = root.appendingPathComponent(className)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    for v in values {
        try writePNG(Image(width: size, height: size, channels: 1, bitDepth: 8, samples: [UInt16](repeating: v, count: size * size)),
                     to: folder.appendingPathComponent(String(format: "v%03d.png", v)))
    }
}

final class OversamplingTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// Rare class values 10, 20, 60, 200: each one's nearest neighbour in pixel space is obvious
    /// (10↔20, 60→20, 200→60), so every k = 1 interpolant can be checked by hand.
    func makeData() throws -> URL {
        let data = root.appendingPathComponent("data")
        try writeConstantImages(data, "common", values: Array(stride(from: 100, to: 112, by: 1)))
        try writeConstantImages(data, "rare", values: [10, 20, 60, 200])
        return data
    }

    func testSMOTEInterpolatesBetweenNearestSameClassNeighboursReproducibly() throws {
        let data = try makeData()
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("smote"), method: .smote(neighbours: 1))
        request.seed = 8
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.add), [0, 8])
        XCTAssertEqual(plan[1].method, "smote (k = 1, pixel space)")
        let lines = try jsonLines(request.out.appendingPathComponent("manifest.jsonl"))
        let synthetic = lines.filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 8)
        let nearest = ["rare/v010.png": "rare/v020.png", "rare/v020.png": "rare/v010.png", "rare/v060.png": "rare/v020.png", "rare/v200.png": "rare/v060.png"]
        var lambdas: [Double] = [], parentsSeen = Set<String>()
        for (j, line) in synthetic.enumerated() {
            XCTAssertEqual(line["origin"] as? String, "smote")
            XCTAssertEqual(line["sample_index"] as? Int, j)
            let parents = try XCTUnwrap(line["parents"] as? [String]), lambda = try XCTUnwrap(line["lambda"] as? Double)
            XCTAssertEqual(parents.count, 2)
            XCTAssertEqual(nearest[parents[0]], parents[1], "k = 1: the neighbour is the nearest same-class image: \(line)")
            XCTAssert(lambda >= 0 && lambda < 1)
            let a = Double(parents[0].dropFirst(6).dropLast(4))!, b = Double(parents[1].dropFirst(6).dropLast(4))!
            let image = try readImage(at: request.out.appendingPathComponent(line["file"] as! String))
            XCTAssertEqual(image.width, 8)
            XCTAssertEqual(Set(image.samples), [UInt16((a + lambda * (b - a)).rounded())], "x = a + λ(b − a): \(line)")
            lambdas.append(lambda); parentsSeen.insert(parents[0])
        }
        XCTAssertGreaterThan(Set(lambdas).count, 4, "λ is drawn per sample")
        XCTAssertGreaterThan(parentsSeen.count, 1, "parents are drawn per sample")

        // Same seed, same bytes; the samples depend on the seed.
        var again = request; again.out = root.appendingPathComponent("again")
        try runBalance(again, progress: .none)
        XCTAssertEqual(try folderContents(again.out), try folderContents(request.out))
        var other = request; other.out = root.appendingPathComponent("other"); other.seed = 9
        try runBalance(other, progress: .none)
        XCTAssertNotEqual(try folderContents(other.out), try folderContents(request.out))

        // With k = 3 every other image of the class can be a neighbour.
        var wide = request; wide.out = root.appendingPathComponent("wide"); wide.method = .smote(neighbours: 3); wide.target = .count(60)
        try runBalance(wide, progress: .none)
        let pairs = try jsonLines(wide.out.appendingPathComponent("manifest.jsonl")).compactMap { $0["parents"] as? [String] }
        XCTAssertEqual(Set(pairs.filter { $0[0] == "rare/v200.png" }.map { $0[1] }).count, 3)
    }

    func testRandomOversamplingCopiesRealImagesOfTheClass() throws {
        let data = try makeData()
        let request = BalanceRequest(data: data, out: root.appendingPathComponent("over"), method: .oversample)
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan[1].method, "oversample (random copies)")
        let synthetic = try jsonLines(request.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 8)
        var parents = Set<String>()
        for line in synthetic {
            XCTAssertEqual(line["origin"] as? String, "oversample")
            let parent = try XCTUnwrap((line["parents"] as? [String])?.first)
            XCTAssert(parent.hasPrefix("rare/"))
            XCTAssertEqual(try readImage(at: request.out.appendingPathComponent(line["file"] as! String)).samples,
                           try readImage(at: data.appendingPathComponent(parent)).samples)
            parents.insert(parent)
        }
        XCTAssertGreaterThan(parents.count, 1)
    }

    func testSMOTERefusesOneImageClassesAndMixedSizes() throws {
        let data = root.appendingPathComponent("data")
        try writeConstantImages(data, "common", values: [1, 2, 3, 4])
        try writeConstantImages(data, "rare", values: [50])
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("b"), method: .smote(neighbours: 5))
        assertThrows(try planBalance(request), containing: "interpolates between two real images of the class and it has 1")
        try writeConstantImages(data, "rare", values: [70], size: 12)
        assertThrows(try runBalance(request, progress: .none), containing: "needs one size per class")
        XCTAssertFalse(FileManager.default.fileExists(atPath: request.out.path))
        request.method = .oversample
        try runBalance(request, progress: .none)    // copies need no common size
    }

    func noiseImage(_ size: Int, seed: UInt64, channels: Int = 1, bitDepth: Int = 8) -> Image {
        var s = RandomStream(seed: seed)
        let top = bitDepth == 16 ? 65536 : 256
        return Image(width: size, height: size, channels: channels, bitDepth: bitDepth,
                     samples: (0..<size * size * channels).map { _ in UInt16(s.int(below: top)) })
    }

    /// On a 9×9 image (centre (4, 4), a pixel) whole-pixel transforms can be written out by hand:
    /// the identity, a shift, a quarter turn and a ×2 stretch of x must land exactly on input pixels.
    func testAffineTransformsMapPixelsAsWrittenOut() {
        for (channels, depth) in [(1, 8), (3, 16)] {
            let image = noiseImage(9, seed: 3, channels: channels, bitDepth: depth)
            func at(_ x: Int, _ y: Int, _ ch: Int) -> UInt16 { image.samples[(min(max(y, 0), 8) * 9 + min(max(x, 0), 8)) * channels + ch] }
            func check(_ t: AffineAugmentation, _ expected: (Int, Int, Int) -> UInt16, _ what: String) {
                let out = affineTransformed(image, t)
                XCTAssertEqual(out.bitDepth, depth); XCTAssertEqual(out.channels, channels)
                for y in 0..<9 { for x in 0..<9 { for ch in 0..<channels {
                    XCTAssertEqual(out.samples[(y * 9 + x) * channels + ch], expected(x, y, ch), "\(what) at (\(x), \(y), \(ch))")
                } } }
            }
            check(.identity, { at($0, $1, $2) }, "identity")
            check(AffineAugmentation(rotation_degrees: 0, scale_x: 1, scale_y: 1, shift_x: 2, shift_y: -1),
                  { at($0 - 2, $1 + 1, $2) }, "shift (edges extended)")
            check(AffineAugmentation(rotation_degrees: 90, scale_x: 1, scale_y: 1, shift_x: 0, shift_y: 0),
                  { at(4 + ($1 - 4), 4 - ($0 - 4), $2) }, "quarter turn")
            // A ×2 stretch of x: even offsets from the centre land on pixels, odd ones halfway between two.
            func stretched(_ x: Int, _ y: Int, _ ch: Int) -> UInt16 {
                if (x - 4) % 2 == 0 { return at(4 + (x - 4) / 2, y, ch) }
                let left = 4 + Int((Double(x - 4) / 2).rounded(.down))
                return UInt16(((Double(at(left, y, ch)) + Double(at(left + 1, y, ch))) / 2).rounded())
            }
            check(AffineAugmentation(rotation_degrees: 0, scale_x: 2, scale_y: 1, shift_x: 0, shift_y: 0), stretched, "stretch")
        }
    }

    func testAugmentedCopiesRecordATransformThatRemakesThem() throws {
        let data = root.appendingPathComponent("data")
        for (name, count) in [("common", 10), ("rare", 3)] {
            let folder = data.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<count {
                try writePNG(noiseImage(12, seed: UInt64(100 * name.count + i)), to: folder.appendingPathComponent("\(name)_\(i).png"))
            }
        }
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("aug"), method: .augment)
        request.seed = 4
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.add), [0, 7]); XCTAssertEqual(plan[1].method, "augment (random affine copies)")
        let synthetic = try jsonLines(request.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 7)
        var changed = 0
        for line in synthetic {
            XCTAssertEqual(line["origin"] as? String, "augment")
            let parentName = try XCTUnwrap((line["parents"] as? [String])?.first)
            XCTAssert(parentName.hasPrefix("rare/"), parentName)
            let fields = try XCTUnwrap(line["augmentation"] as? [String: Any])
            let t = try JSONDecoder().decode(AffineAugmentation.self, from: JSONSerialization.data(withJSONObject: fields))
            XCTAssertLessThanOrEqual(abs(t.rotation_degrees), AffineAugmentation.maxRotationDegrees)
            for scale in [t.scale_x, t.scale_y] { XCTAssertLessThanOrEqual(abs(scale - 1), AffineAugmentation.maxScaleChange) }
            for shift in [t.shift_x, t.shift_y] { XCTAssertLessThanOrEqual(abs(shift), AffineAugmentation.maxShiftFraction * 12) }
            let parent = try readImage(at: data.appendingPathComponent(parentName))
            let file = try readImage(at: request.out.appendingPathComponent(line["file"] as! String))
            XCTAssertEqual(file.samples, affineTransformed(parent, t).samples, "the manifest's transform remakes \(line["file"]!)")
            if file.samples != parent.samples { changed += 1 }
        }
        XCTAssertEqual(changed, 7, "no augmented copy is a plain copy")
        // The same seed gives the same files, and the parents are those plain oversampling draws.
        var again = request; again.out = root.appendingPathComponent("aug2")
        try runBalance(again, progress: .none)
        var copies = request; copies.out = root.appendingPathComponent("copies"); copies.method = .oversample
        try runBalance(copies, progress: .none)
        let copyLines = try jsonLines(copies.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        for (line, copy) in zip(synthetic, copyLines) {
            let name = line["file"] as! String
            XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(name)), try Data(contentsOf: again.out.appendingPathComponent(name)))
            XCTAssertEqual(line["parents"] as? [String], copy["parents"] as? [String])
        }
    }
}

/// SMOTE and oversampling on classes held in volumes, read one image at a time (issue 16: a 0.65 MB
/// .nii.gz at the pixel limit took 4.8 GB when every slice of the class was held as pixels).
final class StreamedOversamplingTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// A random image (samples uniform over the depth's range).
    func randomImage(_ width: Int, _ height: Int, channels: Int = 1, bitDepth: Int, _ s: inout RandomStream) -> Image {
        let top = bitDepth == 16 ? 65536 : 256
        return Image(width: width, height: height, channels: channels, bitDepth: bitDepth,
                     samples: (0..<(width * height * channels)).map { _ in UInt16(s.int(below: top)) })
    }

    /// Class "rare": a 12×10 volume of 7 random slices (.nii) and one 16-bit PNG of the same size;
    /// class "common": 20 tiny PNGs. Returns the rare images as `readImages` gives them, by manifest name.
    func makeVolumeData() throws -> (data: URL, rare: [String: Image]) {
        let data = root.appendingPathComponent("data")
        try writeConstantImages(data, "common", values: (0..<20).map { UInt16($0 * 10) }, size: 4)
        let rareFolder = data.appendingPathComponent("rare")
        try FileManager.default.createDirectory(at: rareFolder, withIntermediateDirectories: true)
        var s = RandomStream(seed: 21)
        try writeNIfTI((0..<7).map { _ in randomImage(12, 10, bitDepth: 16, &s) }, to: rareFolder.appendingPathComponent("vol.nii"))
        try writePNG(randomImage(12, 10, bitDepth: 16, &s), to: rareFolder.appendingPathComponent("extra.png"))
        var rare: [String: Image] = ["rare/extra.png": try readImage(at: rareFolder.appendingPathComponent("extra.png"))]
        for (k, slice) in try readImages(at: rareFolder.appendingPathComponent("vol.nii")).enumerated() {
            rare["rare/vol.nii" + (k > 0 ? "#\(k)" : "")] = slice
        }
        XCTAssertEqual(rare.count, 8)
        return (data, rare)
    }

    /// The volume's slices are read back by index when samples are written, and everything equals
    /// the in-memory algorithm on the same images: the neighbours (pixel space, full resolution),
    /// the draws of the seed, and every interpolant.
    func testSMOTEOnAVolumeClassEqualsTheInMemoryAlgorithm() throws {
        let (data, rare) = try makeVolumeData()
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("smote"), method: .smote(neighbours: 2))
        request.seed = 5
        request.target = .count(20)
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.add), [0, 12])
        let lines = try jsonLines(request.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(lines.map { $0["sample_index"] as? Int }, Array(0..<12), "manifest lines in sample order")

        // The in-memory algorithm: class order is name order (extra.png, then the volume's slices).
        let names = ["rare/extra.png", "rare/vol.nii"] + (1..<7).map { "rare/vol.nii#\($0)" }
        let values = names.map { samples(rare[$0]!, atDepth: 16) }
        let matrix = Matrix(rows: 8, columns: 120, values: values.flatMap { $0.map { $0 / 65535 } })
        let neighbours = nearestNeighbours(matrix, in: matrix, k: 2, excludingSelf: true)
        let draws = smoteDraws(0..<12, neighbours: neighbours, images: 8, seed: plan[1].seed)
        for (line, draw) in zip(lines, draws) {
            XCTAssertEqual(line["parents"] as? [String], [names[draw.parent], names[draw.neighbour]])
            // (JSON text keeps λ to about 1e-16.)
            XCTAssertEqual(try XCTUnwrap(line["lambda"] as? Double), draw.lambda, accuracy: 1e-12)
            let image = try readImage(at: request.out.appendingPathComponent(line["file"] as! String))
            XCTAssertEqual(image.samples, interpolate(values[draw.parent], values[draw.neighbour], lambda: draw.lambda, maxValue: 65535))
            XCTAssertEqual(image.bitDepth, 16)
        }
        XCTAssertGreaterThan(Set(draws.map(\.parent)).count, 3, "parents from the volume and the PNG")

        // Oversampling copies the image the stream picks, volume slices included.
        var copies = request
        copies.out = root.appendingPathComponent("copies"); copies.method = .oversample
        try runBalance(copies, progress: .none)
        let copyLines = try jsonLines(copies.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(copyLines.count, 12)
        for line in copyLines {
            let parent = try XCTUnwrap((line["parents"] as? [String])?.first)
            XCTAssertEqual(try readImage(at: copies.out.appendingPathComponent(line["file"] as! String)).samples, rare[parent]?.samples)
        }
    }

    /// Within the budget the features are every sample scaled to [0, 1] exactly as the pixel-space
    /// search always scaled them (8- and 16-bit images of one class meet at the class's depth).
    func testFeaturesWithinTheBudgetAreThePixels() throws {
        let data = root.appendingPathComponent("data")
        let folder = data.appendingPathComponent("rare")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var s = RandomStream(seed: 4)
        var images: [Image] = []
        for i in 0..<5 {
            let image = randomImage(6, 5, channels: 3, bitDepth: i % 2 == 0 ? 8 : 16, &s)
            try writePNG(image, to: folder.appendingPathComponent("i\(i).png"))
            images.append(image)
        }
        let reader = ClassImageReader(classImageList("rare", dataset: try ImageFolderListing(root: data)))
        let (features, grid, depth) = try smoteFeatures(reader, root: data)
        XCTAssertEqual(grid.block, 1)
        XCTAssertEqual(depth, 16)
        XCTAssertEqual(features.values, images.flatMap { samples($0, atDepth: 16).map { $0 / 65535 } })
    }

    /// Past the budget each feature is a block sum ÷ √(block pixels): the coordinates of the
    /// orthogonal projection onto images constant on blocks. Feature distances never exceed pixel
    /// distances and equal them for images constant on the blocks (edge blocks clipped).
    func testFeaturesPastTheBudgetProjectOntoBlockConstantImages() throws {
        // 41×31: share 300 features; block 2 gives 21×16 = 336, block 3 gives 14×11 = 154.
        let grid = SMOTEFeatureGrid(width: 41, height: 31, channels: 1, images: 4, budget: 1200)
        XCTAssertEqual(grid.block, 3)
        XCTAssertEqual(grid.count, 154)
        XCTAssertEqual(SMOTEFeatureGrid(width: 64, height: 64, channels: 1, images: 1000).block, 1, "1,000 images of 64² fit")
        XCTAssertEqual(SMOTEFeatureGrid(width: 512, height: 512, channels: 1, images: 1024).block, 6)
        func features(_ image: Image) -> [Double] {
            var row = [Double](repeating: 0, count: grid.count)
            row.withUnsafeMutableBufferPointer {
                grid.accumulate(image, into: $0.baseAddress!)
                grid.finish($0.baseAddress!, imageMaxValue: image.maxValue, classMaxValue: 65535)
            }
            return row
        }
        func pixels(_ image: Image) -> [Double] { samples(image, atDepth: 16).map { $0 / 65535 } }
        func distance(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() }
        var s = RandomStream(seed: 9)
        // Direct definition: the sum of block B ÷ √|B|.
        let a = randomImage(41, 31, bitDepth: 8, &s)
        let direct = (0..<11).flatMap { r in (0..<14).map { c -> Double in
            var sum = 0.0, n = 0.0
            for y in (r * 3)..<min(31, r * 3 + 3) { for x in (c * 3)..<min(41, c * 3 + 3) { sum += pixels(a)[y * 41 + x]; n += 1 } }
            return sum / n.squareRoot()
        } }
        for (x, y) in zip(features(a), direct) { XCTAssertEqual(x, y, accuracy: 1e-12) }
        for _ in 0..<5 {
            let b = randomImage(41, 31, bitDepth: 16, &s)
            XCTAssertLessThanOrEqual(distance(features(a), features(b)), distance(pixels(a), pixels(b)) + 1e-9)
        }
        func blockConstant(_ s: inout RandomStream) -> Image {
            let levels = (0..<154).map { _ in UInt16(s.int(below: 65536)) }
            return Image(width: 41, height: 31, channels: 1, bitDepth: 16,
                         samples: (0..<(41 * 31)).map { levels[($0 / 41 / 3) * 14 + ($0 % 41) / 3] })
        }
        let c = blockConstant(&s), d = blockConstant(&s)
        XCTAssertEqual(distance(features(c), features(d)), distance(pixels(c), pixels(d)), accuracy: 1e-9)
    }
}

final class SampleFilterTests: XCTestCase {
    func testMemorisedCopiesAndOffClassSamplesAreRejected() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        // Two separable classes of disc images (bright vs dim discs), varied positions and sizes.
        let data = root.appendingPathComponent("data")
        var s = RandomStream(seed: 3)
        for (name, disc) in [("bright", Float(0.9)), ("dim", Float(-0.3))] {
            let folder = data.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<16 {
                let cx = s.uniform(20, 44), cy = s.uniform(20, 44), r = s.uniform(8, 16)
                var v = [Float](repeating: -0.8, count: 64 * 64)
                for y in 0..<64 { for x in 0..<64 where (Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy) < r * r { v[y * 64 + x] = disc } }
                for k in v.indices { v[k] = max(-1, min(1, v[k] + 0.05 * s.normal())) }
                try writePNG(Image(floatCHW: v, width: 64, height: 64, channels: 1, bitDepth: 8), to: folder.appendingPathComponent("\(name)_\(i).png"))
            }
        }
        // Candidates "generated for bright": a copy of a real bright image, a new bright disc, a dim disc.
        let candidates = root.appendingPathComponent("candidates")
        try FileManager.default.createDirectory(at: candidates, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("bright/bright_5.png"), to: candidates.appendingPathComponent("a_copy.png"))
        for (name, disc) in [("b_new", Float(0.9)), ("c_dim", Float(-0.3))] {
            var v = [Float](repeating: -0.8, count: 64 * 64)
            for y in 0..<64 { for x in 0..<64 where (x - 30) * (x - 30) + (y - 34) * (y - 34) < 150 { v[y * 64 + x] = disc } }
            for k in v.indices { v[k] = max(-1, min(1, v[k] + 0.05 * s.normal())) }
            try writePNG(Image(floatCHW: v, width: 64, height: 64, channels: 1, bitDepth: 8), to: candidates.appendingPathComponent("\(name).png"))
        }
        let set = try ImageSet(root: candidates)
        XCTAssertEqual(set.names, ["a_copy.png", "b_new.png", "c_dim.png"])

        let memorisationOnly = try SampleFilter(data: data, settings: BalanceFilterSettings(), seed: 0, style: .none)
        let plain = memorisationOnly.judge(set, className: "bright")
        guard case .memorised(let nearest, _, _, let pixel)? = plain[0] else { return XCTFail("the copy must be rejected: \(plain)") }
        XCTAssertEqual(nearest, "bright/bright_5.png"); XCTAssertLessThanOrEqual(pixel, 1.0 / 255)
        XCTAssertNil(plain[1]); XCTAssertNil(plain[2], "without --min-confidence only copies are rejected")

        var settings = BalanceFilterSettings()
        settings.minConfidence = 0.8
        settings.classifierEpochs = 60
        let confident = try SampleFilter(data: data, settings: settings, seed: 0, style: .none)
        let verdicts = confident.judge(set, className: "bright")
        XCTAssertNil(verdicts[1], "a new bright disc is kept: \(verdicts)")
        guard case .unsure(let p, let minimum)? = verdicts[2] else { return XCTFail("a dim disc generated as 'bright' must be rejected: \(verdicts)") }
        XCTAssertLessThan(p, 0.8); XCTAssertEqual(minimum, 0.8)
        if case .memorised? = verdicts[0] {} else { XCTFail("the memorisation filter runs first: \(verdicts)") }
    }

    func testTwinClassesDoNotLowerTheMemorisationThreshold() throws {
        let root = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: root) }
        // "lesion" is every "healthy" image with a small bright spot, as when lesions are
        // composited into the healthy scans: each image's nearest image of any class is its twin.
        let data = root.appendingPathComponent("data")
        for name in ["healthy", "lesion"] { try FileManager.default.createDirectory(at: data.appendingPathComponent(name), withIntermediateDirectories: true) }
        var s = RandomStream(seed: 11)
        var scans: [[Float]] = []
        for i in 0..<16 {
            let cx = s.uniform(20, 44), cy = s.uniform(20, 44), r = s.uniform(8, 16)
            var v = [Float](repeating: -0.8, count: 64 * 64)
            for y in 0..<64 { for x in 0..<64 where (Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy) < r * r { v[y * 64 + x] = 0.5 } }
            for k in v.indices { v[k] = max(-1, min(1, v[k] + 0.05 * s.normal())) }
            scans.append(v)
            var lesion = v
            for y in Int(cy) - 1...Int(cy) + 1 { for x in Int(cx) - 1...Int(cx) + 1 { lesion[y * 64 + x] = 1 } }
            try writePNG(Image(floatCHW: v, width: 64, height: 64, channels: 1, bitDepth: 8), to: data.appendingPathComponent("healthy/h_\(i).png"))
            try writePNG(Image(floatCHW: lesion, width: 64, height: 64, channels: 1, bitDepth: 8), to: data.appendingPathComponent("lesion/l_\(i).png"))
        }
        // A candidate for "lesion" that is a healthy scan with new noise: not a pixel copy, but no new image.
        let candidates = root.appendingPathComponent("candidates")
        try FileManager.default.createDirectory(at: candidates, withIntermediateDirectories: true)
        let noisy = scans[3].map { max(-1, min(1, $0 + 0.02 * s.normal())) }
        try writePNG(Image(floatCHW: noisy, width: 64, height: 64, channels: 1, bitDepth: 8), to: candidates.appendingPathComponent("near_copy.png"))
        let reference = try ImageSet(root: data)
        let network = FeatureNetwork()
        let features = reference.features(network)
        let everyClass = nearestNeighbours(features, in: features, k: 1, excludingSelf: true)
        let (baseline, _) = memorisationBaseline(train: reference, trainFeatures: features, allNeighbours: nil)
        for i in 0..<reference.count {
            // Each image's own-class neighbour is farther than its twin, which the old baseline used.
            XCTAssertGreaterThan(baseline[i], 3 * everyClass.distance(i), reference.names[i])
        }
        let verdict = try SampleFilter(data: data, settings: BalanceFilterSettings(), seed: 0, style: .none)
            .judge(try ImageSet(root: candidates), className: "lesion")
        guard case .memorised(let nearest, let distance, let threshold, let pixel)? = verdict[0] else {
            return XCTFail("a noisy copy of a healthy scan must be rejected: \(verdict)")
        }
        XCTAssertTrue(nearest.hasSuffix("_3.png"), nearest)
        XCTAssertGreaterThan(pixel, 1.0 / 255)
        XCTAssertLessThan(distance, threshold)
    }
}
