import ArgumentParser
import Core
import Engine

@main
struct Medsynth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "medsynth",
        abstract: "Synthetic medical images on an ordinary CPU: generators, compositor, evaluator.",
        version: MedSynthVersion.current,
        subcommands: [
            // Each subcommand lives in its own file; keep this list sorted by workflow.
            Info.self,
            Convert.self,
            Export.self,
            Train.self,
            Generate.self,
            Reconstruct.self,
            Inpaint.self,
            Evaluate.self,
            Utility.self,
            Balance.self,
            Manifest.self,
            Bench.self,
            Lesions.self, Composite.self, BenchComposite.self,
        ]
    )
}
