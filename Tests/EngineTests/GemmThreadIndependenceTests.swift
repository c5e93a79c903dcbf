import XCTest
import Core
import Foundation
@testable import Engine

/// OpenBLAS's kernels can give an element of a product other last bits depending on where its
/// column or row sits in a call (the Haswell kernels do; the AVX-512 ones seem not to), so `sgemm`
/// must cut a product the same way for every worker count.
final class GemmThreadIndependenceTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(ProcessInfoCores.count) }

    /// Shapes of the kinds the layers multiply: wide im2col products, tall weight gradients,
    /// ragged edges, transposed operands.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (128, 256, 96), (32, 4096, 144), (256, 1024, 576), (16, 200, 1500), (100, 37, 1000), (33, 333, 333), (500, 40, 700),
    ]

    func testProductBitsDoNotDependOnWorkerCount() {
        print("OpenBLAS kernels: \(Parallel.blasDescription)")
        var stream = RandomStream(seed: 11)
        for (m, n, k) in Self.shapes {
            for (transA, transB) in [(false, false), (true, false), (false, true)] {
                let a = (0..<(m * k)).map { _ in stream.uniform(-1, 1) }
                let b = (0..<(k * n)).map { _ in stream.uniform(-1, 1) }
                var products: [[Float]] = []
                for workers in [1, 2, 3] {
                    Parallel.setThreads(workers)
                    var c = [Float](repeating: 0.5, count: m * n)
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: ap.baseAddress!, lda: transA ? m : k,
                              b: bp.baseAddress!, ldb: transB ? k : n, beta: 1, c: cp.baseAddress!, ldc: n)
                    } } }
                    products.append(c)
                }
                for w in 1..<products.count {
                    let differing = zip(products[0], products[w]).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(m)×\(n)×\(k) transA \(transA) transB \(transB): \(differing) elements differ between 1 and \(w + 1) workers")
                }
            }
        }
    }

    /// The same check in a child process on OpenBLAS's Haswell kernels, which show the position
    /// effect on this project's machines (the default AVX-512 kernels would pass any split).
    func testProductBitsDoNotDependOnWorkerCountOnHaswellKernels() throws {
        let cpuInfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        try XCTSkipUnless(cpuInfo.contains(" avx2") && cpuInfo.contains(" fma"), "no AVX2/FMA: OpenBLAS cannot run its Haswell kernels here")
        try XCTSkipIf(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil, "OPENBLAS_CORETYPE already set: the in-process test covers it")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["EngineTests.GemmThreadIndependenceTests/testProductBitsDoNotDependOnWorkerCount"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = "Haswell"
        child.environment = environment
        let output = Pipe()
        child.standardOutput = output
        child.standardError = output
        try child.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        XCTAssertTrue(text.contains("kernels Haswell"), "the child did not run OpenBLAS's Haswell kernels:\n\(text.suffix(2000))")
        XCTAssertTrue(text.contains("Executed 1 test"), "the child ran no test:\n\(text.suffix(2000))")
        XCTAssertEqual(child.terminationStatus, 0, "on Haswell kernels:\n\(text.suffix(3000))")
    }
}
