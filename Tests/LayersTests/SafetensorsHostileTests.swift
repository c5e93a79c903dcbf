import XCTest
import Core
import TestSupport
import Foundation
@testable import Engine
@testable import Layers

/// Issue 16's crafted safetensors headers (scripts/fixtures/make_hostile_fixtures.py): shapes whose
/// product wraps around, fractional or negative sizes are refused, never trusted.
final class SafetensorsHostileTests: XCTestCase {
    func hostile(_ name: String) -> URL {
        Bundle.module.url(forResource: "Fixtures/hostile/\(name)", withExtension: nil)!
    }

    func assertRefused(_ name: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try readSafetensors(at: hostile(name)), file: file, line: line) { error in
            let message = (error as? MedSynthError)?.message ?? "not a MedSynthError: \(error)"
            XCTAssert(message.contains(name) && message.contains(fragment), message, file: file, line: line)
        }
    }

    func testShapesThatOverflowOrAreNotSizesAreRefused() {
        assertRefused("shape_overflow.safetensors", "impossible shape [4294967296, 4294967296]")
        assertRefused("shape_fraction.safetensors", "malformed header entry")
        assertRefused("shape_negative.safetensors", "malformed header entry")
    }

    func testExactSizes() {
        XCTAssertEqual(exactSizes([NSNumber(value: 3), NSNumber(value: 0)]), [3, 0])
        XCTAssertNil(exactSizes([NSNumber(value: 2.5)]))
        XCTAssertNil(exactSizes([NSNumber(value: -1)]))
        XCTAssertNil(exactSizes([NSNumber(value: 1e30)]))
        XCTAssertNil(exactSizes(["3"]))
    }
}
