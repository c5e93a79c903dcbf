import XCTest
@testable import Engine
@testable import Layers
@testable import Generators
import TestSupport
import Core

/// Weights saved from the PyTorch reference load by name and give the same outputs.
final class ReferenceModelTests: XCTestCase {
    func fixture(_ name: String) throws -> SafetensorsFile {
        try readSafetensors(at: Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "safetensors")!)
    }

    func testDCGANMatchesReference() throws {
        let weights = try fixture("dcgan_ngf8"), io = try fixture("dcgan_ngf8_io")
        var s = RandomStream(seed: 0)
        let config = GANConfig(generatorWidth: 8, discriminatorWidth: 8)
        let g = DCGANGenerator(config, stream: &s), d = DCGANDiscriminator(config, stream: &s)
        try g.load(weights.tensors, source: "dcgan_ngf8", prefix: "G")
        try d.load(weights.tensors, source: "dcgan_ngf8", prefix: "D")
        XCTAssertEqual(g.parameterCount, 145_776)
        let z = Tensor(shape: [3, 100], data: io.tensors["z"]!.values)
        let x = Tensor(shape: [3, 1, 64, 64], data: io.tensors["x"]!.values)
        try withNoGrad {
            g.setTraining(false); d.setTraining(false)
            assertClose(g(z).data, io.tensors["g_eval"]!.values, 1e-4, "G eval")
            assertClose(d(x).data, io.tensors["d_eval"]!.values, 1e-4, "D eval")
            g.setTraining(true); d.setTraining(true)
            assertClose(g(z).data, io.tensors["g_train"]!.values, 1e-4, "G train-mode BatchNorm")
            assertClose(d(x).data, io.tensors["d_train"]!.values, 1e-4, "D train-mode BatchNorm")
            // And back out: our tensors written under the reference names reload identically.
            let round = try decodeSafetensors(try encodeSafetensors(g.safetensorsEntries(prefix: "G")), name: "round")
            XCTAssertEqual(Set(round.tensors.keys), Set(weights.tensors.keys.filter { $0.hasPrefix("G.") }))
        }
    }

    func testFullSizeParameterCountsMatchArchitecture() {
        var s = RandomStream(seed: 0)
        XCTAssertEqual(DCGANGenerator(GANConfig(), stream: &s).parameterCount, 3_574_656)
        XCTAssertEqual(DCGANDiscriminator(GANConfig(), stream: &s).parameterCount, 2_763_520)
        XCTAssertEqual(UNet(UNetConfig(numClasses: 2), stream: &s).parameterCount, 4_261_985)
    }

    func testUNetMatchesReference() throws {
        let weights = try fixture("unet_base8"), io = try fixture("unet_base8_io")
        var s = RandomStream(seed: 0)
        let unet = UNet(UNetConfig(imageSize: 32, baseWidth: 8, attentionResolutions: [4], numClasses: 2, timeFeatures: 8), stream: &s)
        try unet.load(weights.tensors, source: "unet_base8", prefix: "U")
        XCTAssertEqual(Set(unet.namedTensors().map { "U." + $0.name }), Set(weights.tensors.keys))
        let x = Tensor(shape: [2, 1, 32, 32], data: io.tensors["x"]!.values)
        let out = withNoGrad { unet(x, timesteps: io.tensors["t"]!.values.map { Int($0) }, labels: io.tensors["y"]!.values.map { Int($0) }) }
        assertClose(out.data, io.tensors["out"]!.values, 1e-4, "UNet output")
    }

    func testDCGANShapesForOtherSizesAndConditioning() {
        var s = RandomStream(seed: 5)
        for size in [32, 128] {
            let config = GANConfig(imageSize: size, channels: 3, generatorWidth: 4, discriminatorWidth: 4, numClasses: 2)
            let g = DCGANGenerator(config, stream: &s), d = DCGANDiscriminator(config, stream: &s)
            let img = withNoGrad { g(Tensor(randomNormal: [2, 100], stream: &s), labels: [0, 1]) }
            XCTAssertEqual(img.shape, [2, 3, size, size])
            XCTAssertEqual(withNoGrad { d(img, labels: [1, 0]) }.shape, [2])
        }
    }
}
