/// One shard of a batch job (`--shard K/N`): items K, K+N, K+2N, … of the whole run, so the
/// shards of a SLURM array or Kubernetes indexed job together give exactly one full run.
public struct Shard: Equatable, Codable, Sendable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init(index: Int = 0, count: Int = 1) {
        precondition(count >= 1 && index >= 0 && index < count, "Shard: need 0 <= index < count")
        self.index = index
        self.count = count
    }

    public static let whole = Shard(index: 0, count: 1)

    /// Parses "K/N" with 0 ≤ K < N.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, k >= 0, k < n else {
            throw MedSynthError("--shard must be K/N with 0 <= K < N (e.g. 0/4), got '\(text)'")
        }
        self.init(index: k, count: n)
    }

    public func contains(_ item: Int) -> Bool { item % count == index }
    public func indices(below total: Int) -> [Int] { Array(stride(from: index, to: total, by: count)) }
    public var description: String { "\(index)/\(count)" }
    /// Manifest file name for this shard's part of a run.
    public var manifestName: String { count == 1 ? "manifest.jsonl" : "manifest.shard-\(index)-of-\(count).jsonl" }
}
