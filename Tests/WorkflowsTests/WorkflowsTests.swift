import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Generators
@testable import Compositor
@testable import Workflows
import TestSupport
import Core

/// healthy/ and lesion/ "scans": 48×48 8-bit discs with noisy interiors.
func makeScans(_ root: URL, healthy: Int = 6, lesion: Int = 2) throws {
    var s = RandomStream(seed: 1)
    for (name, count) in [("healthy", healthy), ("lesion", lesion)] where count > 0 {
        let folder = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<count {
            var v = [Float](repeating: -1, count: 48 * 48)
            for y in 0..<48 { for x in 0..<48 where (x - 24) * (x - 24) + (y - 24) * (y - 24) < 400 { v[y * 48 + x] = 0.2 + 0.1 * s.normal() } }
            try writePNG(Image(floatCHW: v, width: 48, height: 48, channels: 1, bitDepth: 8), to: folder.appendingPathComponent("\(name)_\(i).png"))
        }
    }
}

/// Every file below `url` (hidden ones included) by path relative to `url`, with its bytes.
func folderContents(_ url: URL) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let base = url.standardizedFileURL.resolvingSymlinksInPath().path + "/"
    let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)!
    for case let file as URL in e where !file.hasDirectoryPath {
        let path = file.standardizedFileURL.resolvingSymlinksInPath().path
        out[path.hasPrefix(base) ? String(path.dropFirst(base.count)) : path] = try Data(contentsOf: file)
    }
    return out
}

func jsonLines(_ url: URL) throws -> [[String: Any]] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}


// MARK: - Balance

