import XCTest
import Foundation
@testable import Engine
@testable import Layers
@testable import Imaging
@testable import Generators
import TestSupport
import Core

/// A two-class toy dataset: "bright" slices around +0.6 and "dark" ones around −0.6, with a blob,
/// written as 8-bit PNGs.
func makeToyDataset(in root: URL, perClass: Int = 12, size: Int = 16, seed: UInt64 = 7) throws {
    var stream = RandomStream(seed: seed)
    for (name, level) in [("bright", Float(0.6)), ("dark", Float(-0.6))] {
        let folder = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<perClass {
            var values = [Float](repeating: 0, count: size * size)
            let cx = Float(size) / 2 + stream.uniform(-3, 3), cy = Float(size) / 2 + stream.uniform(-3, 3)
            for y in 0..<size { for x in 0..<size {
                let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                values[y * size + x] = max(-1, min(1, level + (d < 4 ? 0.3 : 0) + 0.05 * stream.normal()))
            } }
            try writePNG(Image(floatCHW: values, width: size, height: size, channels: 1, bitDepth: 8),
                         to: folder.appendingPathComponent(String(format: "%@_%02d.png", name, i)))
        }
    }
}

final class GANTrainingTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws {
        root = try makeTemporaryDirectory()
        try makeToyDataset(in: root.appendingPathComponent("data"))
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func request(steps: Int, conditional: Bool = false) -> TrainingRequest {
        var r = TrainingRequest(data: root.appendingPathComponent("data").path)
        r.imageSize = 16; r.steps = steps; r.batchSize = 8; r.seed = 11; r.width = 8
        r.conditional = conditional; r.checkpointEvery = 4; r.sampleEvery = 100
        return r
    }

