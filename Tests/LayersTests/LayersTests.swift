import XCTest
import Foundation
@testable import Engine
@testable import Layers
import TestSupport
import Core

final class SafetensorsTests: XCTestCase {
    func fixture(_ name: String) -> URL {
        Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!
    }

    func testReadsFileWrittenByPythonSafetensors() throws {
        let file = try readSafetensors(at: fixture("safetensors_from_python.safetensors"))
        let conv = try XCTUnwrap(file.tensors["conv.weight"])
        XCTAssertEqual(conv.shape, [2, 3, 2, 2])
        XCTAssertEqual(conv.values, (0..<24).map { Float($0) / 8 - 1 })
        XCTAssertEqual(file.tensors["half"]?.values, [0.5, -2.0, 1024.0, 3.140625])
        XCTAssertEqual(file.dtypes["half"], .f16)
        XCTAssertEqual(file.tensors["bn.num_batches_tracked"]?.values, [7])
        XCTAssertEqual(file.tensors["bn.num_batches_tracked"]?.shape, [])
        XCTAssertEqual(file.tensors["double"]?.values, [1.25, -3.5])
        XCTAssertEqual(file.metadata["made_by"], "make_layers_golden.py")
    }

    func testRoundTripAllDTypes() throws {
        let dir = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("t.safetensors")
        let values: [Float] = [0, 1.5, -2.25, 1000, 0.0009765625, -65504]
        try writeSafetensors([
            SafetensorsEntry(name: "f32", shape: [2, 3], values: values),
            SafetensorsEntry(name: "f16", shape: [6], values: values, dtype: .f16),
            SafetensorsEntry(name: "i64", shape: [], values: [42], dtype: .i64),
        ], metadata: ["config": "{\"a\":1}"], to: url)
        let back = try readSafetensors(at: url)
        XCTAssertEqual(back.tensors["f32"]?.values, values)
        XCTAssertEqual(back.tensors["f32"]?.shape, [2, 3])
        XCTAssertEqual(back.tensors["f16"]?.values, values)   // all exactly representable in half precision
        XCTAssertEqual(back.tensors["i64"]?.values, [42])
        XCTAssertEqual(back.metadata["config"], "{\"a\":1}")
        // The header is 8-byte aligned, like the reference writer's.
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(Int(bytes[0]) % 8, 0)
    }

    func testTruncatedAndForeignFilesAreRefused() throws {
        let dir = try makeTemporaryDirectory(); defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Data(contentsOf: fixture("safetensors_from_python.safetensors"))
        for (label, data) in [("truncated", good.prefix(good.count - 5)), ("header only", good.prefix(20)), ("empty", Data()),
                              ("text", Data("hello, this is not a checkpoint".utf8))] {
            let url = dir.appendingPathComponent("\(label).safetensors")
            try data.write(to: url)
            XCTAssertThrowsError(try readSafetensors(at: url), label) { error in
                XCTAssert("\(error)".contains(url.path), "error should name the file: \(error)")
            }
        }
    }

    func testModuleLoadRefusesMismatchedCheckpoint() throws {
        var s = RandomStream(seed: 1)
        let conv = Conv2d(3, 4, kernel: 3, stream: &s)
        let other = Conv2d(3, 5, kernel: 3, stream: &s)
        let state = try decodeSafetensors(try encodeSafetensors(other.safetensorsEntries()), name: "other.safetensors")
        XCTAssertThrowsError(try conv.load(state.tensors, source: "other.safetensors")) { error in
            XCTAssert("\(error)".contains("other.safetensors") && "\(error)".contains("shape"), "\(error)")
        }
        let same = try decodeSafetensors(try encodeSafetensors(conv.safetensorsEntries()), name: "same")
        let fresh = Conv2d(3, 4, kernel: 3, stream: &s)
        try fresh.load(same.tensors, source: "same")
        XCTAssertEqual(fresh.weight.data, conv.weight.data)
        XCTAssertEqual(fresh.bias!.data, conv.bias!.data)
    }
}

