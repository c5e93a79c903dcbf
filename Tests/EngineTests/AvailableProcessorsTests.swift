import XCTest
import Foundation
import Core
import TestSupport
@testable import Engine

/// The worker count follows the CPUs the process may use (affinity mask, cgroup quota), not every
/// CPU of the node: a one-CPU SLURM task on a big node must not start a spinning helper per node core.
final class AvailableProcessorsTests: XCTestCase {
    func testCPUListsCountEveryListedCPU() {
        XCTAssertEqual(AvailableProcessors.cpuListCount("0-1"), 2)
        XCTAssertEqual(AvailableProcessors.cpuListCount("0"), 1)
        XCTAssertEqual(AvailableProcessors.cpuListCount("0-3,8,10-11\n"), 7)
        XCTAssertEqual(AvailableProcessors.cpuListCount(" 5 "), 1)
        for malformed in ["", "3-1", "a", "1-2-3", "0,,x", "-"] {
            XCTAssertNil(AvailableProcessors.cpuListCount(malformed), "\"\(malformed)\"")
        }
        let status = "Name:\tmedsynth\nCpus_allowed:\t0f\nCpus_allowed_list:\t0-2,4\nMems_allowed:\t1\n"
        XCTAssertEqual(AvailableProcessors.allowedCount(procStatus: status), 4)
        XCTAssertNil(AvailableProcessors.allowedCount(procStatus: "Name:\tx\n"))
    }

    func testQuotasRoundUpAndUnlimitedIsNoLimit() {
        XCTAssertEqual(AvailableProcessors.quotaCount(cpuMax: "200000 100000\n"), 2)
        XCTAssertEqual(AvailableProcessors.quotaCount(cpuMax: "150000 100000"), 2)
        XCTAssertEqual(AvailableProcessors.quotaCount(cpuMax: "50000 100000"), 1)
        XCTAssertNil(AvailableProcessors.quotaCount(cpuMax: "max 100000"))
        XCTAssertNil(AvailableProcessors.quotaCount(cpuMax: "-1 100000"))   // cgroup v1's "no limit"
        XCTAssertNil(AvailableProcessors.quotaCount(cpuMax: "garbage"))
    }

    func testThisProcessCountsNoMoreThanItsAffinityMask() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let allowed = try XCTUnwrap(AvailableProcessors.allowedCount(procStatus: status))
        XCTAssertGreaterThanOrEqual(AvailableProcessors.count, 1)
        XCTAssertLessThanOrEqual(AvailableProcessors.count, allowed)
        XCTAssertEqual(ProcessInfoCores.count, AvailableProcessors.count)
        XCTAssertTrue(AvailableProcessors.description.hasPrefix("\(AvailableProcessors.count) CPU"), AvailableProcessors.description)
    }

    /// The real thing: pinned to one CPU with taskset, the binary computes with one thread by default.
    func testPinnedToOneCPUTheBinaryUsesOneThread() throws {
        let binary = try requireBinary()
        let taskset = ["/usr/bin/taskset", "/bin/taskset"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let taskset else { throw XCTSkip("taskset (util-linux) is not installed") }
        let folder = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try runProcess(taskset, ["-c", "0", binary.path, "bench", "--only", "dcgan64_generate_b256", "--repetitions", "1"],
                                    in: folder, timeout: 120, mergeStreams: false)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.stdout.contains("\"threads\":1"), result.stdout)
        XCTAssertTrue(result.stderr.contains("1 CPU (") && result.stderr.contains("affinity 1,"), result.stderr)
    }
}
