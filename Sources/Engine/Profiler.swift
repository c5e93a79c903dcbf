import Core
import Foundation

/// Wall time per op, switched on with MEDSYNTH_PROFILE=1 (printed by `Profiler.report()`), so a
/// benchmark can show where the time goes without an external profiler.
public enum Profiler {
    public static let isEnabled = ProcessInfo.processInfo.environment["MEDSYNTH_PROFILE"] == "1"
    nonisolated(unsafe) static var totals: [String: (seconds: Double, calls: Int)] = [:]

    @inline(__always)
    public static func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard isEnabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let old = totals[name] ?? (0, 0)
            totals[name] = (old.seconds + elapsed, old.calls + 1)
        }
        return try body()
    }

    public static func reset() { totals = [:] }

    /// Ops by total time, with their share.
    public static func report() -> String {
        let all = totals.values.reduce(0) { $0 + $1.seconds }
        return totals.sorted { $0.value.seconds > $1.value.seconds }.map { name, v in
            String(format: "%-28@ %8.3f s  %5.1f%%  %6d calls", name as NSString, v.seconds, 100 * v.seconds / max(all, 1e-12), v.calls)
        }.joined(separator: "\n")
    }
}