final class BalanceTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory(); try makeScans(root.appendingPathComponent("data")) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func testTargetParsing() throws {
        XCTAssertEqual(try BalanceTarget(parsing: "max"), .max)
        XCTAssertEqual(try BalanceTarget(parsing: "40"), .count(40))
        XCTAssertEqual(try BalanceTarget(parsing: "0.5"), .ratio(0.5))
        XCTAssertEqual(BalanceTarget.ratio(0.5).goal(largest: 7), 4)
        XCTAssertEqual(BalanceTarget.ratio(0.5).goal(largest: 8), 4)
        XCTAssertEqual(BalanceTarget.ratio(1).goal(largest: 8), 8)
        for bad in ["0", "-3", "1.5", "many", ""] { XCTAssertThrowsError(try BalanceTarget(parsing: bad), bad) }
    }

    func testCompositeBalanceReachesTheTargetExactlyAndLeavesTheInputAlone() throws {
        let data = root.appendingPathComponent("data"), out = root.appendingPathComponent("balanced")
        let before = try folderContents(data)
        var request = BalanceRequest(data: data, out: out, method: .composite(lesions: nil, healthyClass: "healthy", lesionClass: "lesion"))
        request.seed = 4
        // The plan (a dry run) writes nothing.
        let plan = try planBalance(request)
        XCTAssertEqual(plan.map(\.className), ["healthy", "lesion"])
        XCTAssertEqual(plan.map(\.have), [6, 2])
        XCTAssertEqual(plan.map(\.add), [0, 4])
        XCTAssertEqual(plan[1].seed, classSeed(4, className: "lesion"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a dry run writes nothing")

        try runBalance(request, progress: .none)
        XCTAssertEqual(try folderContents(data), before, "the input folder must not change")
        XCTAssertEqual(try ImageFolderDataset(root: out, imageSize: 8, channels: 1).countsPerClass, [6, 6])
        let lines = try jsonLines(out.appendingPathComponent("manifest.jsonl"))
        XCTAssertEqual(lines.count, 12, "one manifest line per file")
        let synthetic = lines.filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 4)
        XCTAssertEqual(lines.filter { $0["source"] as? String == "real" }.count, 8)
        for line in lines {
            XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent(line["file"] as! String).path), "\(line)")
        }
        // Real files keep their names and bytes; synthetic ones name their background, lesion, seed and mask.
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("lesion/lesion_1.png")), before["lesion/lesion_1.png"])
        for (j, line) in synthetic.enumerated() {
            XCTAssertEqual(line["file"] as? String, "lesion/" + syntheticFileName(j))
            XCTAssertEqual(line["sample_index"] as? Int, j)
            XCTAssertEqual((line["seed"] as? NSNumber)?.uint64Value, classSeed(4, className: "lesion"))
            XCTAssert((line["background"] as? String)?.hasSuffix("healthy/healthy_\(j).png") == true, "\(line)")
            XCTAssert((line["lesion_source"] as? String)?.hasPrefix("procedural:") == true, "\(line)")
            let mask = try readImage(at: out.appendingPathComponent(line["mask"] as! String))
            XCTAssertGreaterThan(mask.samples.filter { $0 != 0 }.count, 0, "every composite carries a lesion")
            // The lesion changed the healthy scan it was placed in.
            let image = try readImage(at: out.appendingPathComponent(line["file"] as! String))
            XCTAssertNotEqual(image.samples, try readImage(at: data.appendingPathComponent("healthy/healthy_\(j).png")).samples)
        }
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: root.path).contains { $0.hasSuffix(".partial") },
                       "no staging folder is left behind")

        // The same seed gives the same dataset, byte for byte; another seed other composites.
        let again = root.appendingPathComponent("again")
        var same = request; same.out = again
        try runBalance(same, progress: .none)
        XCTAssertEqual(try folderContents(again), try folderContents(out))
        var other = request; other.out = root.appendingPathComponent("other"); other.seed = 5
        try runBalance(other, progress: .none)
        XCTAssertNotEqual(try Data(contentsOf: other.out.appendingPathComponent("lesion/synthetic_000000.png")),
                          try Data(contentsOf: out.appendingPathComponent("lesion/synthetic_000000.png")))
    }

    func testCompositeBalanceRefusals() throws {
        let data = root.appendingPathComponent("data")
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("b"),
                                     method: .composite(lesions: nil, healthyClass: "healthy", lesionClass: "lesion"))
        request.target = .count(5)
        assertThrows(try planBalance(request), containing: "target 5 is below the 6 images")
        request.target = .max
        request.out = data.appendingPathComponent("inside")
        assertThrows(try planBalance(request), containing: "must not be inside the input")
        request.out = data
        assertThrows(try planBalance(request), containing: "must not be inside the input")
        request.out = root
        assertThrows(try planBalance(request), containing: "nor contain it")
        request.out = root.appendingPathComponent("b")
        request.method = .composite(lesions: nil, healthyClass: "normal", lesionClass: "lesion")
        assertThrows(try planBalance(request), containing: "no healthy class 'normal'")
        // Compositing cannot fill a third class.
        try makeScans(root.appendingPathComponent("three"), healthy: 4, lesion: 4)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("three/other"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("healthy/healthy_0.png"), to: root.appendingPathComponent("three/other/x.png"))
        request.data = root.appendingPathComponent("three")
        request.method = .composite(lesions: nil, healthyClass: "healthy", lesionClass: "lesion")
        assertThrows(try planBalance(request), containing: "class 'other' would need images")
        // A flat folder has no classes to balance; a non-empty output is not overwritten.
        request.data = data.appendingPathComponent("healthy")
        assertThrows(try planBalance(request), containing: "no class subfolders")
        // A dataset reached through symbolic links (the folder, and a class folder) is balanced like the real one.
        let linked = root.appendingPathComponent("linked"), linkedClasses = root.appendingPathComponent("linked-classes")
        try FileManager.default.createSymbolicLink(at: linked, withDestinationURL: data)
        try FileManager.default.createDirectory(at: linkedClasses, withIntermediateDirectories: true)
        for name in ["healthy", "lesion"] {
            try FileManager.default.createSymbolicLink(at: linkedClasses.appendingPathComponent(name), withDestinationURL: data.appendingPathComponent(name))
        }
        request.method = .oversample
        request.data = data
        let direct = try planBalance(request)
        for viaLinks in [linked, linkedClasses] {
            request.data = viaLinks
            XCTAssertEqual(try planBalance(request), direct, viaLinks.path)
        }
        request.data = data
        try FileManager.default.createDirectory(at: request.out, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: request.out.appendingPathComponent("keep.txt"))
        assertThrows(try runBalance(request, progress: .none), containing: "not empty")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: request.out.path), ["keep.txt"])
    }

    func testCompositeBalancePassesOverScansWithNoRoomAndRefusesWhenNoneHasRoom() throws {
        // Blank scans have an empty automatic region: composites go to the scans with room instead.
        let data = root.appendingPathComponent("blanks")
        try makeScans(data, healthy: 3, lesion: 1)
        for i in 0..<3 {
            try writePNG(Image(floatCHW: [Float](repeating: -1, count: 48 * 48), width: 48, height: 48, channels: 1, bitDepth: 8),
                         to: data.appendingPathComponent("healthy/blank_\(i).png"))
        }
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("balanced-blanks"),
                                     method: .composite(lesions: nil, healthyClass: "healthy", lesionClass: "lesion"))
        request.seed = 2
        try runBalance(request, progress: .none)
        let synthetic = try jsonLines(request.out.appendingPathComponent("manifest.jsonl")).filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 5)
        for line in synthetic {
            let background = try XCTUnwrap(line["background"] as? String)
            XCTAssert(background.contains("/healthy_"), "composited into \(background)")
        }
        // Only blank scans: a one-line refusal naming the class folder, not a crash.
        let blank = root.appendingPathComponent("only-blanks")
        for name in ["healthy", "lesion"] { try FileManager.default.createDirectory(at: blank.appendingPathComponent(name), withIntermediateDirectories: true) }
        for i in 0..<3 {
            try FileManager.default.copyItem(at: data.appendingPathComponent("healthy/blank_\(i).png"), to: blank.appendingPathComponent("healthy/blank_\(i).png"))
        }
        try FileManager.default.copyItem(at: data.appendingPathComponent("lesion/lesion_0.png"), to: blank.appendingPathComponent("lesion/lesion_0.png"))
        request.data = blank
        request.out = root.appendingPathComponent("balanced-only-blanks")
        assertThrows(try runBalance(request, progress: .none), containing: "has room for composited lesion 1")
    }

    func testCompositeBalanceCreatesAMissingLesionClassFromAPatchFolder() throws {
        let data = root.appendingPathComponent("healthy-only")
        try makeScans(data, healthy: 3, lesion: 0)
        let patches = root.appendingPathComponent("patches")
        try writeProceduralLesions(to: patches, count: 2, seed: 9, settings: ProceduralLesionSettings(size: 13, polarity: .hyper, bitDepth: 8))
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("b"),
                                     method: .composite(lesions: patches, healthyClass: "healthy", lesionClass: "tumour"))
        request.target = .ratio(1)
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.className), ["healthy", "tumour"])
        XCTAssertEqual(plan.map(\.add), [0, 3])
        XCTAssertEqual(try ImageFolderDataset(root: request.out, imageSize: 8, channels: 1).countsPerClass, [3, 3])
        let sources = try jsonLines(request.out.appendingPathComponent("manifest.jsonl")).compactMap { $0["lesion_source"] as? String }
        XCTAssertEqual(sources.count, 3)
        XCTAssert(sources.allSatisfy { $0.hasPrefix("lesion_000") }, "\(sources)")
    }

    /// A 3-step conditional GAN on the test data, in `root/gan`.
    func trainTinyConditionalGAN(on data: URL) throws -> URL {
        let run = root.appendingPathComponent("gan")
        var r = TrainingRequest(data: data.path)
        r.imageSize = 16; r.steps = 3; r.batchSize = 4; r.width = 8; r.conditional = true; r.checkpointEvery = 3; r.sampleEvery = 100
        try trainGAN(r, out: run, resume: false, progress: .none)
        return run
    }

    func testModelBalanceGeneratesExactlyTheMissingImagesReproducibly() throws {
        let data = root.appendingPathComponent("data")
        let run = try trainTinyConditionalGAN(on: data)
        let before = try folderContents(data)
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("b"), method: .models([run.path]))
        request.target = .count(7)
        request.seed = 3
        let plan = try planBalance(request)
        XCTAssertEqual(plan.map(\.add), [1, 5])
        XCTAssertEqual(plan[0].method, "generate (dcgan)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: request.out.path))
        try runBalance(request, progress: .none)
        XCTAssertEqual(try folderContents(data), before, "the input folder must not change")
        XCTAssertEqual(try ImageFolderDataset(root: request.out, imageSize: 8, channels: 1).countsPerClass, [7, 7])
        let lines = try jsonLines(request.out.appendingPathComponent("manifest.jsonl"))
        let synthetic = lines.filter { $0["source"] as? String == "synthetic" }
        XCTAssertEqual(synthetic.count, 6)
        let modelID = try modelIdentifier(of: RunFolder(run).model)
        XCTAssert(synthetic.allSatisfy { $0["model_id"] as? String == modelID && $0["model_kind"] as? String == "dcgan" })

        // The manifest's seed and index remake a synthetic image with plain `generate --class`.
        let lesion = synthetic.filter { $0["class"] as? String == "lesion" }
        XCTAssertEqual(lesion.count, 5)
        var g = GenerationRequest(model: run.path, count: 5, out: root.appendingPathComponent("regen"))
        g.className = "lesion"
        g.seed = (lesion[3]["seed"] as! NSNumber).uint64Value
        try generateImages(g, progress: .none)
        XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(lesion[3]["file"] as! String)),
                       try Data(contentsOf: g.out.appendingPathComponent(sampleFileName(lesion[3]["sample_index"] as! Int))))

        // A class the model does not know is refused, naming it.
        try FileManager.default.createDirectory(at: data.appendingPathComponent("cyst"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("lesion/lesion_0.png"), to: data.appendingPathComponent("cyst/c.png"))
        request.out = root.appendingPathComponent("c")
        assertThrows(try planBalance(request), containing: "cannot generate class 'cyst' (it knows: healthy, lesion)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: request.out.path))
        request.method = .models([root.appendingPathComponent("nothing").path])
        assertThrows(try planBalance(request), containing: "no such model")
    }

    /// `--real-copies 0.4`: of a class's 5 added images, 2 are byte copies of its real images
    /// (manifest origin "oversample", parent named) and 3 generated; the generated ones are the
    /// generator's first samples of the class seed, as without copies.
    func testModelBalanceWithRealCopiesMixesCopiesAndGeneratedImages() throws {
        let data = root.appendingPathComponent("data")
        let run = try trainTinyConditionalGAN(on: data)
        var request = BalanceRequest(data: data, out: root.appendingPathComponent("mixed"), method: .models([run.path]))
        request.target = .count(7)
        request.seed = 3
        request.realCopyFraction = 0.4
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.add), [1, 5])
        XCTAssertEqual(plan[1].method, "generate (dcgan) + 40 % copies of real images")
        XCTAssertEqual(try ImageFolderDataset(root: request.out, imageSize: 8, channels: 1).countsPerClass, [7, 7])
        let lesion = try jsonLines(request.out.appendingPathComponent("manifest.jsonl"))
            .filter { $0["class"] as? String == "lesion" && $0["source"] as? String == "synthetic" }
        let copies = lesion.filter { $0["origin"] as? String == "oversample" }, generated = lesion.filter { $0["origin"] as? String == "generate" }
        XCTAssertEqual(copies.count, 2)
        XCTAssertEqual(generated.count, 3)
        for copy in copies {
            let parent = (copy["parents"] as! [String])[0]
            XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(copy["file"] as! String)),
                           try Data(contentsOf: data.appendingPathComponent(parent)), parent)
        }
        var plain = request
        plain.out = root.appendingPathComponent("plain")
        plain.realCopyFraction = 0
        try runBalance(plain, progress: .none)
        for record in generated {
            let file = record["file"] as! String
            XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(file)), try Data(contentsOf: plain.out.appendingPathComponent(file)), file)
        }
        // --augment-copies: the same parents, each copy under its recorded transform; generated images unchanged.
        var augmented = request
        augmented.out = root.appendingPathComponent("augmented")
        augmented.augmentCopies = true
        XCTAssertEqual(try runBalance(augmented, progress: .none)[1].method, "generate (dcgan) + 40 % augmented copies of real images")
        let augmentedLesion = try jsonLines(augmented.out.appendingPathComponent("manifest.jsonl"))
            .filter { $0["class"] as? String == "lesion" && $0["source"] as? String == "synthetic" }
        let augmentedCopies = augmentedLesion.filter { $0["origin"] as? String == "augment" }
        XCTAssertEqual(augmentedCopies.map { $0["file"] as! String }, copies.map { $0["file"] as! String })
        for (copy, plainCopy) in zip(augmentedCopies, copies) {
            XCTAssertEqual(copy["parents"] as? [String], plainCopy["parents"] as? [String])
            let t = try JSONDecoder().decode(AffineAugmentation.self, from: JSONSerialization.data(withJSONObject: copy["augmentation"]!))
            let parent = try readImage(at: data.appendingPathComponent((copy["parents"] as! [String])[0]))
            XCTAssertEqual(try readImage(at: augmented.out.appendingPathComponent(copy["file"] as! String)).samples, affineTransformed(parent, t).samples)
        }
        for record in generated {
            let file = record["file"] as! String
            XCTAssertEqual(try Data(contentsOf: augmented.out.appendingPathComponent(file)), try Data(contentsOf: plain.out.appendingPathComponent(file)), file)
        }
        request.out = root.appendingPathComponent("bad")
        request.realCopyFraction = 1.5
        assertThrows(try planBalance(request), containing: "--real-copies must be a fraction in [0, 1]")
    }

    /// Two models: a class's 5 generated images split 3 + 2. The first model's 3 are the images a
    /// one-model run makes first; the second model's 2 come from its own seed (not the class seed,
    /// so the same model given twice does not repeat images), and `generate` remakes them from the
    /// manifest's model, seed and index.
    func testBalanceWithTwoModelsSplitsEachClassBetweenThem() throws {
        let data = root.appendingPathComponent("data")
        let first = try trainTinyConditionalGAN(on: data)
        let second = root.appendingPathComponent("gan-seed-2")
        var r = TrainingRequest(data: data.path)
        r.imageSize = 16; r.steps = 3; r.batchSize = 4; r.width = 8; r.conditional = true; r.checkpointEvery = 3; r.sampleEvery = 100; r.seed = 2
        try trainGAN(r, out: second, resume: false, progress: .none)

        var request = BalanceRequest(data: data, out: root.appendingPathComponent("two"), method: .models([first.path, second.path]))
        request.target = .count(7)
        request.seed = 3
        let plan = try runBalance(request, progress: .none)
        XCTAssertEqual(plan.map(\.add), [1, 5])
        XCTAssertEqual(plan[1].method, "generate (2 models: dcgan)")
        XCTAssertEqual(plan[1].filtered.generated, 5)
        let lesion = try jsonLines(request.out.appendingPathComponent("manifest.jsonl"))
            .filter { $0["class"] as? String == "lesion" && $0["source"] as? String == "synthetic" }
        XCTAssertEqual(lesion.map { $0["file"] as! String }, (0..<5).map { "lesion/" + syntheticFileName($0) })
        XCTAssertEqual(lesion.map { $0["model"] as! String }, [first.path, first.path, first.path, second.path, second.path])
        XCTAssertEqual(lesion.map { $0["sample_index"] as! Int }, [0, 1, 2, 0, 1])
        let seeds = lesion.map { ($0["seed"] as! NSNumber).uint64Value }
        XCTAssertEqual(seeds[0], classSeed(3, className: "lesion"))
        XCTAssertNotEqual(seeds[3], seeds[0])

        var single = request
        single.method = .models([first.path])
        single.out = root.appendingPathComponent("one")
        try runBalance(single, progress: .none)
        for j in 0..<3 {
            let file = "lesion/" + syntheticFileName(j)
            XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(file)), try Data(contentsOf: single.out.appendingPathComponent(file)), file)
        }
        var g = GenerationRequest(model: second.path, count: 2, out: root.appendingPathComponent("regen"))
        g.className = "lesion"
        g.seed = seeds[4]
        try generateImages(g, progress: .none)
        XCTAssertEqual(try Data(contentsOf: request.out.appendingPathComponent(lesion[4]["file"] as! String)),
                       try Data(contentsOf: g.out.appendingPathComponent(sampleFileName(1))))
        XCTAssertNotEqual(try Data(contentsOf: request.out.appendingPathComponent(lesion[3]["file"] as! String)),
                          try Data(contentsOf: single.out.appendingPathComponent(lesion[3]["file"] as! String)))

        // A second model that does not know a class the first one can make is named in the refusal.
        let unconditional = root.appendingPathComponent("gan-unconditional")
        r.conditional = false
        try trainGAN(r, out: unconditional, resume: false, progress: .none)
        request.method = .models([first.path, unconditional.path])
        request.out = root.appendingPathComponent("refused")
        assertThrows(try planBalance(request), containing: "the model \(RunFolder(unconditional).model.path) is unconditional")
    }
}

