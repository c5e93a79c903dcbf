import Foundation

/// A fresh, empty temporary folder for one test; removed by the caller's `defer`.
func makeTemporaryDirectory(_ label: String = #function) throws -> URL {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("medsynth-\(safe)-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A committed fixture file (Tests/ImagingTests/Fixtures, made by scripts/make_imaging_fixtures.py).
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
