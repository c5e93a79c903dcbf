import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The prefix of every temporary file medsynth writes beside `url`'s final name: hidden, and
/// carrying the writer's process id so a later run can recognise and clean up a killed run's leftovers.
public func temporaryFilePrefix(for url: URL) -> String { ".\(url.lastPathComponent).tmp-" }

/// Writes `bytes` to `url` through a temporary file in the same folder and a rename, so a reader
/// (or a crash) never sees a partial file and a failure leaves any old file intact.
public func writeAtomically(_ bytes: some ContiguousBytes, to url: URL) throws {
    let path = url.path
    let folder = url.deletingLastPathComponent().path
    let temporary = folder + "/" + temporaryFilePrefix(for: url) + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard let file = fopen(temporary, "wb") else {
        throw MedSynthError(file: path, "cannot write: \(String(cString: strerror(errno)))")
    }
    let (count, written) = bytes.withUnsafeBytes { raw in (raw.count, raw.isEmpty ? 0 : fwrite(raw.baseAddress, 1, raw.count, file)) }
    // No fsync: rename already gives readers all-or-nothing, and a folder conversion writes
    // thousands of files.
    let flushed = fflush(file) == 0
    let savedErrno = errno
    fclose(file)
    guard written == count, flushed else {
        unlink(temporary)
        throw MedSynthError(file: path, "cannot write: \(String(cString: strerror(savedErrno)))")
    }
    guard rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw MedSynthError(file: path, "cannot move the finished file into place: \(reason)")
    }
}
