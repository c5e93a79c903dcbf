import ArgumentParser
import Compositor
import Foundation

struct Lesions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write procedural lesion patches (lobulated, textured, blurred rim) with NAME_mask.png beside each.")

    @Option(help: "Output folder.") var out: String
    @Option(help: "Number of lesions.") var count: Int
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Largest patch side in pixels.") var size: Int = 64
    @Option(help: "Lesion polarity: hyper (brighter), hypo (darker) or mixed.") var polarity: LesionPolarity = .hyper
    @Option(help: "8 or 16.") var bitDepth: Int = 16

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard size >= 9 else { throw ValidationError("--size must be at least 9") }
        guard bitDepth == 8 || bitDepth == 16 else { throw ValidationError("--bit-depth must be 8 or 16") }
    }

    func run() throws {
        let settings = ProceduralLesionSettings(size: size, polarity: polarity, bitDepth: bitDepth)
        let files = try writeProceduralLesions(to: URL(fileURLWithPath: out), count: count, seed: seed, settings: settings)
        print("wrote \(files.count) lesions with masks to \(out)")
    }
}
