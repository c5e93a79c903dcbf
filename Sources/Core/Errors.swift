/// The one error type medsynth reports to users: a single line that names the thing at fault
/// (a file, an op, an argument) and the problem. The CLI prints `description` and exits non-zero.
public struct MedSynthError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    /// An error about a file: "PATH: problem".
    public init(file: String, _ problem: String) { self.message = "\(file): \(problem)" }
    public var description: String { message }
}
