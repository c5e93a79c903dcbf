import Core
import CBLAS
import Dispatch
import Foundation
import Synchronization

// MARK: - Threads
//
// GEMM threads belong to OpenBLAS; the loops around it (im2col, norms, activations) split their
// outer index across `Parallel.workers` (the caller and `WorkerPool`'s helpers). Every reduction is computed per output
// element in a fixed order, so results do not depend on the number of workers.

public enum Parallel {
    /// Workers for non-GEMM loops (defaults to the core count).
    nonisolated(unsafe) public static var workers: Int = max(1, ProcessInfoCores.count)

    /// Sets the number of threads medsynth computes with (GEMM included).
    public static func setThreads(_ n: Int) {
        workers = max(1, n)
    }

    /// Threads used for GEMM: medsynth's workers (each driving a single-threaded OpenBLAS), or as
    /// many OpenBLAS threads for large products.
    public static var blasThreads: Int { workers }

    @usableFromInline nonisolated(unsafe) static var blasConfigured = false

    /// How `sgemm` spreads one large product over the workers.
    public enum GEMMThreading: String, Sendable {
        /// Independent column (or row) blocks of a shape-determined width, one single-threaded
        /// OpenBLAS call each, shared among the workers.
        case split
        /// One call with OpenBLAS's own threads (shared packed panels), whose threads are shut
        /// down right after so none spin-waits while medsynth's own loops run.
        case openblas
    }

    /// MEDSYNTH_GEMM_THREADS=split|openblas; default split (results independent of the thread
    /// count); openblas for products of at least `openBLASThreadsMinimumFlops`.
    nonisolated(unsafe) public static var gemmThreading: GEMMThreading =
        ProcessInfo.processInfo.environment["MEDSYNTH_GEMM_THREADS"].flatMap(GEMMThreading.init(rawValue:)) ?? .split

    /// Below this (2·m·n·k) OpenBLAS's thread start-up (≈ 0.1–0.2 ms) is not worth it.
    nonisolated(unsafe) public static var openBLASThreadsMinimumFlops = 128_000_000

    /// OpenBLAS (pthreads build) keeps its worker threads spinning on sched_yield for up to
    /// ~0.1 s after a threaded call, even after openblas_set_num_threads(1) (measured: 20–90 ms of
    /// CPU in the following 100 ms). blas_thread_shutdown_ joins them; the next threaded call
    /// starts them again. Looked up at run time: it is exported but not in cblas.h.
    @usableFromInline nonisolated(unsafe) static let shutDownBLASThreads: (@convention(c) () -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)
        #else
        return nil
        #endif
    }()

    /// Runs `body` (one cblas call) on OpenBLAS's own `workers` threads, then stops them.
    @usableFromInline static func withOpenBLASThreads(_ body: () -> Void) {
        openblas_set_num_threads(Int32(workers))
        body()
        openblas_set_num_threads(1)
        _ = shutDownBLASThreads?()
    }

    /// The OpenBLAS build and the kernel family it runs ("OpenBLAS 0.3.21 DYNAMIC_ARCH …, kernels
    /// Haswell"), and OPENBLAS_CORETYPE when the environment forces that choice: the same binary
    /// runs at very different GEMM rates on AVX2 and AVX-512 kernels, so benchmarks print it.
    public static var blasDescription: String {
        let config = openblas_get_config().map { String(cString: $0) } ?? "OpenBLAS"
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let forced = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map { " (forced by OPENBLAS_CORETYPE=\($0))" } ?? ""
        return "\(config), kernels \(core)\(forced)"
    }

    /// Makes OpenBLAS single-threaded once, before the first GEMM.
    @inlinable
    public static func configureBLAS() {
        if !blasConfigured { blasConfigured = true; openblas_set_num_threads(1); keepFreedMemory() }
    }

    /// Activations of tens of MB are allocated and freed every op; glibc would return each to
    /// the kernel (mmap/munmap) and fault the pages in again on the next op. Keep them instead.
    @usableFromInline static func keepFreedMemory() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 1 << 30)
        _ = mallopt(M_TRIM_THRESHOLD, Int32.max)
        #endif
    }

    /// Calls `body(range)` on disjoint chunks of 0..<count, in parallel when the work is large
    /// enough (`cost` ≈ scalar operations per index) to pay for the hand-off.
    @inlinable
    public static func forRanges(_ count: Int, cost: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = min(workers, count)
        if chunks <= 1 || count * cost < 32_768 {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let run = { (chunk: Int) in
                let lo = count * chunk / chunks, hi = count * (chunk + 1) / chunks
                if lo < hi { body(lo..<hi) }
            }
            if !WorkerPool.shared.run(chunks: chunks, run) {
                // The pool is busy (a nested call, or another thread's loop): this thread does every chunk.
                for chunk in 0..<chunks { run(chunk) }
            }
        }
    }

    /// Calls `body(i)` for every i in 0..<count, split across workers.
    @inlinable
    public static func forEach(_ count: Int, cost: Int = 1, _ body: (Int) -> Void) {
        forRanges(count, cost: cost) { range in for i in range { body(i) } }
    }
}

