import Core
import Foundation
import XCTest

// What every test target shares: temporary folders, the built binary and a runner for it, and
// assertions on numbers and on medsynth's one-line errors.

/// A fresh, empty temporary folder for one test; removed by the caller's `defer`.
public func makeTemporaryDirectory(_ label: String = #function) throws -> URL {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("medsynth-\(safe)-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The repository root (this file is Tests/TestSupport/TestSupport.swift).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `medsynth` executable built next to the test bundle, or nil.
public func builtBinary() -> URL? {
    let bundle = Bundle.main.bundleURL
    let testBundles = Bundle.allBundles.map(\.bundleURL).filter { $0.pathExtension == "xctest" }
    return ([bundle.deletingLastPathComponent(), bundle, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
            + testBundles.map { $0.deletingLastPathComponent() })
        .map { $0.appendingPathComponent("medsynth") }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }
}

/// The built `medsynth` executable; skips the test when it is not there.
public func requireBinary() throws -> URL {
    guard let binary = builtBinary() else { throw XCTSkip("the medsynth executable is not built next to the tests") }
    return binary
}

public struct ProcessResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool
    /// Both streams; in the order they were written when the run merged them.
    public var output: String { stdout + stderr }
}

/// Runs `executable arguments` in `folder` with no standard input. Output goes to files (no pipe
/// deadlock whatever its size); `mergeStreams` sends stderr into stdout's file, keeping their order.
/// Foundation starts the child as the leader of its own process group, so the group (a script and
/// whatever it started) can be stopped at once. After `timeout` seconds it gets SIGTERM (so a
/// script's exit trap can clean up), and 20 s later the whole group gets SIGKILL: the call always returns.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                       in folder: URL, timeout: TimeInterval, mergeStreams: Bool = true) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = folder
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let tag = UInt32.random(in: 0...UInt32.max)
    let outLog = folder.appendingPathComponent(".process-\(tag).out"), errLog = folder.appendingPathComponent(".process-\(tag).err")
    try Data().write(to: outLog)
    try Data().write(to: errLog)
    let outHandle = try FileHandle(forWritingTo: outLog), errHandle = try FileHandle(forWritingTo: errLog)
    defer {
        try? outHandle.close(); try? errHandle.close()
        try? FileManager.default.removeItem(at: outLog); try? FileManager.default.removeItem(at: errLog)
    }
    process.standardOutput = outHandle
    process.standardError = mergeStreams ? outHandle : errHandle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let pid = process.processIdentifier
    var timedOut = false
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        timedOut = true
        kill(pid, SIGTERM)
        let hard = Date().addingTimeInterval(20)
        while process.isRunning && Date() < hard { usleep(50_000) }
        if process.isRunning { kill(-pid, SIGKILL) }     // the child leads its own group
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOf: outLog, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: errLog, encoding: .utf8)) ?? "",
                         timedOut: timedOut)
}

/// Asserts two arrays have the same length and differ by less than `tolerance` everywhere.
public func assertClose<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B], _ tolerance: Double = 1e-4, _ what: String,
                                                                       file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let worst = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
    XCTAssertLessThan(worst, tolerance, "\(what): max abs difference \(worst)", file: file, line: line)
}

/// Asserts `body` throws a one-line `MedSynthError` whose message contains every fragment.
public func assertMedSynthError<T>(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                                   _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected an error containing \(fragments)", file: file, line: line)
    } catch let error as MedSynthError {
        for fragment in fragments where !error.message.contains(fragment) {
            XCTFail("error '\(error.message)' does not contain '\(fragment)'", file: file, line: line)
        }
        XCTAssertFalse(error.message.contains("\n"), "error should be one line: \(error.message)", file: file, line: line)
    } catch {
        XCTFail("expected a MedSynthError, got \(error)", file: file, line: line)
    }
}

/// Asserts `expression` throws an error whose description mentions `text`.
public func assertThrows(_ expression: @autoclosure () throws -> Any, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try expression(), file: file, line: line) {
        XCTAssert("\($0)".contains(text), "error '\($0)' does not mention '\(text)'", file: file, line: line)
    }
}

/// ‖a − b‖ / ‖b‖ in double precision: the error measure of the convolution-algorithm tests.
public func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    var diff = 0.0, norm = 0.0
    for i in 0..<a.count { diff += (Double(a[i]) - b[i]) * (Double(a[i]) - b[i]); norm += b[i] * b[i] }
    return (diff / max(norm, 1e-300)).squareRoot()
}

public func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }
