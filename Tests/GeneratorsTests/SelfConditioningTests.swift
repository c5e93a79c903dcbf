import XCTest
import Foundation
@testable import Imaging
@testable import Generators
@testable import Layers
import TestSupport
import Core

/// Self-conditioned GANs (Liu et al. 2020): clusters of each class, cluster-conditioned training,
/// samples that draw their cluster by the clusters' shares and stay the same in any batch.
final class SelfConditioningTests: XCTestCase {
    var root: URL!
    override func setUpWithError() throws { root = try makeTemporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// One class of two kinds of image (a blob on the left or on the right, `left` and `right` of
    /// each, with noise), and a second class of one image.
    func makeTwoKindData(left: Int, right: Int) throws -> URL {
        let data = root.appendingPathComponent("twokinds")
        var stream = RandomStream(seed: 11)
        let size = 16
        for (folder, kinds) in [("a", [(4, left), (12, right)]), ("b", [(8, 1)])] {
            let dir = data.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var n = 0
            for (cx, count) in kinds {
                for _ in 0..<count {
                    var values = [Float](repeating: -0.8, count: size * size)
                    for y in 0..<size { for x in 0..<size where abs(x - cx) < 3 && abs(y - 8) < 5 {
                        values[y * size + x] = 0.7 + 0.1 * stream.normal()
                    } }
                    try writePNG(Image(floatCHW: values, width: size, height: size, channels: 1, bitDepth: 8),
                                 to: dir.appendingPathComponent(String(format: "img_%02d.png", n)))
                    n += 1
                }
            }
        }
        return data
    }

    func testClustersSeparateTheKindsOfImageWithTheirSharesAndAreDeterministic() throws {
        let dataset = try ImageFolderDataset(root: try makeTwoKindData(left: 5, right: 3), imageSize: 16, channels: 1)
        let clusters = try selfConditioningClusters(dataset, clustersPerClass: 2, conditional: true, seed: 3)
        XCTAssertEqual(try selfConditioningClusters(dataset, clustersPerClass: 2, conditional: true, seed: 3), clusters)
        // Class a: entries 0–4 (left) in one cluster, 5–7 (right) in the other.
        let a = Array(clusters.labels[0..<8])
        XCTAssertEqual(Set(a[0..<5]).count, 1, "\(a)"); XCTAssertEqual(Set(a[5..<8]).count, 1, "\(a)")
        XCTAssertNotEqual(a[0], a[5])
        XCTAssertTrue(a.allSatisfy { (0..<2).contains($0) }, "class a's labels are 0 and 1")
        XCTAssertEqual(clusters.weights[a[0]], 5 / 8, accuracy: 1e-6); XCTAssertEqual(clusters.weights[a[5]], 3 / 8, accuracy: 1e-6)
        // Class b has one image: one cluster holds it, the other is empty and never drawn.
        XCTAssertTrue((2..<4).contains(clusters.labels[8]))
        XCTAssertEqual(clusters.weights[2] + clusters.weights[3], 1, accuracy: 1e-6)
        XCTAssertEqual(clusters.weights[clusters.labels[8]], 1)
        // Unconditional: the whole set is one class with labels 0..<K.
        let whole = try selfConditioningClusters(dataset, clustersPerClass: 3, conditional: false, seed: 3)
        XCTAssertTrue(whole.labels.allSatisfy { (0..<3).contains($0) }); XCTAssertEqual(whole.weights.reduce(0, +), 1, accuracy: 1e-6)
    }

    func testSamplesDrawTheirClusterByWeightAndBadWeightsAreRefused() throws {
        var config = GANConfig(imageSize: 16, latentDim: 4, generatorWidth: 4, discriminatorWidth: 4, numClasses: 2, classNames: ["a", "b"], upsample: .resize)
        config.clustersPerClass = 3
        config.clusterWeights = [0, 1, 0, 0.25, 0, 0.75]
        try config.validate()
        XCTAssertEqual(config.conditioningClasses, 6)
        var stream = RandomStream(seed: 1)
        var counts = [Int](repeating: 0, count: 6)
        for i in 0..<4000 { counts[config.conditioningLabel(classIndex: i % 2, stream: &stream)!] += 1 }
        XCTAssertEqual(counts[1], 2000); XCTAssertEqual(counts[0] + counts[2] + counts[4], 0)
        XCTAssertEqual(Double(counts[5]) / 2000, 0.75, accuracy: 0.04)
        var wrongCount = config; wrongCount.clusterWeights = [1, 1, 1]
        XCTAssertThrowsError(try wrongCount.validate()) { XCTAssertTrue("\($0)".contains("3 cluster weights for 6 clusters"), "\($0)") }
        var allZero = config; allZero.clusterWeights = [0, 1, 0, 0, 0, 0]
        XCTAssertThrowsError(try allZero.validate()) { XCTAssertTrue("\($0)".contains("class 1's cluster weights"), "\($0)") }
        var huge = config; huge.clustersPerClass = Int.max
        XCTAssertThrowsError(try huge.validate()) { XCTAssertTrue("\($0)".contains("clustersPerClass"), "\($0)") }
        // A config from before self-conditioning decodes as one cluster per class.
        let old = #"{"imageSize":16,"channels":1,"latentDim":4,"generatorWidth":4,"discriminatorWidth":4,"numClasses":2,"classNames":["a","b"]}"#
        let decoded = try JSONDecoder().decode(GANConfig.self, from: Data(old.utf8))
        XCTAssertEqual(decoded.clustersPerClass, 1); XCTAssertEqual(decoded.conditioningClasses, 2)
        let oldOptions = try JSONDecoder().decode(GANTrainingOptions.self, from: Data(#"{"learningRate":0.0002}"#.utf8))
        XCTAssertEqual(oldOptions.selfConditionClusters, 1, "a run from before self-conditioning resumes without it")
    }

    /// A self-conditioned run trains on cluster labels, resumes to the same bits, and its samples
    /// are the same whatever the batch size.
    func testSelfConditionedRunResumesExactlyAndSamplesIndependentOfBatch() throws {
        let data = try makeTwoKindData(left: 6, right: 6)
        var request = TrainingRequest(data: data.path)
        request.imageSize = 16; request.batchSize = 4; request.seed = 2; request.width = 4
        request.conditional = true; request.checkpointEvery = 1000; request.sampleEvery = 1000
        var options = GANTrainingOptions()
        options.selfConditionClusters = 2
        let straight = root.appendingPathComponent("straight"), split = root.appendingPathComponent("split")
        request.steps = 4
        try trainGAN(request, options: options, out: straight, resume: false, progress: .none)
        request.steps = 2
        try trainGAN(request, options: options, out: split, resume: false, progress: .none)
        request.steps = 4
        try trainGAN(request, options: GANTrainingOptions(), out: split, resume: true, progress: .none)
        let x = try readSafetensors(at: RunFolder(straight).latestCheckpoint), y = try readSafetensors(at: RunFolder(split).latestCheckpoint)
        for (name, tensor) in x.tensors { XCTAssertEqual(tensor.values, y.tensors[name]?.values, name) }
        // G's input holds the latent and one-hot of 2 classes × 2 clusters; D's projection 4 rows.
        XCTAssertEqual(x.tensors["G.net.0.weight"]?.shape.first, 100 + 4)
        XCTAssertEqual(x.tensors["D.embed.weight"]?.shape.first, 4)
        guard case .dcgan(let generator) = try loadModel(from: RunFolder(straight).model) else { return XCTFail("not a DCGAN") }
        XCTAssertEqual(generator.config.clustersPerClass, 2); XCTAssertEqual(generator.config.conditioningClasses, 4)
        XCTAssertEqual(generator.config.clusterWeights, [0.5, 0.5, 1, 0], "class a: two kinds of 6; class b: one image")
        var one = GenerationRequest(model: RunFolder(straight).model.path, count: 6, out: root.appendingPathComponent("one"))
        one.className = "a"; one.seed = 9; one.batchSize = 1
        var many = one; many.out = root.appendingPathComponent("many"); many.batchSize = 6
        try generateImages(one, progress: .none); try generateImages(many, progress: .none)
        for i in 0..<6 {
            XCTAssertEqual(try Data(contentsOf: one.out.appendingPathComponent(sampleFileName(i))),
                           try Data(contentsOf: many.out.appendingPathComponent(sampleFileName(i))), "sample \(i)")
        }
    }
}