// MARK: - Sharded runs and their merge

final class ShardedRunTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory(); try makeScans(root.appendingPathComponent("data")) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func trainTinyGAN() throws -> URL {
        var r = TrainingRequest(data: root.appendingPathComponent("data").path)
        r.imageSize = 16; r.steps = 2; r.batchSize = 4; r.width = 8; r.conditional = true; r.checkpointEvery = 2; r.sampleEvery = 100
        let run = root.appendingPathComponent("gan")
        try trainGAN(r, out: run, resume: false, progress: .none)
        return run
    }

    func testGenerateShardsMergeIntoTheUnshardedRunAndResumeAfterAKill() throws {
        let run = try trainTinyGAN()
        var whole = GenerationRequest(model: run.path, count: 8, out: root.appendingPathComponent("whole"))
        whole.seed = 5
        try generateImages(whole, progress: .none)
        let sharded = root.appendingPathComponent("sharded")
        @discardableResult func shard(_ k: Int, resume: Bool = false) throws -> GenerationReport {
            var part = GenerationRequest(model: run.path, count: 8, out: sharded)
            part.seed = 5; part.batchSize = 3; part.shard = Shard(index: k, count: 3); part.resume = resume
            return try generateImages(part, progress: .none)
        }
        for k in 0..<3 { try shard(k) }
        let report = try mergeManifests(in: sharded, expect: 8)
        XCTAssertEqual(report.lines, 8)
        XCTAssertEqual(report.items, 8)
        XCTAssertEqual(report.shards, 3)
        XCTAssertEqual(try folderContents(sharded).filter { !$0.key.hasPrefix("manifest.shard-") }, try folderContents(whole.out),
                       "merged shards = one unsharded run, file for file (manifest included)")

        // A killed shard: some samples written, its manifest not (it is written last). The merge
        // names the unfinished shard; a resumed run makes only the missing samples.
        try FileManager.default.removeItem(at: sharded.appendingPathComponent("manifest.shard-1-of-3.jsonl"))
        try FileManager.default.removeItem(at: sharded.appendingPathComponent(sampleFileName(4)))
        try FileManager.default.removeItem(at: sharded.appendingPathComponent("manifest.jsonl"))
        assertThrows(try mergeManifests(in: sharded, expect: 8), containing: "missing shard manifest(s) 1/3")
        let resumed = try shard(1, resume: true)
        XCTAssertEqual(resumed.written, 1)
        XCTAssertEqual(resumed.skipped, 2)
        XCTAssertEqual(try mergeManifests(in: sharded, expect: 8).lines, 8, "no duplicates after the resume")
        XCTAssertEqual(try folderContents(sharded).filter { !$0.key.hasPrefix("manifest.shard-") }, try folderContents(whole.out))
        // Without --resume an existing sample is never overwritten.
        assertThrows(try shard(0), containing: "already exists; pass --resume")
        // A sample file deleted after its shard finished is caught by the merge.
        try FileManager.default.removeItem(at: sharded.appendingPathComponent(sampleFileName(6)))
        assertThrows(try mergeManifests(in: sharded, expect: 8), containing: "missing file(s) sample_000006.png")
        // A shard run with another seed does not belong to the run: resuming it into the folder is
        // refused (its kept samples would be recorded under the wrong seed), and a shard manifest of
        // another seed put there by hand is caught by the merge.
        var stray = GenerationRequest(model: run.path, count: 8, out: sharded)
        stray.seed = 6; stray.shard = Shard(index: 0, count: 3); stray.resume = true
        try shard(0, resume: true)
        assertThrows(try generateImages(stray, progress: .none), containing: "exists with seed 5 but this run has seed 6")
        stray.out = root.appendingPathComponent("stray")
        try generateImages(stray, progress: .none)
        try FileManager.default.removeItem(at: sharded.appendingPathComponent("manifest.shard-0-of-3.jsonl"))
        try FileManager.default.copyItem(at: stray.out.appendingPathComponent("manifest.shard-0-of-3.jsonl"),
                                         to: sharded.appendingPathComponent("manifest.shard-0-of-3.jsonl"))
        assertThrows(try mergeManifests(in: sharded), containing: "shards disagree on seed")
    }

    /// A pid no process has: a child that has already exited and been reaped.
    func deadPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exit 0"]
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    func testResumeRemakesInvalidSamplesAndRemovesOnlyOurStaleTemporaries() throws {
        let run = try trainTinyGAN()
        var reference = GenerationRequest(model: run.path, count: 6, out: root.appendingPathComponent("reference"))
        reference.seed = 3
        try generateImages(reference, progress: .none)
        let out = root.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        func put(_ data: Data, _ name: String) throws { try data.write(to: out.appendingPathComponent(name)) }
        // 0: a valid sample (kept); 1: empty; 2: a foreign 5x5 PNG; 3: right size but 16-bit; 4: not a PNG.
        try FileManager.default.copyItem(at: reference.out.appendingPathComponent(sampleFileName(0)), to: out.appendingPathComponent(sampleFileName(0)))
        try put(Data(), sampleFileName(1))
        try writePNG(Image(width: 5, height: 5, channels: 1, bitDepth: 8), to: out.appendingPathComponent(sampleFileName(2)))
        try writePNG(Image(width: 16, height: 16, channels: 1, bitDepth: 16), to: out.appendingPathComponent(sampleFileName(3)))
        try put(Data("not a png".utf8), sampleFileName(4))
        // Temporaries: ours and orphaned (dead pid; pid 1 is alive but not medsynth) are removed; a live
        // writer's (this process), another name's and another run size's are kept.
        let dead = try deadPID(), me = ProcessInfo.processInfo.processIdentifier
        let removable = [".sample_000005.png.tmp-\(dead)-77", ".manifest.jsonl.tmp-\(dead)", ".sample_000002.png.tmp-1"]
        let kept = [".sample_000003.png.tmp-\(me)-5", ".notes.txt.tmp-\(dead)", ".sample_000099.png.tmp-\(dead)", ".sample_000001.png.tmp-x\(dead)"]
        for name in removable + kept { try put(Data("partial".utf8), name) }

        var request = reference
        request.out = out
        request.resume = true
        let report = try generateImages(request, progress: .none)
        XCTAssertEqual(report.skipped, 1)
        XCTAssertEqual(report.written, 5)
        XCTAssertEqual(report.replaced.map { $0.file.lastPathComponent }, (1...4).map(sampleFileName))
        XCTAssertEqual(report.replaced[0].reason, "file is empty (0 bytes)")
        XCTAssertTrue(report.replaced[1].reason.contains("is 5x5"), report.replaced[1].reason)
        XCTAssertTrue(report.replaced[2].reason.contains("16-bit; this run makes 16x16, 1 channel(s), 8-bit"), report.replaced[2].reason)
        XCTAssertEqual(report.removedTemporaries.map(\.lastPathComponent).sorted(), removable.sorted())
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        XCTAssertTrue(names.isSuperset(of: kept) && names.isDisjoint(with: removable), "\(names.sorted())")
        XCTAssertEqual(try folderContents(out).filter { !$0.key.hasPrefix(".") }, try folderContents(reference.out),
                       "every sample and the manifest equal an uninterrupted run's")
    }

    func testGenerateRefusesAForeignManifestAndResumingUnderOtherSettings() throws {
        let run = try trainTinyGAN()
        let out = root.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let manifest = out.appendingPathComponent("manifest.jsonl")
        let foreign = Data("{\"file\": \"scan1.png\", \"label\": \"tumour\"}\n".utf8)
        try foreign.write(to: manifest)
        var request = GenerationRequest(model: run.path, count: 3, out: out)
        request.seed = 4
        assertThrows(try generateImages(request, progress: .none), containing: "manifest.jsonl: exists and is not a manifest of `medsynth generate` (line 1")
        XCTAssertEqual(try Data(contentsOf: manifest), foreign, "left untouched")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(sampleFileName(0)).path), "refused before any sample")
        // Another model's records are not ours either.
        try FileManager.default.removeItem(at: manifest)
        try generateImages(request, progress: .none)
        let ours = try String(contentsOf: manifest, encoding: .utf8)
        let renamed = ours.replacingOccurrences(of: "\"model_id\":\"", with: "\"model_id\":\"x")
        try Data(renamed.utf8).write(to: manifest)
        request.resume = true
        assertThrows(try generateImages(request, progress: .none), containing: "belongs to another model")
        // Our own manifest: a resume with the same settings rewrites it; with another seed it is refused.
        try Data(ours.utf8).write(to: manifest)
        XCTAssertEqual(try generateImages(request, progress: .none).skipped, 3)
        request.seed = 5
        assertThrows(try generateImages(request, progress: .none), containing: "exists with seed 4 but this run has seed 5")
        request.seed = 4
        request.className = "lesion"
        assertThrows(try generateImages(request, progress: .none), containing: "but this run has class lesion")
    }

    /// A real `medsynth generate` process killed with SIGKILL mid-run, then resumed.
    func testKilledGenerateProcessResumesToTheUnshardedRun() throws {
        guard let binary = builtBinary() else { throw XCTSkip("the medsynth executable is not built next to the tests") }
        let run = try trainTinyGAN()
        let count = 1000
        var reference = GenerationRequest(model: run.path, count: count, out: root.appendingPathComponent("whole"))
        reference.seed = 9
        try generateImages(reference, progress: .none)
        let out = root.appendingPathComponent("killed")
        let arguments = ["generate", "--model", run.path, "--count", String(count), "--out", out.path, "--seed", "9", "--batch", "4", "--progress", "none"]
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        func samples() -> Int { ((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).filter { $0.hasPrefix("sample_") }.count }
        let deadline = Date().addingTimeInterval(60)
        while samples() < 20 && process.isRunning && Date() < deadline { usleep(2_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run was killed, not finished")
        let written = samples()
        XCTAssert(written >= 20 && written < count, "killed midway: \(written) samples")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.jsonl").path), "the manifest is written last")
        // Every file under a final name is complete: it decodes and equals the reference.
        for name in try FileManager.default.contentsOfDirectory(atPath: out.path) where name.hasPrefix("sample_") {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(name)), try Data(contentsOf: reference.out.appendingPathComponent(name)), name)
        }
        let resumed = try runProcess(binary.path, arguments + ["--resume"], in: root, timeout: 120)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssert(resumed.output.contains("wrote \(count - written) image(s), kept \(written) existing"), resumed.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.contains(".tmp-") }, [],
                       "a temporary the kill left behind is removed by the resumed run")
        let visible = try folderContents(out).filter { !$0.key.hasPrefix(".") }
        XCTAssertEqual(visible, try folderContents(reference.out), "resumed run = one uninterrupted run, no duplicates")
        XCTAssertEqual(try jsonLines(out.appendingPathComponent("manifest.jsonl")).map { $0["sample_index"] as! Int }, Array(0..<count))
    }

    func testCompositeShardsMergeIntoTheUnshardedRunAndResumeAfterAKill() throws {
        let scans = root.appendingPathComponent("data/healthy")
        let lesions = ProceduralLesionSource(seed: 2, count: 8, settings: ProceduralLesionSettings(size: 15, polarity: .mixed, bitDepth: 8))
        var options = CompositeOptions(backgrounds: scans, out: root.appendingPathComponent("whole"))
        options.seed = 11
        options.perImage = 2
        _ = try runComposite(options, lesions: lesions)
        let sharded = root.appendingPathComponent("sharded")
        @discardableResult func shard(_ k: Int, resume: Bool = false) throws -> CompositeSummary {
            var part = options
            part.out = sharded; part.shard = Shard(index: k, count: 4); part.resume = resume
            return try runComposite(part, lesions: lesions)
        }
        for k in 0..<4 { try shard(k) }
        let report = try mergeManifests(in: sharded, expect: 6)
        XCTAssertEqual(report.items, 6)
        XCTAssertEqual(report.lines, 12, "two lesions per scan")
        XCTAssertEqual(try folderContents(sharded).filter { !$0.key.hasPrefix("manifest.shard-") }, try folderContents(options.out),
                       "merged shards = one unsharded run: images, masks, manifest parts and manifest")

        // Killed midway through shard 1 (scans 1 and 5): scan 5's outputs and the shard manifest are gone.
        for file in ["images/healthy_5.png", "manifest.d/healthy_5.jsonl", "manifest.shard-1-of-4.jsonl", "manifest.jsonl"] {
            try FileManager.default.removeItem(at: sharded.appendingPathComponent(file))
        }
        assertThrows(try mergeManifests(in: sharded, expect: 6), containing: "missing shard manifest(s) 1/4")
        let resumed = try shard(1, resume: true)
        XCTAssertEqual(resumed.written, 1)
        XCTAssertEqual(resumed.skipped, 1)
        XCTAssertEqual(try mergeManifests(in: sharded, expect: 6).lines, 12)
        XCTAssertEqual(try folderContents(sharded).filter { !$0.key.hasPrefix("manifest.shard-") }, try folderContents(options.out))
    }

    func testMergeNamesMissingAndDuplicatedItems() throws {
        let folder = root.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func write(_ shard: String, _ text: String) throws { try Data(text.utf8).write(to: folder.appendingPathComponent("manifest.shard-\(shard).jsonl")) }
        assertThrows(try mergeManifests(in: folder), containing: "no manifest.shard-K-of-N.jsonl files")
        try write("0-of-2", "{\"sample_index\":0}\n{\"sample_index\":2}\n")
        try write("1-of-2", "{\"sample_index\":1}\n{\"sample_index\":1}\n")
        assertThrows(try mergeManifests(in: folder), containing: "duplicated item(s) 1")
        try write("1-of-2", "{\"sample_index\":1}\n")
        assertThrows(try mergeManifests(in: folder, expect: 6), containing: "missing item(s) 3, 4, 5 of the 6 expected")
        assertThrows(try mergeManifests(in: folder, expect: 2), containing: "item 2 is beyond the 2 expected")
        try write("1-of-2", "{\"sample_index\":1}\n{\"sample_index\":2}\n")
        assertThrows(try mergeManifests(in: folder), containing: "item 2 does not belong to shard 1/2")
        try write("1-of-2", "{\"sample_index\":1}\n{\"sample_index\":3}\n")
        XCTAssertEqual(try mergeManifests(in: folder, expect: 4).lines, 4)
        XCTAssertEqual(try String(contentsOf: folder.appendingPathComponent("manifest.jsonl"), encoding: .utf8),
                       (0..<4).map { "{\"sample_index\":\($0)}\n" }.joined(), "ordered by sample index")
        try write("2-of-3", "{\"sample_index\":2}\n")
        assertThrows(try mergeManifests(in: folder), containing: "different layouts")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("manifest.shard-2-of-3.jsonl"))
        try write("0-of-2", "{\"index\":0,\"instance\":1}\n")
        assertThrows(try mergeManifests(in: folder), containing: "mixes generate and composite")
        // Composite lines: (scan index, lesion instance).
        try write("0-of-2", "{\"index\":0,\"instance\":1}\n{\"index\":0,\"instance\":2}\n{\"index\":2,\"instance\":1}\n")
        try write("1-of-2", "{\"index\":1,\"instance\":2}\n")
        assertThrows(try mergeManifests(in: folder), containing: "scan 1: lesion instance 1 is missing")
        try write("1-of-2", "{\"index\":1,\"instance\":1}\n{\"index\":1,\"instance\":1}\n")
        assertThrows(try mergeManifests(in: folder), containing: "duplicated item(s) 1 instance 1")
        try write("1-of-2", "{\"index\":1,\"instance\":1}\n")
        XCTAssertEqual(try mergeManifests(in: folder, expect: 3).items, 3)
        try write("1-of-2", "not json\n")
        assertThrows(try mergeManifests(in: folder), containing: "manifest.shard-1-of-2.jsonl: line 1 is not a JSON object")
    }

    /// Indices come from files: a huge one is reported, not walked; a skipped composite scan merges.
    func testMergeIsBoundedByTheLinesNotTheIndicesAndAcceptsSkippedScans() throws {
        let folder = root.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func write(_ shard: String, _ text: String) throws { try Data(text.utf8).write(to: folder.appendingPathComponent("manifest.shard-\(shard).jsonl")) }
        try write("0-of-1", "{\"sample_index\":0}\n{\"sample_index\":1000000000000}\n")
        let started = Date()
        assertThrows(try mergeManifests(in: folder), containing: "missing item(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 999999999989 more")
        assertThrows(try mergeManifests(in: folder, expect: 1 << 45), containing: "missing item(s) 1, 2")
        assertThrows(try mergeManifests(in: folder, expect: Int.max), containing: "--expect must be")
        try write("0-of-1", "{\"sample_index\":9223372036854775807}\n")
        assertThrows(try mergeManifests(in: folder), containing: "line 1 has an index above")
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "walking 10^12 indices would never finish")
        try write("0-of-1", "{\"sample_index\":\"zero\"}\n")
        assertThrows(try mergeManifests(in: folder), containing: "line 1: field 'sample_index' has the wrong type")
        // Composite: scan 1 had no room and was skipped; scans 0 and 2 got lesions.
        try write("0-of-1", "{\"index\":0,\"instance\":1}\n{\"index\":1,\"skipped\":\"no room left\"}\n{\"index\":2,\"instance\":1}\n")
        XCTAssertEqual(try mergeManifests(in: folder, expect: 3).items, 3)
        try write("0-of-1", "{\"index\":0,\"instance\":1}\n{\"index\":1,\"skipped\":\"no room left\"}\n{\"index\":1,\"instance\":1}\n")
        assertThrows(try mergeManifests(in: folder), containing: "scan 1 is marked skipped but also has lesion lines")
    }
}