// MARK: - Worker threads

/// medsynth's own helper threads for `Parallel.forRanges`: the calling thread runs chunk 0 and
/// helper k chunk k + 1. A helper spins for `spinSeconds` after its last chunk before it sleeps,
/// so the next loop starts it without a wake-up. Dispatch's concurrentPerform woke its threads
/// for every loop: on the 2-core Zen 5 VM a two-way split of 2 × 14 µs of work took 39 µs
/// against 28 µs serial, and 2 × 140 µs took 193 µs (this pool: 15 µs and 153 µs), so the
/// hundreds of small loops per step of a latent U-Net (1–4-pixel maps) lost time to threading.
/// Between loops a helper spins on a core the calling thread leaves free (only helpers within
/// the core count spin), so it does not take a core from medsynth's own work; OpenBLAS runs
/// single-threaded beside them (`configureBLAS`; MEDSYNTH_GEMM_THREADS=openblas is the opt-in
/// exception, whose threads may meet a spinning helper for up to the spin time).
@usableFromInline
final class WorkerPool: @unchecked Sendable {
    @usableFromInline static let shared = WorkerPool()
    /// MEDSYNTH_SPIN_US: how long an idle helper spins before sleeping (default 200 µs).
    static let spinSeconds = (ProcessInfo.processInfo.environment["MEDSYNTH_SPIN_US"].flatMap { Double($0) } ?? 200) / 1e6

    private final class Helper: @unchecked Sendable {
        let index: Int
        /// Raised by the caller for each chunk this helper is to run.
        let ticket = Atomic<Int>(0)
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
        /// Helpers beyond the cores the caller leaves free sleep at once instead of spinning:
        /// more spinning threads than cores (`--threads` above the core count) would take
        /// turns with the threads doing the work.
        let spins: Bool
        init(index: Int) { self.index = index; spins = index + 1 < ProcessInfoCores.count }
    }

