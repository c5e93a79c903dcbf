import ArgumentParser
import Foundation
import Workflows

struct Manifest: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manifest tools for sharded runs.", subcommands: [ManifestMerge.self])
}

struct ManifestMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join manifest.shard-K-of-N.jsonl files into manifest.jsonl, checking nothing is missing or duplicated.",
        discussion: """
        Works for `generate` (one line per sample_index) and `composite` (one line per lesion, by scan index \
        and instance). Fails, naming them, on missing shards, missing or duplicated items, files a line names \
        that do not exist, and shards run with different seeds or models.
        """)

    @Argument(help: "The folder the shards wrote into.") var folder: String
    @Option(help: "Number of samples (generate) or scans (composite) the whole run must have.") var expect: Int?

    func run() throws {
        let report = try mergeManifests(in: URL(fileURLWithPath: folder), expect: expect)
        print("merged \(report.shards) shard manifest(s): \(report.items) item(s), \(report.lines) line(s) -> \(report.manifest.path)")
    }
}