// MARK: - Scripts: the plain batch script and a real SLURM cluster

final class BatchScriptTests: XCTestCase {
    func testBatchScriptShardsInParallelAndMergesToTheUnshardedRun() throws {
        guard let binary = builtBinary() else { throw XCTSkip("the medsynth executable is not built next to the tests") }
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeScans(root.appendingPathComponent("data"), healthy: 5, lesion: 0)
        try writeProceduralLesions(to: root.appendingPathComponent("patches"), count: 3, seed: 1,
                                   settings: ProceduralLesionSettings(size: 13, polarity: .hyper, bitDepth: 8))
        var options = CompositeOptions(backgrounds: root.appendingPathComponent("data/healthy"), out: root.appendingPathComponent("whole"))
        options.seed = 3
        _ = try runComposite(options, lesions: try FolderLesionSource(folder: root.appendingPathComponent("patches")))
        let script = repositoryRoot.appendingPathComponent("scripts/cluster/batch_generate.sh").path
        let arguments = ["-n", "3", "-j", "2", "composite", "--backgrounds", "data/healthy", "--lesions", "patches", "--out", "sharded", "--seed", "3"]
        let result = try runProcess("/bin/bash", [script] + arguments, environment: ["MEDSYNTH": binary.path], in: root, timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssert(result.output.contains("merged 3 shard manifest(s): 5 item(s)"), result.output)
        let merged = try folderContents(root.appendingPathComponent("sharded")).filter { !$0.key.hasPrefix("manifest.shard-") && !$0.key.hasPrefix(".logs/") }
        XCTAssertEqual(merged, try folderContents(options.out))
        // The shard logs hold machine-readable progress lines.
        let log = try String(contentsOf: root.appendingPathComponent("sharded/.logs/shard-0-of-3.log"), encoding: .utf8)
        XCTAssert(log.split(separator: "\n").contains { $0.hasPrefix("{") && $0.contains("\"event\":\"progress\"") }, log)
        // Rerunning finishes nothing new and merges again; a bad command is refused with a clear line.
        let again = try runProcess("/bin/bash", [script] + arguments, environment: ["MEDSYNTH": binary.path], in: root, timeout: 120)
        XCTAssertEqual(again.status, 0, again.output)
        let bad = try runProcess("/bin/bash", [script, "-n", "2", "train", "--out", "x"], environment: ["MEDSYNTH": binary.path], in: root, timeout: 30)
        XCTAssertEqual(bad.status, 2)
        XCTAssert(bad.output.contains("must be generate or composite"), bad.output)
    }

    /// Brings up a real single-node SLURM (scripts/cluster/test_slurm.sh) and checks that the array job plus
    /// the dependent merge job equal one unsharded run. It installs and starts system services, so it
    /// runs only when asked for: MEDSYNTH_SLURM_TEST=1 (as root with apt-get, or with SLURM already up).
    func testSLURMArrayJobAndDependentMergeEqualOneRun() throws {
        guard ProcessInfo.processInfo.environment["MEDSYNTH_SLURM_TEST"] == "1" else {
            throw XCTSkip("SLURM test skipped: it installs and starts slurmctld/slurmd; set MEDSYNTH_SLURM_TEST=1 to run it")
        }
        guard let binary = builtBinary() else { throw XCTSkip("SLURM test skipped: the medsynth executable is not built next to the tests") }
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = repositoryRoot.appendingPathComponent("scripts/cluster/test_slurm.sh").path
        let result = try runProcess("/bin/bash", [script], environment: ["MEDSYNTH": binary.path, "MEDSYNTH_SLURM_BUDGET": "170"],
                                    in: folder, timeout: 180)
        XCTAssertFalse(result.timedOut, "test_slurm.sh ran past its time limit:\n\(result.output)")
        if let line = result.output.split(separator: "\n").first(where: { $0.hasPrefix("SKIPPED:") }), result.status == 0 {
            throw XCTSkip("SLURM test " + line)
        }
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssert(result.output.contains("PASSED: SLURM array job"), result.output)
    }
}
