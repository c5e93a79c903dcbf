import ArgumentParser
import Foundation
import Core
import Engine
import Evaluation

struct Utility: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Does adding synthetic images help a classifier? Real vs real + synthetic over several seeds, with confidence intervals.",
        discussion: """
        Trains the fixed small CNN of `evaluate --utility` (Sources/Evaluation/Utility.swift) on the real images \
        of --data, and on them plus each --synthetic folder, for the same number of steps, and tests every model on \
        held-out real images: --test, or per seed a stratified --test-fraction of --data. Repeated for --seeds seeds \
        (split, initialisation and batch order change with the seed); reports balanced accuracy and per-class recall \
        as mean and 95% Student-t interval over seeds, and each synthetic set's paired gain over real only. \
        A `balance` output folder can be given as --synthetic: files its manifest marks as real are left out. \
        For an honest number, --test should hold images that neither the generator nor the balancer saw. \
        Each row also prints its most frequent misses; OUT/utility.json holds every row's confusion matrix \
        (summed over seeds) and, with --test, the test files any seed got wrong with each seed's prediction.
        """)

    @Option(help: "Real labelled images, one subfolder per class.") var data: String
    @Option(help: "Synthetic images (class subfolders named as in --data); repeat to compare several sets.") var synthetic: [String]
    @Option(help: "Fixed held-out real test images (class subfolders); default: split from --data per seed.") var test: String?
    @Option(help: "Without --test: fraction of each class held out for testing.") var testFraction: Double = 0.25
    @Option(help: "Repetitions (seeds seed, seed+1, ...).") var seeds: Int = 5
    @Option(help: "First seed.") var seed: UInt64 = 0
    @Option(help: "Epochs (passes over the real training images) of every classifier.") var epochs: Int = 15
    @Option(help: "Batch size.") var batch: Int = 32
    @Option(help: "Adam learning rate.") var learningRate: Double = 1e-3
    @Option(help: "Output folder for utility.json.") var out: String = "utility"
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if synthetic.isEmpty { throw ValidationError("give at least one --synthetic folder") }
        if seeds < 1 { throw ValidationError("--seeds must be at least 1") }
        if !(testFraction > 0 && testFraction < 1) { throw ValidationError("--test-fraction must be in (0, 1)") }
        if epochs < 1 || batch < 1 { throw ValidationError("--epochs and --batch must be at least 1") }
        if !(learningRate > 0) { throw ValidationError("--learning-rate must be positive") }
    }

    func run() throws {
        runtime.apply()
        var request = UtilityStudyRequest(data: URL(fileURLWithPath: data), synthetic: synthetic.map { URL(fileURLWithPath: $0) })
        request.test = test.map { URL(fileURLWithPath: $0) }
        request.testFraction = testFraction
        request.repetitions = seeds
        request.seed = seed
        request.settings.epochs = epochs
        request.settings.batch_size = batch
        request.settings.learning_rate = learningRate
        var reporters: [String: ProgressReporter] = [:]
        let style = runtime.progress
        let report = try runUtilityStudy(request) { name, step, total, loss in
            let r = reporters[name] ?? ProgressReporter(label: "utility \(name)", total: total, unit: "step", style: style)
            reporters[name] = r
            r.update(done: step, items: step * batch, values: [("loss", loss)])
        }
        let folder = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try writeAtomically(try encoder.encode(report), to: folder.appendingPathComponent("utility.json"))
        print(utilityStudySummary(report))
        print("report: \(folder.appendingPathComponent("utility.json").path)")
    }
}
