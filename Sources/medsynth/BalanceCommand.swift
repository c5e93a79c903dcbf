import ArgumentParser
import Foundation
import Engine
import Workflows

struct Balance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Class-balance a dataset: keep the real images, add exactly enough synthetic ones per class.",
        discussion: """
        With --model, missing images come from a conditional generator (`generate --class`). With --composite,
        lesions are blended into the healthy class's images to fill the lesion class. Writes OUT/<class>/ with
        real files (hard-linked or copied, names kept) and synthetic_* files, and OUT/manifest.jsonl marking
        each file real or synthetic with its source and seed. --dry-run prints the plan only.
        """)

    @Option(help: "Dataset folder, one subfolder per class.") var data: String
    @Option(help: "Output folder (must not be inside --data).") var out: String
    @Option(help: "Conditional generator: run folder or checkpoint.") var model: String?
    @Flag(help: "Fill the lesion class by compositing lesions into healthy images.") var composite = false
    @Option(help: "With --composite: folder of lesion patches (default: procedural lesions).") var lesions: String?
    @Option(help: "With --composite: the healthy class.") var healthyClass: String = "healthy"
    @Option(help: "With --composite: the class to fill.") var lesionClass: String = "lesion"
    @Option(help: "max, a count N, or a ratio r of the largest class.") var target: String = "max"
    @Option(help: "Seed for every synthetic image.") var seed: UInt64 = 0
    @Flag(help: "Print the plan (have, will add, method) and write nothing.") var dryRun = false
    @Option(help: "Progress display: human, json or none.") var progress: ProgressStyle = .human

    func validate() throws {
        guard (model != nil) != composite else { throw ValidationError("give exactly one of --model or --composite") }
    }

    func run() throws {
        let method: BalanceMethod = composite
            ? .composite(lesions: lesions.map { URL(fileURLWithPath: $0) }, healthyClass: healthyClass, lesionClass: lesionClass)
            : .model(model!)
        var request = BalanceRequest(data: URL(fileURLWithPath: data), out: URL(fileURLWithPath: out), method: method)
        request.target = try BalanceTarget(parsing: target)
        request.seed = seed
        let plan = dryRun ? try planBalance(request) : try runBalance(request, progress: progress)
        print("class".padding(toLength: 20, withPad: " ", startingAt: 0) + "  have  add  method")
        for row in plan {
            print(row.className.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: "  %4d  %3d  ", row.have, row.add) + row.method)
        }
        print(dryRun ? "dry run: nothing written" : "balanced dataset: \(out) (manifest.jsonl)")
    }
}

struct Manifest: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manifest tools for sharded runs.", subcommands: [ManifestMerge.self])
}

struct ManifestMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join manifest.shard-K-of-N.jsonl files into manifest.jsonl, checking nothing is missing or duplicated.")

    @Argument(help: "The folder the shards wrote into.") var folder: String
    @Option(help: "Number of samples (or images) the whole run must have.") var expect: Int?

    func run() throws {
        let report = try mergeManifests(in: URL(fileURLWithPath: folder), expect: expect)
        print("merged \(report.shards) shard manifest(s), \(report.lines) line(s): \(report.manifest.path)")
    }
}
