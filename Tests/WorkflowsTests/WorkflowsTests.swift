import XCTest
import Foundation
@testable import Engine
@testable import Imaging
@testable import Generators
@testable import Workflows

/// healthy/ (6 disc "scans") and lesion/ (2), 48×48 8-bit.
func makeScans(_ root: URL, healthy: Int = 6, lesion: Int = 2) throws {
    var s = RandomStream(seed: 1)
    for (name, count) in [("healthy", healthy), ("lesion", lesion)] {
        let folder = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<count {
            var v = [Float](repeating: -1, count: 48 * 48)
            for y in 0..<48 { for x in 0..<48 where (x - 24) * (x - 24) + (y - 24) * (y - 24) < 400 { v[y * 48 + x] = 0.2 + 0.1 * s.normal() } }
            try writePNG(Image(floatCHW: v, width: 48, height: 48, channels: 1, bitDepth: 8), to: folder.appendingPathComponent("\(name)_\(i).png"))
        }
    }
}

func folderHash(_ url: URL) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)!
    for case let file as URL in e where !file.hasDirectoryPath { out[file.path] = try Data(contentsOf: file) }
    return out
}

func manifestLines(_ url: URL) throws -> [[String: Any]] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

final class WorkflowsTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory(); try makeScans(root.appendingPathComponent("data")) }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func testCompositeBalanceReachesTheTargetAndLeavesTheInputAlone() throws {
        let data = root.appendingPathComponent("data"), out = root.appendingPathComponent("balanced")
        let before = try folderHash(data)
        var request = BalanceRequest(data: data, out: out, method: .composite(lesions: nil, healthyClass: "healthy", lesionClass: "lesion"))
        request.seed = 4
        let plan = try planBalance(request)
        XCTAssertEqual(plan.map(\.add), [0, 4])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a dry run writes nothing")
        try runBalance(request, progress: .none)
        XCTAssertEqual(try folderHash(data), before, "the input folder must not change")
        let balanced = try ImageFolderDataset(root: out, imageSize: 8, channels: 1)
        XCTAssertEqual(balanced.countsPerClass, [6, 6])
        let lines = try manifestLines(out.appendingPathComponent("manifest.jsonl"))
        XCTAssertEqual(lines.filter { $0["source"] as? String == "synthetic" }.count, 4)
        XCTAssertEqual(lines.filter { $0["source"] as? String == "real" }.count, 8)
        request.target = .count(5)
        XCTAssertThrowsError(try planBalance(request)) { XCTAssert("\($0)".contains("below"), "\($0)") }
        request.target = .max
        request.out = data.appendingPathComponent("inside")
        XCTAssertThrowsError(try planBalance(request)) { XCTAssert("\($0)".contains("inside"), "\($0)") }
    }

    func testModelBalanceAndShardedGenerationMerge() throws {
        var r = TrainingRequest(data: root.appendingPathComponent("data").path)
        r.imageSize = 16; r.steps = 3; r.batchSize = 4; r.width = 8; r.conditional = true; r.checkpointEvery = 3
        let run = root.appendingPathComponent("gan")
        try trainGAN(r, out: run, resume: false, progress: .none)
        var request = BalanceRequest(data: root.appendingPathComponent("data"), out: root.appendingPathComponent("b"), method: .model(run.path))
        request.target = .count(7)
        try runBalance(request, progress: .none)
        XCTAssertEqual(try ImageFolderDataset(root: request.out, imageSize: 8, channels: 1).countsPerClass, [7, 7])
        // Shards 0..2 merged equal one unsharded run, file for file.
        var whole = GenerationRequest(model: run.path, count: 8, out: root.appendingPathComponent("whole"))
        whole.seed = 5
        try generateImages(whole, progress: .none)
        for k in 0..<3 {
            var part = GenerationRequest(model: run.path, count: 8, out: root.appendingPathComponent("sharded"))
            part.seed = 5; part.batchSize = 3; part.shard = Shard(index: k, count: 3)
            try generateImages(part, progress: .none)
        }
        let report = try mergeManifests(in: root.appendingPathComponent("sharded"), expect: 8)
        XCTAssertEqual(report.lines, 8)
        XCTAssertEqual(try String(contentsOf: report.manifest, encoding: .utf8), try String(contentsOf: whole.out.appendingPathComponent("manifest.jsonl"), encoding: .utf8))
        for i in 0..<8 {
            XCTAssertEqual(try Data(contentsOf: whole.out.appendingPathComponent(sampleFileName(i))),
                           try Data(contentsOf: root.appendingPathComponent("sharded").appendingPathComponent(sampleFileName(i))))
        }
        // Resume after an interrupted shard: delete some outputs, run again, nothing duplicated.
        try FileManager.default.removeItem(at: root.appendingPathComponent("sharded").appendingPathComponent(sampleFileName(4)))
        var again = GenerationRequest(model: run.path, count: 8, out: root.appendingPathComponent("sharded"))
        again.seed = 5; again.shard = Shard(index: 1, count: 3); again.resume = true
        let resumed = try generateImages(again, progress: .none)
        XCTAssertEqual(resumed.written, 1); XCTAssertEqual(resumed.skipped, 2)
        XCTAssertEqual(try mergeManifests(in: root.appendingPathComponent("sharded"), expect: 8).lines, 8)
        // A missing shard and an expected count beyond what exists are both named.
        try FileManager.default.removeItem(at: root.appendingPathComponent("sharded/manifest.shard-2-of-3.jsonl"))
        XCTAssertThrowsError(try mergeManifests(in: root.appendingPathComponent("sharded"))) { XCTAssert("\($0)".contains("2/3"), "\($0)") }
    }

    func testMergeDetectsDuplicates() throws {
        let folder = root.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("{\"sample_index\":0}\n{\"sample_index\":2}\n".utf8).write(to: folder.appendingPathComponent("manifest.shard-0-of-2.jsonl"))
        try Data("{\"sample_index\":1}\n{\"sample_index\":2}\n".utf8).write(to: folder.appendingPathComponent("manifest.shard-1-of-2.jsonl"))
        XCTAssertThrowsError(try mergeManifests(in: folder)) { XCTAssert("\($0)".contains("duplicated item(s) 2"), "\($0)") }
        try Data("{\"sample_index\":1}\n".utf8).write(to: folder.appendingPathComponent("manifest.shard-1-of-2.jsonl"))
        XCTAssertThrowsError(try mergeManifests(in: folder, expect: 4)) { XCTAssert("\($0)".contains("missing item(s) 3"), "\($0)") }
    }
}