    func testTinyGANTrainsWithFiniteMovingLosses() throws {
        let out = root.appendingPathComponent("run")
        let result = try trainGAN(request(steps: 30), out: out, resume: false, progress: .none)
        XCTAssertEqual(result.finalStep, 30)
        let rows = try String(contentsOf: RunFolder(out).losses, encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(rows.count, 30)
        let lossD = rows.map { Float($0.split(separator: ",")[1])! }
        XCTAssert(lossD.allSatisfy { $0.isFinite })
        // D learns to separate quickly: its loss in the last steps is below the first step's.
        XCTAssertLessThan(lossD.suffix(5).reduce(0, +) / 5, lossD[0])
        for file in ["model.safetensors", "run.json", "checkpoints/latest.safetensors", "samples/step-000030.png"] {
            XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }
    }

    func testConditionalGenerationHonoursTheLabel() throws {
        let out = root.appendingPathComponent("cond")
        // Differentiable augmentation (the small-data default) keeps D from memorising 24 images.
        let r = request(steps: 400, conditional: true)
        var options = GANTrainingOptions()
        options.emaDecay = 0.9
        try trainGAN(r, options: options, out: out, resume: false, progress: .none)
        var means: [String: Float] = [:]
        for name in ["bright", "dark"] {
            var g = GenerationRequest(model: out.path, count: 16, out: root.appendingPathComponent("gen-\(name)"))
            g.className = name
            try generateImages(g, progress: .none)
            var total: Float = 0
            for i in 0..<16 {
                let image = try readImage(at: g.out.appendingPathComponent(sampleFileName(i)))
                total += image.toFloatCHW().reduce(0, +) / Float(image.samples.count)
            }
            means[name] = total / 16
        }
        XCTAssertGreaterThan(means["bright"]! - means["dark"]!, 0.3, "class means \(means)")
    }

    func testResumeGivesTheSameParametersAsAnUninterruptedRun() throws {
        let straight = root.appendingPathComponent("straight"), split = root.appendingPathComponent("split")
        try trainGAN(request(steps: 10), out: straight, resume: false, progress: .none)
        try trainGAN(request(steps: 6), out: split, resume: false, progress: .none)
        try trainGAN(request(steps: 10), out: split, resume: true, progress: .none)
        let a = try readSafetensors(at: RunFolder(straight).latestCheckpoint)
        let b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        XCTAssertEqual(a.metadata[CheckpointKey.step], "10")
        XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]!.values, name) }
        let csv = try String(contentsOf: RunFolder(split).losses, encoding: .utf8)
        XCTAssertEqual(csv, try String(contentsOf: RunFolder(straight).losses, encoding: .utf8))
    }

    /// A run that stopped at step 6 and is finished with `--resume --lr-decay-steps 4` ends where
    /// a run started with the decay does (the decay only touches the last 4 of 10 steps), and the
    /// decay does change the weights.
    func testLearningRateDecayFinishesAResumedRunLikeAStraightOne() throws {
        var decayed = GANTrainingOptions()
        decayed.learningRateDecaySteps = 4
        let straight = root.appendingPathComponent("straight"), split = root.appendingPathComponent("split")
        let constant = root.appendingPathComponent("constant")
        try trainGAN(request(steps: 10), options: decayed, out: straight, resume: false, progress: .none)
        try trainGAN(request(steps: 6), out: split, resume: false, progress: .none)
        try trainGAN(request(steps: 10), options: decayed, out: split, resume: true, progress: .none)
        try trainGAN(request(steps: 10), out: constant, resume: false, progress: .none)
        let a = try readSafetensors(at: RunFolder(straight).latestCheckpoint)
        let b = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        let c = try readSafetensors(at: RunFolder(constant).latestCheckpoint)
        for (name, tensor) in a.tensors { XCTAssertEqual(tensor.values, b.tensors[name]!.values, name) }
        XCTAssertTrue(a.tensors.contains { name, tensor in name.hasPrefix("G.") && tensor.values != c.tensors[name]!.values },
                      "the decayed run's G equals the constant-rate run's")
        let saved = try JSONDecoder().decode(GANTrainingOptions.self, from: Data(b.metadata[GANTrainer.optionsKey]!.utf8))
        XCTAssertEqual(saved.learningRateDecaySteps, 4)
    }

    func testSamplesDoNotDependOnBatchSizeOrShards() throws {
        let out = root.appendingPathComponent("run")
        try trainGAN(request(steps: 4), out: out, resume: false, progress: .none)
        var whole = GenerationRequest(model: out.path, count: 7, out: root.appendingPathComponent("whole"))
        whole.batchSize = 7
        try generateImages(whole, progress: .none)
        for k in 0..<3 {
            var part = GenerationRequest(model: out.path, count: 7, out: root.appendingPathComponent("shards"))
            part.batchSize = 1
            part.shard = Shard(index: k, count: 3)
            try generateImages(part, progress: .none)
        }
        for i in 0..<7 {
            let a = try Data(contentsOf: whole.out.appendingPathComponent(sampleFileName(i)))
            let b = try Data(contentsOf: root.appendingPathComponent("shards").appendingPathComponent(sampleFileName(i)))
            XCTAssertEqual(a, b, "sample \(i)")
        }
    }

    func testClearErrorsBeforeWork() throws {
        let out = root.appendingPathComponent("run")
        try trainGAN(request(steps: 2), out: out, resume: false, progress: .none)
        var unknown = GenerationRequest(model: out.path, count: 2, out: root.appendingPathComponent("g"))
        unknown.className = "tumour"
        XCTAssertThrowsError(try generateImages(unknown, progress: .none)) { XCTAssert("\($0)".contains("unconditional") || "\($0)".contains("tumour"), "\($0)") }
        let file = root.appendingPathComponent("afile")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try generateImages(GenerationRequest(model: out.path, count: 2, out: file), progress: .none)) {
            XCTAssert("\($0)".contains("is a file"), "\($0)")
        }
        let foreign = root.appendingPathComponent("foreign.safetensors")
        try writeSafetensors([SafetensorsEntry(name: "w", shape: [1], values: [1])], metadata: ["medsynth.kind": "dcgan", "medsynth.config": "{}"], to: foreign)
        XCTAssertThrowsError(try generateImages(GenerationRequest(model: foreign.path, count: 2, out: root.appendingPathComponent("g2")), progress: .none)) {
            XCTAssert("\($0)".contains("foreign.safetensors"), "\($0)")
        }
        // Starting over an existing run without --resume is refused.
        XCTAssertThrowsError(try trainGAN(request(steps: 2), out: out, resume: false, progress: .none))
    }

    func testNonFiniteLossStopsAndKeepsTheLastGoodCheckpoint() throws {
        let out = root.appendingPathComponent("nan")
        try trainGAN(request(steps: 4), out: out, resume: false, progress: .none)
        let before = try Data(contentsOf: RunFolder(out).latestCheckpoint)
        // Poison the saved state: a NaN weight makes the next step's losses non-finite.
        var state = try readSafetensors(at: RunFolder(out).latestCheckpoint)
        var conv = state.tensors["D.net.0.weight"]!
        conv.values[0] = .nan
        state.tensors["D.net.0.weight"] = conv
        let entries = state.tensors.map { SafetensorsEntry(name: $0.key, shape: $0.value.shape, values: $0.value.values, dtype: state.dtypes[$0.key] == .i64 ? .i64 : .f32) }
        try writeSafetensors(entries, metadata: state.metadata, to: RunFolder(out).latestCheckpoint)
        let poisoned = try Data(contentsOf: RunFolder(out).latestCheckpoint)
        XCTAssertNotEqual(before, poisoned)
        XCTAssertThrowsError(try trainGAN(request(steps: 8), out: out, resume: true, progress: .none)) { error in
            XCTAssert("\(error)".contains("became NaN") && "\(error)".contains("latest.safetensors"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: RunFolder(out).latestCheckpoint), poisoned, "a failed step must not overwrite the checkpoint")
    }

    /// A resumed run reads its settings back from the checkpoint: out-of-bounds values there (a
    /// damaged or crafted file) give one error naming the file, with the bounds of fresh input,
    /// before any dataset is read or model built.
    func testResumeRefusesOutOfBoundsSavedSettings() throws {
        let out = root.appendingPathComponent("crafted")
        let latest = RunFolder(out).latestCheckpoint
        try FileManager.default.createDirectory(at: latest.deletingLastPathComponent(), withIntermediateDirectories: true)
        let options = try jsonString(GANTrainingOptions())
        let cases: [(String, (inout TrainingRequest) -> Void)] = [
            ("steps is -5", { $0.steps = -5 }),
            ("batch size is -3", { $0.batchSize = -3 }),
            ("batch size is 1000000000000", { $0.batchSize = 1_000_000_000_000 }),
            ("image size is 1000000", { $0.imageSize = 1_000_000 }),
            ("channels is 0", { $0.channels = 0 }),
            ("width is -1", { $0.width = -1 }),
            ("checkpoint interval is 0", { $0.checkpointEvery = 0 }),
            ("sample grid interval is -1", { $0.sampleEvery = -1 }),
        ]
        for (message, craft) in cases {
            var saved = request(steps: 4)
            craft(&saved)
            try writeSafetensors([], metadata: [CheckpointKey.kind: GANTrainer.kind.rawValue, CheckpointKey.training: try jsonString(saved),
                                                GANTrainer.optionsKey: options, CheckpointKey.step: "2"], to: latest)
            assertMedSynthError(["latest.safetensors", "invalid training settings", message]) {
                try trainGAN(request(steps: 8), out: out, resume: true, progress: .none)
            }
        }
        // Valid settings but a negative saved step.
        try writeSafetensors([], metadata: [CheckpointKey.kind: GANTrainer.kind.rawValue, CheckpointKey.training: try jsonString(request(steps: 4)),
                                            GANTrainer.optionsKey: options, CheckpointKey.step: "-7"], to: latest)
        assertMedSynthError(["latest.safetensors", "step is -7"]) {
            try trainGAN(request(steps: 8), out: out, resume: true, progress: .none)
        }
        // Fresh settings get the same bounds.
        var fresh = request(steps: 4)
        fresh.batchSize = 5000
        assertMedSynthError(["batch size is 5000", "1...4096"]) {
            try trainGAN(fresh, out: root.appendingPathComponent("fresh"), resume: false, progress: .none)
        }
    }
}
