import Foundation

/// Writes `bytes` to `url` through a temporary file in the same folder and a rename, so a reader
/// (or a crash) never sees a partial file.
public func writeAtomically(_ bytes: Data, to url: URL) throws {
    let folder = url.deletingLastPathComponent()
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
    do {
        try bytes.write(to: temporary)
    } catch {
        throw MedSynthError(file: url.path, "cannot write (\(error.localizedDescription))")
    }
    if rename(temporary.path, url.path) != 0 {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw MedSynthError(file: url.path, "cannot move the finished file into place: \(reason)")
    }
}
