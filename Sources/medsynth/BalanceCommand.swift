import ArgumentParser
import Foundation
import Core
import Engine
import Generators
import Workflows

struct Balance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Class-balance a dataset: keep the real images, add exactly enough synthetic ones per class.",
        discussion: """
        With --model, the missing images of each class come from a conditional generator (`generate --class`). \
        With --composite, lesions (procedural, or from --lesions) are blended into the healthy class's images to \
        fill the lesion class, which is created if the data has none. OUT/<class>/ gets the real files \
        (hard-linked, or copied; names kept) and synthetic_NNNNNN.png files; OUT/manifest.jsonl marks each file \
        real or synthetic with its origin, seed and model; composites also get masks in OUT/.masks/<class>/. \
        The same --seed gives the same files. --dry-run prints the plan only.
        """)

    @Option(help: "Dataset folder, one subfolder per class.") var data: String
    @Option(help: "Output folder (new or empty; not inside --data).") var out: String
    @Option(help: "Conditional generator: run folder or checkpoint (GAN or diffusion).") var model: String?
    @Flag(help: "Fill the lesion class by compositing lesions into healthy images.") var composite = false
    @Option(help: "With --composite: folder of lesion patches (default: procedural lesions).") var lesions: String?
    @Option(help: "With --composite: the class whose images receive lesions.") var healthyClass: String = "healthy"
    @Option(help: "With --composite: the class to fill.") var lesionClass: String = "lesion"
    @Option(help: "Images per class: max (the largest class), a count N, or a ratio r in (0, 1] of the largest.") var target: BalanceTarget = .max
    @Option(help: "Seed of every synthetic image.") var seed: UInt64 = 0
    @Flag(help: "Print the plan (have, will add, method) and write nothing.") var dryRun = false
    @Option(help: "With --model: PNG bit depth, 8 or 16.") var bitDepth: Int = 8
    @OptionGroup(title: "Diffusion sampling (with a diffusion --model)") var sampling: SamplingOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard (model != nil) != composite else { throw ValidationError("give exactly one of --model CKPT or --composite") }
        guard lesions == nil || composite else { throw ValidationError("--lesions goes with --composite") }
        guard bitDepth == 8 || bitDepth == 16 else { throw ValidationError("--bit-depth must be 8 or 16") }
    }

    func run() throws {
        runtime.apply()
        let method: BalanceMethod = composite
            ? .composite(lesions: lesions.map { URL(fileURLWithPath: $0) }, healthyClass: healthyClass, lesionClass: lesionClass)
            : .model(model!)
        var request = BalanceRequest(data: URL(fileURLWithPath: data), out: URL(fileURLWithPath: out), method: method)
        request.target = target
        request.seed = seed
        request.bitDepth = bitDepth
        request.sampling = sampling.settings
        let plan = dryRun ? try planBalance(request) : try runBalance(request, progress: runtime.progress)
        let width = max(5, plan.map(\.className.count).max() ?? 0)
        print("class".padding(toLength: width, withPad: " ", startingAt: 0) + "   have    add  method")
        for row in plan {
            print(row.className.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %5d  %5d  ", row.have, row.add) + row.method)
        }
        print(dryRun ? "dry run: nothing written" : "balanced dataset: \(out) (manifest.jsonl lists every file)")
    }
}