    private let busy = Atomic<Bool>(false)
    private let finished = Atomic<Int>(0)
    private var helpers: [Helper] = []
    // Written by the one thread holding `busy` before it raises tickets; read by helpers after.
    private var job: ((Int) -> Void)? = nil

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Runs `body(0..<chunks)` with chunk 0 on this thread; false (nothing run) when the pool is busy.
    @usableFromInline func run(chunks: Int, _ body: @escaping (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        while helpers.count < chunks - 1 { startHelper() }
        job = body
        finished.store(0, ordering: .relaxed)
        for helper in helpers[0..<chunks - 1] {
            helper.ticket.add(1, ordering: .sequentiallyConsistent)
            if helper.sleeping.load(ordering: .sequentiallyConsistent) { helper.wake.signal() }
        }
        body(0)
        while finished.load(ordering: .acquiring) < chunks - 1 {}
        job = nil
        return true
    }

    private func startHelper() {
        let helper = Helper(index: helpers.count)
        helpers.append(helper)
        let thread = Thread { [unowned self] in self.serve(helper) }
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func serve(_ helper: Helper) {
        var seen = 0
        let spin = helper.spins ? UInt64(WorkerPool.spinSeconds * 1e9) : 0
        while true {
            var spinStart = WorkerPool.now()
            while helper.ticket.load(ordering: .acquiring) == seen {
                if WorkerPool.now() - spinStart >= spin {
                    // Announce the sleep, then look again, so a ticket raised meanwhile is not missed.
                    helper.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if helper.ticket.load(ordering: .sequentiallyConsistent) == seen { helper.wake.wait() }
                    helper.sleeping.store(false, ordering: .sequentiallyConsistent)
                    spinStart = WorkerPool.now()
                }
            }
            seen += 1
            job!(helper.index + 1)
            finished.add(1, ordering: .releasing)
        }
    }
}

enum ProcessInfoCores {
    /// The CPUs this process may use (affinity and cgroup quota), not every CPU the node has.
    static var count: Int { AvailableProcessors.count }
}
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Small vector kernels

@inlinable
func vectorAdd(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n {
        let a = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD8<Float>.self)
        let b = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: a + b, as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { dst[i] += src[i]; i += 1 }
}

@inlinable
func vectorSum(_ src: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < n { s += src[i]; i += 1 }
    return s
}

// MARK: - GEMM

/// C[M×N] = alpha · op(A) · op(B) + beta · C, row-major, through OpenBLAS's cblas_sgemm.
///
/// OpenBLAS runs single-threaded (see `Parallel.configureBLAS`). A large product is cut into
/// `Parallel.gemmParts(m:n:k:)` column (or row) blocks, a function of its shape only, and the
/// workers share them out: OpenBLAS's kernels give an element other last bits depending on where
/// its column or row sits in a call (Haswell kernels; scripts/experiments/blas_column_bits.c), so
/// a split that followed the worker count would make results depend on it. With
/// MEDSYNTH_GEMM_THREADS=openblas, products of at least `Parallel.openBLASThreadsMinimumFlops`
/// run on OpenBLAS's own threads instead (shut down right after the call, so none spin-waits
/// while medsynth's own loops run); that opt-in gives up thread-count independence.
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Parallel.configureBLAS()
    func call(_ m: Int, _ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    if Parallel.gemmThreading == .openblas && Parallel.workers > 1 && 2 * m * n * k >= Parallel.openBLASThreadsMinimumFlops
        && Parallel.shutDownBLASThreads != nil {
        Parallel.withOpenBLASThreads { call(m, n, a, b, c) }
        return
    }
    let parts = Parallel.gemmParts(m: m, n: n, k: k)
    if parts == 1 {
        call(m, n, a, b, c)
        return
    }
    // Each block is ≥ 2 MFLOP: always worth a worker (the cost only has to clear forEach's threshold).
    if n >= m {
        // Column blocks of C: B's columns (or B's rows when transposed) move with them.
        let block = ((n + parts - 1) / parts + 15) / 16 * 16
        Parallel.forEach((n + block - 1) / block, cost: 1 << 20) { part in
            let j0 = part * block, width = min(block, n - j0)
            call(m, width, a, transB ? b + j0 * ldb : b + j0, c + j0)
        }
    } else {
        let block = ((m + parts - 1) / parts + 7) / 8 * 8
        Parallel.forEach((m + block - 1) / block, cost: 1 << 20) { part in
            let i0 = part * block, height = min(block, m - i0)
            call(height, n, transA ? a + i0 : a + i0 * lda, b, c + i0 * ldc)
        }
    }
}

extension Parallel {
    /// Blocks a product is cut into, from its shape alone. Measured on 2 cores (SkylakeX kernels,
    /// 9 U-Net/DCGAN-sized products of 9–536 MFLOP): two blocks ran at 0.97–1.9× OpenBLAS's own
    /// two threads; four, from 256 MFLOP up, at 0.92–1.05× (leaving work for more cores);
    /// eight or more lost up to 25 % to repacking A.
    static func gemmParts(m: Int, n: Int, k: Int) -> Int {
        let flops = 2 * m * n * k
        if flops < 4_000_000 || max(m, n) < 32 { return 1 }
        return flops < 256_000_000 ? 2 : 4
    }
}

// MARK: - Scratch memory

/// A grow-only buffer reused across calls so hot ops do not allocate (and page-fault) every time.
/// Ops run one at a time on the calling thread, so one scratch per slot is enough.
public final class Workspace {
    nonisolated(unsafe) public static let shared = Workspace()
    private var buffers: [UnsafeMutableBufferPointer<Float>] = []

    /// A buffer of at least `count` floats for `slot`; contents are unspecified.
    public func buffer(_ slot: Int, count: Int) -> UnsafeMutableBufferPointer<Float> {
        while buffers.count <= slot { buffers.append(UnsafeMutableBufferPointer(start: nil, count: 0)) }
        if buffers[slot].count < count {
            buffers[slot].deallocate()
            buffers[slot] = .allocate(capacity: count)
        }
        return UnsafeMutableBufferPointer(rebasing: buffers[slot][0..<count])
    }
}

/// An array whose every element the caller overwrites: skips zero-filling large op outputs.
@inline(__always)
func uninitializedFloats(_ count: Int) -> [Float] {
    Array(unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
}
