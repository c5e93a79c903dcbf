import Foundation

/// How long work reports progress: a human line on a terminal, or one JSON object per line for
/// schedulers and notebooks (`--progress json`).
public enum ProgressStyle: String, Codable, CaseIterable {
    case human, json, none
}

/// Prints progress to stderr at most every `interval` seconds (always the first and last update):
/// done/total, rate, ETA and any named values (losses).
public final class ProgressReporter {
    public let label: String
    public let total: Int
    public let unit: String
    public let style: ProgressStyle
    let start = Date()
    var lastPrint = Date.distantPast
    let interval: TimeInterval
    let isTerminal = isatty(fileno(stderr)) != 0
    /// Work done before this process started (a resumed run), excluded from the rate.
    let startDone: Int

    public init(label: String, total: Int, unit: String, style: ProgressStyle = .human, startDone: Int = 0, interval: TimeInterval = 1) {
        self.label = label; self.total = total; self.unit = unit; self.style = style
        self.startDone = startDone; self.interval = interval
    }

    /// - Parameters: done: units finished; items: images processed since start (for images/s).
    public func update(done: Int, items: Int, values: [(name: String, value: Double)] = [], force: Bool = false) {
        guard style != .none else { return }
        let now = Date()
        let finished = done >= total
        guard force || finished || now.timeIntervalSince(lastPrint) >= interval else { return }
        lastPrint = now
        let elapsed = max(now.timeIntervalSince(start), 1e-9)
        let rate = Double(items) / elapsed
        let unitsPerSecond = Double(done - startDone) / elapsed
        let eta = unitsPerSecond > 0 ? Double(total - done) / unitsPerSecond : .nan
        switch style {
        case .json:
            var object: [String: Any] = ["event": "progress", "task": label, "done": done, "total": total,
                                         "images_per_s": (rate * 100).rounded() / 100, "elapsed_s": (elapsed * 10).rounded() / 10]
            if eta.isFinite { object["eta_s"] = (eta * 10).rounded() / 10 }
            for (k, v) in values where v.isFinite { object[k] = (v * 10000).rounded() / 10000 }
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                FileHandle.standardError.write(data + Data("\n".utf8))
            }
        case .human:
            var line = "\(label): \(unit) \(done)/\(total)"
            for (k, v) in values { line += String(format: "  %@ %.4g", k, v) }
            line += String(format: "  %.1f img/s", rate)
            line += eta.isFinite ? "  ETA \(formatDuration(eta))" : ""
            if isTerminal {
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)\(finished ? "\n" : "")".utf8))
            } else {
                FileHandle.standardError.write(Data("\(line)\n".utf8))
            }
        case .none:
            break
        }
    }

    /// A one-off message that does not break the progress line.
    public func note(_ message: String) {
        guard style != .none else { return }
        if style == .json {
            let object: [String: Any] = ["event": "note", "task": label, "message": message]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                FileHandle.standardError.write(data + Data("\n".utf8))
            }
        } else {
            FileHandle.standardError.write(Data("\(isTerminal ? "\r\u{1B}[K" : "")\(label): \(message)\n".utf8))
        }
    }
}

public func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
    if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    return "\(s)s"
}
