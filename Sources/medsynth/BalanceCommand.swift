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
        With --model, the missing images of each class come from a conditional generator (`generate --class`); \
        with --model given several times, they are split between the generators in the order given (model 1 the first \
        share, with the class seed; model m > 1 the next, with a seed derived from it; both in the manifest). \
        With --composite, lesions (procedural, or from --lesions) are blended into the healthy class's images to \
        fill the lesion class, which is created if the data has none. OUT/<class>/ gets the real files \
        (hard-linked, or copied; names kept) and synthetic_NNNNNN.png files (with --real-copies F, that fraction of them \
        are copy_NNNNNN.png copies of the class's real images instead, augmented with --augment-copies); OUT/manifest.jsonl marks each file \
        real or synthetic with its origin, seed and model; composites also get masks in OUT/.masks/<class>/. \
        --method smote interpolates in pixel space between a real image of the class and one of its \
        --neighbours nearest same-class images (SMOTE, Chawla et al. 2002; parents and lambda in the manifest; \
        a class of more than 8 M pixel values is compared on block averages, see README); \
        --method oversample adds random copies of the class's real images; --method augment adds random copies each \
        rotated (±15°), scaled per axis (×0.85–1.15) and shifted (±8 %), bilinear, edges extended (classical \
        augmentation, Frid-Adar et al. 2018; the transform in the manifest): the classical baselines, to compare \
        a generator against. With --model every generated sample is checked against the real images and \
        rejected if it is nearer to one than the memorisation threshold of `evaluate` (or a pixel copy); \
        --min-confidence P also rejects samples a classifier trained on the real images gives a probability \
        below P for their class. Rejected samples go to OUT/.rejected/<class>/ with a manifest line saying why, \
        and replacements are generated. The same --seed gives the same files. --dry-run prints the plan only.
        """)

    @Option(help: "Dataset folder, one subfolder per class.") var data: String
    @Option(help: "Output folder (new or empty; not inside --data).") var out: String
    @Option(help: "Conditional generator: run folder or checkpoint (GAN or diffusion). Repeat it to split each class's generated images between several generators, e.g. GANs trained with different seeds.")
    var model: [String] = []
    @Flag(help: "Fill the lesion class by compositing lesions into healthy images (same as --method composite).") var composite = false
    @Option(help: "How missing images are made: model (needs --model), composite, smote, oversample or augment. Default: model with --model, composite with --composite.")
    var method: BalanceMethodName?
    @Option(help: "With --method smote: nearest same-class neighbours to interpolate towards (k of SMOTE).") var neighbours: Int = 5
    @Option(help: "With --model: reject generated samples that a classifier trained on the real images gives a probability below this for their class (0-1; default: off).")
    var minConfidence: Double?
    @Option(help: "With --min-confidence: epochs of that classifier.") var filterEpochs: Int = 15
    @Option(help: "With --model: this fraction (0-1) of each class's added images are random copies of its real images (copy_NNNNNN.png), the rest generated (default 0).")
    var realCopies: Double = 0
    @Flag(help: "With --real-copies: the copies are augmented as by --method augment (rotated, scaled, shifted).") var augmentCopies = false
    @Option(help: "With --composite: folder of lesion patches (default: procedural lesions).") var lesions: String?
    @Option(help: "With --composite: the class whose images receive lesions.") var healthyClass: String = "healthy"
    @Option(help: "With --composite: the class to fill.") var lesionClass: String = "lesion"
    @Option(help: "Images per class: max (the largest class), a count N, or a ratio r in (0, 1] of the largest.") var target: BalanceTarget = .max
    @Option(help: "Seed of every synthetic image.") var seed: UInt64 = 0
    @Flag(help: "Print the plan (have, will add, method) and write nothing.") var dryRun = false
    @Option(help: "With --model: PNG bit depth, 8 or 16.") var bitDepth: Int = 8
    @OptionGroup(title: "Diffusion sampling (with a diffusion --model)") var sampling: SamplingOptions
    @OptionGroup var runtime: RuntimeOptions

    /// The method the flags ask for (--model and --composite are shorthands for --method model / composite).
    var chosenMethod: BalanceMethodName? {
        if let method { return method }
        if !model.isEmpty && !composite { return .model }
        if composite && model.isEmpty { return .composite }
        return nil
    }

    func validate() throws {
        guard let chosen = chosenMethod else { throw ValidationError("give one of --model CKPT, --composite or --method smote|oversample|augment") }
        if composite && chosen != .composite { throw ValidationError("--composite contradicts --method \(chosen.rawValue)") }
        if !model.isEmpty != (chosen == .model) {
            throw ValidationError(chosen == .model ? "--method model needs --model CKPT" : "--model goes with --method model only")
        }
        guard lesions == nil || chosen == .composite else { throw ValidationError("--lesions goes with --composite") }
        guard neighbours >= 1 else { throw ValidationError("--neighbours must be at least 1") }
        if let minConfidence {
            guard chosen == .model else { throw ValidationError("--min-confidence filters generated samples: it goes with --model") }
            guard minConfidence > 0, minConfidence < 1 else { throw ValidationError("--min-confidence must be in (0, 1)") }
        }
        guard filterEpochs >= 1 else { throw ValidationError("--filter-epochs must be at least 1") }
        // The fraction's range is checked where the plan is made (planBalance), for the library too.
        guard realCopies == 0 || chosen == .model else { throw ValidationError("--real-copies mixes copies into generated images: it goes with --model") }
        guard !augmentCopies || realCopies > 0 else { throw ValidationError("--augment-copies augments the copies of --real-copies F: give F > 0") }
        guard bitDepth == 8 || bitDepth == 16 else { throw ValidationError("--bit-depth must be 8 or 16") }
    }

    func run() throws {
        runtime.apply()
        let method: BalanceMethod
        switch chosenMethod! {
        case .model: method = .models(model)
        case .composite: method = .composite(lesions: lesions.map { URL(fileURLWithPath: $0) }, healthyClass: healthyClass, lesionClass: lesionClass)
        case .smote: method = .smote(neighbours: neighbours)
        case .oversample: method = .oversample
        case .augment: method = .augment
        }
        var request = BalanceRequest(data: URL(fileURLWithPath: data), out: URL(fileURLWithPath: out), method: method)
        request.target = target
        request.seed = seed
        request.bitDepth = bitDepth
        request.sampling = sampling.settings
        request.filter.minConfidence = minConfidence
        request.filter.classifierEpochs = filterEpochs
        request.realCopyFraction = realCopies
        request.augmentCopies = augmentCopies
        let plan = dryRun ? try planBalance(request) : try runBalance(request, progress: runtime.progress)
        let width = max(5, plan.map(\.className.count).max() ?? 0)
        print("class".padding(toLength: width, withPad: " ", startingAt: 0) + "   have    add  method")
        for row in plan {
            print(row.className.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %5d  %5d  ", row.have, row.add) + row.method)
        }
        if chosenMethod == .model && !dryRun {
            for row in plan where row.filtered.generated > 0 {
                print("filtered \(row.className): \(row.filtered.generated) generated, \(row.filtered.rejectedMemorised) rejected as near-copies of real images, "
                      + "\(row.filtered.rejectedUnsure) below the classifier confidence" + (minConfidence.map { " \($0)" } ?? " (confidence filter off)"))
            }
        }
        print(dryRun ? "dry run: nothing written" : "balanced dataset: \(out) (manifest.jsonl lists every file)")
    }
}

/// The values of `balance --method`.
enum BalanceMethodName: String, CaseIterable, ExpressibleByArgument {
    case model, composite, smote, oversample, augment
}
