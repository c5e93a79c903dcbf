import Core
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Temporaries of the atomic writers (`writeAtomically`, `writePNG`, `writeJPEG`) are named
// `.NAME.tmp-PID` or `.NAME.tmp-PID-RANDOM` beside NAME. A run killed between write and rename
// leaves one behind; the next run in that folder removes those that are certainly orphans.

/// Removes `.NAME.tmp-PID[-RANDOM]` files in `folder` for NAME in `names` whose writer is gone:
/// PID is not a running process, or it runs but is not this program under this user (the PID was
/// reused). Files of a live medsynth process (this one included) are kept, as are links and
/// anything not matching the pattern exactly. Returns the files removed, sorted.
@discardableResult
public func removeStaleTemporaries(in folder: URL, for names: Set<String>) -> [URL] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
    var removed: [URL] = []
    for entry in entries.sorted() {
        guard let (name, pid) = parseTemporaryName(entry), names.contains(name), !isLiveWriter(pid) else { continue }
        let url = folder.appendingPathComponent(entry)
        var info = stat()
        guard lstat(url.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
        if unlink(url.path) == 0 { removed.append(url) }
    }
    return removed
}

/// (NAME, PID) for ".NAME.tmp-PID" or ".NAME.tmp-PID-RANDOM" (all digits), else nil.
func parseTemporaryName(_ entry: String) -> (name: String, pid: Int32)? {
    guard entry.hasPrefix("."), let marker = entry.range(of: ".tmp-", options: .backwards),
          marker.lowerBound > entry.startIndex else { return nil }
    let name = String(entry[entry.index(after: entry.startIndex)..<marker.lowerBound])
    let parts = entry[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
    guard !name.isEmpty, parts.count == 1 || parts.count == 2,
          parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
          let pid = Int32(parts[0]), pid > 0 else { return nil }
    return (name, pid)
}

/// True when `pid` may still be writing: it is this process, or a running process of this user
/// whose executable is this one or is named medsynth… (/proc/PID/exe, else /proc/PID/comm). When
/// neither can be read (no /proc), any running process of this user counts, to be safe.
func isLiveWriter(_ pid: Int32) -> Bool {
    if pid == getpid() { return true }
    // ESRCH: no such process. EPERM: another user's process, so not one of our writers.
    guard kill(pid, 0) == 0 else { return false }
    if let theirs = executablePath(of: String(pid)) {
        return theirs == executablePath(of: "self") || (theirs as NSString).lastPathComponent.hasPrefix("medsynth")
    }
    guard let command = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return true }
    return command.hasPrefix("medsynth")
}

private func executablePath(of process: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(process)/exe")
}
