import XCTest
import Core
import TestSupport
import Foundation
@testable import Engine
@testable import Generators

/// Issue 16: model files whose config is out of bounds (scripts/fixtures/make_hostile_fixtures.py)
/// give one error naming the file and the field, before any model is built (they crashed with an
/// out-of-bounds memset, a division by zero, or allocated gigabytes).
final class ConfigValidationTests: XCTestCase {
    func hostile(_ name: String) -> URL {
        Bundle.module.url(forResource: "Fixtures/hostile/\(name)", withExtension: "safetensors")!
    }

    func assertRefused<T>(_ name: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                          _ load: (URL) throws -> T) {
        XCTAssertThrowsError(try load(hostile(name)), file: file, line: line) { error in
            let message = (error as? MedSynthError)?.message ?? "not a MedSynthError: \(error)"
            for fragment in [name + ".safetensors"] + fragments {
                XCTAssert(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
            }
        }
    }

    func testHostileCheckpointConfigsAreRefused() {
        assertRefused("dcgan_latent_negative", ["latentDim is -1000"]) { try loadModel(from: $0) }
        assertRefused("dcgan_width_negative", ["generatorWidth is -8"]) { try loadModel(from: $0) }
        assertRefused("dcgan_width_huge", ["generatorWidth is 1000000"]) { try loadModel(from: $0) }
        assertRefused("unet_groups_zero", ["groups is 0"]) { try loadDiffusionSampler(from: $0) }
        assertRefused("unet_width_negative", ["baseWidth is -8"]) { try loadDiffusionSampler(from: $0) }
        assertRefused("diffusion_timesteps_negative", ["timesteps is -5"]) { try loadDiffusionSampler(from: $0) }
    }

    func testBoundsAcceptTheShippedShapesAndRefuseTooManyWeights() throws {
        XCTAssertNoThrow(try GANConfig().validate())
        XCTAssertNoThrow(try UNetConfig().validate())
        XCTAssertNoThrow(try DiffusionTrainingOptions().validate())
        // Every field within its own bounds, but the whole model above 2^28 weights.
        XCTAssertThrowsError(try GANConfig(imageSize: 128, generatorWidth: 1024).validate()) { error in
            XCTAssert("\(error)".contains("above the limit of 268435456"), "\(error)")
        }
        XCTAssertThrowsError(try UNetConfig(baseWidth: 1024, channelMultipliers: [1, 2, 4, 8], groups: 8).validate())
    }
}
