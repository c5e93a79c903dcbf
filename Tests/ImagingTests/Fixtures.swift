import Foundation
import TestSupport

/// A committed fixture file (Tests/ImagingTests/Fixtures, made by scripts/fixtures/make_imaging_fixtures.py).
func fixtureURL(_ name: String) -> URL {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
}

/// Expected decoded samples of a fixture, from Fixtures/expected.json.
struct ExpectedFixture: Decodable {
    let width: Int
    let height: Int
    let channels: Int
    let bitDepth: Int
    let samples: [UInt16]
}

func expectedFixtures() throws -> [String: ExpectedFixture] {
    let data = try Data(contentsOf: fixtureURL("expected.json"))
    return try JSONDecoder().decode([String: ExpectedFixture].self, from: data)
}
