import XCTest
import Dispatch
import Synchronization
@testable import Engine

/// `Parallel.forRanges` on medsynth's own helper threads: every index once, whatever the nesting,
/// the number of workers, or how many threads call it at the same time.
final class WorkerPoolTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(ProcessInfoCores.count) }

    /// Counts how often each index is visited; the cost makes every call take the pool.
    private func visitCounts(_ count: Int, nested: Int = 0) -> [Int] {
        let visits = UnsafeMutableBufferPointer<Int>.allocate(capacity: count * max(1, nested))
        visits.initialize(repeating: 0)
        defer { visits.deallocate() }
        Parallel.forRanges(count, cost: 1 << 20) { range in
            for i in range {
                if nested > 0 {
                    // A loop inside a loop runs on the thread that reached it.
                    Parallel.forRanges(nested, cost: 1 << 20) { inner in for j in inner { visits[i * nested + j] += 1 } }
                } else {
                    visits[i] += 1
                }
            }
        }
        return Array(visits)
    }

    func testEveryIndexOnceForAnyWorkerCountAndNesting() {
        for threads in [1, 2, 3, 5] {
            Parallel.setThreads(threads)
            for count in [1, 2, 3, 7, 64] {
                XCTAssertEqual(visitCounts(count), [Int](repeating: 1, count: count), "\(threads) workers, \(count) indices")
            }
            XCTAssertEqual(visitCounts(9, nested: 4), [Int](repeating: 1, count: 36), "\(threads) workers, nested")
        }
    }

    /// Loops started from several threads at once (the evaluator's Dispatch workers run the
    /// feature network) share one pool: whoever finds it busy runs its loop alone.
    func testLoopsFromSeveralThreadsAtOnce() {
        Parallel.setThreads(3)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for round in 0..<200 {
                let count = 1 + (caller * 7 + round) % 50
                if visitCounts(count) != [Int](repeating: 1, count: count) { failures.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
    }

    /// Many short loops in a row (a helper may be spinning, asleep, or just waking).
    func testThousandsOfShortLoopsWithPauses() {
        Parallel.setThreads(2)
        for round in 0..<3000 {
            if round % 500 == 0 { usleep(2000) }   // longer than the spin: the helper has gone to sleep
            XCTAssertEqual(visitCounts(2), [1, 1])
        }
    }
}