final class OptimizerTests: XCTestCase {
    func testAdamAndAdamWMatchTorch() throws {
        let url = Bundle.module.url(forResource: "Fixtures/adam_golden", withExtension: "json")!
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let grads = (golden["grads"] as! [[Double]]).map { $0.map(Float.init) }
        let initial = (golden["initial"] as! [Double]).map(Float.init)
        for (name, make) in [("adam", { (p: Tensor) in Adam([p], learningRate: 0.1, beta1: 0.5, beta2: 0.999) }),
                             ("adamw", { (p: Tensor) in Adam.adamW([p], learningRate: 0.1, weightDecay: 0.1) })] {
            let p = Tensor(shape: [3], data: initial, requiresGrad: true)
            let opt = make(p)
            for (step, expected) in (golden[name] as! [[Double]]).enumerated() {
                p.grad = grads[step]
                opt.update()
                for i in 0..<3 { XCTAssertEqual(Double(p.data[i]), expected[i], accuracy: 1e-6, "\(name) step \(step)") }
            }
        }
    }

    /// The update runs eight lanes at a time; each value must round exactly as Algorithm 1 written
    /// element by element does (a length of 8k + 5 covers the lanes and the tail).
    func testVectorisedUpdateHasTheScalarFormulasBits() {
        var s = RandomStream(seed: 4)
        let count = 8 * 5 + 5
        let p = Tensor(randomNormal: [count], stream: &s, requiresGrad: true)
        let opt = Adam.adamW([p], learningRate: 3e-3, beta1: 0.8, beta2: 0.95, weightDecay: 0.02)
        var w = p.data, m = [Float](repeating: 0, count: count), v = m
        for step in 1...4 {
            let g = (0..<count).map { _ in s.normal() * 0.1 }
            p.grad = g
            opt.update()
            let c1 = 1 - powf(0.8, Float(step)), c2 = 1 - powf(0.95, Float(step))
            let stepSize = Float(3e-3) / c1, decay = 1 - Float(3e-3) * 0.02, root = c2.squareRoot()
            for i in 0..<count {
                m[i] = 0.8 * m[i] + (1 - 0.8) * g[i]
                v[i] = 0.95 * v[i] + (1 - 0.95) * g[i] * g[i]
                w[i] = w[i] * decay - stepSize * m[i] / (v[i].squareRoot() / root + 1e-8)
            }
            XCTAssertEqual(p.data, w, "step \(step)")
            XCTAssertEqual(opt.m[0], m); XCTAssertEqual(opt.v[0], v)
        }
    }

    func testAdamFitsALinearRegression() {
        var s = RandomStream(seed: 2)
        let layer = Linear(3, 1, stream: &s)
        let x = Tensor(randomNormal: [64, 3], stream: &s)
        let truth: [Float] = [1.5, -2, 0.5]
        let y = Tensor(shape: [64, 1], data: (0..<64).map { i in (0..<3).map { x.data[i * 3 + $0] * truth[$0] }.reduce(0, +) + 0.25 })
        let opt = Adam(layer.parameters(), learningRate: 0.05)
        var last: Float = .infinity
        for _ in 0..<400 {
            layer.zeroGrad()
            let loss = mseLoss(layer(x), y)
            loss.backward()
            opt.update()
            last = loss.scalar
        }
        XCTAssertLessThan(last, 1e-4)
        for i in 0..<3 { XCTAssertEqual(layer.weight.data[i], truth[i], accuracy: 0.01) }
        XCTAssertEqual(layer.bias!.data[0], 0.25, accuracy: 0.01)
    }

    func testEMAFollowsTheDefinition() {
        var s = RandomStream(seed: 3)
        let layer = Linear(2, 2, stream: &s)
        let ema = ParameterEMA(layer, decay: 0.9)
        let start = layer.weight.data
        for i in 0..<layer.weight.count { layer.weight.data[i] += 1 }
        ema.update(from: layer)
        let copy = Linear(2, 2, stream: &s)
        ema.copy(into: copy)
        for i in 0..<start.count { XCTAssertEqual(copy.weight.data[i], start[i] + 0.1, accuracy: 1e-6) }
    }

    func testBatchNormLayerStateNamesMatchPyTorch() {
        let bn = BatchNorm2d(4)
        XCTAssertEqual(bn.namedTensors().map(\.name), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
        XCTAssertEqual(bn.parameters().count, 2)
        _ = bn(Tensor(randomNormal: [2, 4, 2, 2], stream: &RandomStreamBox.stream))
        XCTAssertEqual(bn.batchesTracked.data, [1])
    }
}

enum RandomStreamBox { static var stream = RandomStream(seed: 4) }
