import Foundation
import XCTest

/// A fresh, empty temporary folder for one test; removed by the caller's `defer`.
func makeTemporaryDirectory(_ label: String = #function) throws -> URL {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("medsynth-\(safe)-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The repository root (this file is Tests/WorkflowsTests/TestSupport.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `medsynth` executable built next to the test bundle, or nil.
func builtBinary() -> URL? {
    let bundle = Bundle.main.bundleURL
    return [bundle.deletingLastPathComponent(), bundle, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        .map { $0.appendingPathComponent("medsynth") }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }
}

struct ProcessResult {
    let status: Int32
    let output: String
    let timedOut: Bool
}

/// Runs `executable arguments` with stdout and stderr into one file. Foundation starts the child as
/// the leader of its own process group, so the group (a script and whatever it started) can be
/// stopped at once. After `timeout` seconds it gets SIGTERM (so a script's exit trap can clean up), and 20 s
/// later the whole group gets SIGKILL: the call always returns.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                in folder: URL, timeout: TimeInterval) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = folder
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let log = folder.appendingPathComponent(".process-\(UInt32.random(in: 0...UInt32.max)).log")
    try Data().write(to: log)
    let handle = try FileHandle(forWritingTo: log)
    defer { try? handle.close(); try? FileManager.default.removeItem(at: log) }
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let pid = process.processIdentifier
    var timedOut = false
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(50_000) }
    if process.isRunning {
        timedOut = true
        kill(pid, SIGTERM)
        let hard = Date().addingTimeInterval(20)
        while process.isRunning && Date() < hard { usleep(50_000) }
        if process.isRunning { kill(-pid, SIGKILL) }     // the child leads its own group
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, output: (try? String(contentsOf: log, encoding: .utf8)) ?? "", timedOut: timedOut)
}
