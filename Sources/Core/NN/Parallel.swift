import COpenBLAS
import CSerialBLAS
import CWorkerPool
import Dispatch
import Foundation

/// How many threads the layers may use, and why their results never depend
/// on it.
///
/// Results are identical for every thread count (a Slurm step with one CPU,
/// a 2-core run and an 8-core laptop compute the same bits) because:
/// - Work is cut into chunks from the SHAPES alone (batch size, element
///   count, patch-block size), never from the thread count; threads only
///   decide which worker computes which chunk. Every chunk is computed by
///   the same calls on the same data whoever runs it, and partial sums
///   (weight and bias gradients, batch-norm statistics) are combined in
///   chunk order after the join.
/// - OpenBLAS runs single-threaded in the whole process (set before `main`
///   by the CSerialBLAS target, which NN links). Measured with this
///   OpenBLAS 0.3.21 (Haswell kernels; `blasResultsDependOnThreadsAndCallShape`
///   in NNTests checks it): a threaded sgemm or sgemv gives different bits
///   with 1, 2 or 3 threads for the shapes the layers use (e.g. 128×20×128,
///   227×32×288), and even a single-threaded sgemm gives different bits for
///   a row or column of C when C is computed by calls of other m or n. So
///   OpenBLAS threading is never used, and every product's call shapes
///   (m, n, k) come from the fixed chunking. (Pointer alignment does not
///   change single-threaded results, so which worker's scratch buffer holds
///   a chunk does not matter.)
/// - Nothing is toggled at run time: two models driven from two threads at
///   once (tests running in parallel) cannot change each other's arithmetic.
///
/// Direct `cblas_*` calls elsewhere in the project are therefore
/// single-threaded in every process that links NN; they are exact-repeatable
/// for any thread count but no longer use several cores.
public enum ComputeThreads {
    private static let lock = NSLock()
    private static var configured = max(1, ProcessInfo.processInfo.activeProcessorCount)
    @TaskLocal static var scoped: Int?

    /// Threads the layers may use on the calling thread: the innermost
    /// `withCount` around the call, else the configured count (default:
    /// every core). Affects speed only, never results.
    public static var count: Int {
        if let s = scoped { return s }
        lock.lock()
        defer { lock.unlock() }
        return configured
    }

    /// Sets the process-wide count (`Threads.configure` in StageKit calls
    /// this once at the start of every stage); n < 1 counts as 1. Also
    /// re-asserts single-threaded OpenBLAS in case anything raised it.
    public static func configure(_ n: Int) {
        openblas_set_num_threads(1)
        lock.lock()
        configured = max(1, n)
        lock.unlock()
    }

    /// Runs `body` with `n` threads for the layers called from the calling
    /// thread (task) only; other threads keep their count.
    public static func withCount<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        try $scoped.withValue(max(1, n), operation: body)
    }

    /// True when OpenBLAS was set single-threaded at load (CSerialBLAS).
    static var blasSetSerialAtLoad: Bool { nn_serial_blas_applied() != 0 }
}

/// Fork-join over fixed chunks for the layers' own loops and blocked GEMMs.
///
/// A parallel pass is `forEachChunk(chunks) { chunk, worker in ... }` with
/// the chunk count taken from the shapes (`chunks(count:align:)`,
/// `Conv2D`'s image chunks); the chunk's work must depend on `chunk` only,
/// `worker` (< `workers(for:)`) merely picks a scratch buffer.
enum Parallel {
    /// Elements per chunk of the elementwise and per-channel passes (a
    /// multiple of the alignment): small enough to spread a 32×32×32
    /// activation of a 64-image batch over 32 chunks, large enough that a
    /// chunk outweighs its share of a fork-join (~10 µs).
    static let chunkElements = 1 << 16

    /// Length of every chunk but the last: `chunkElements` rounded down to a
    /// multiple of `align` (at least `align`).
    @inline(__always)
    static func chunkLength(align: Int) -> Int {
        let a = max(align, 1)
        return max(a, chunkElements / a * a)
    }

    /// Number of chunks of `count` elements: fixed by count and alignment.
    @inline(__always)
    static func chunks(count: Int, align: Int) -> Int {
        let len = chunkLength(align: align)
        return max(1, (count + len - 1) / len)
    }

    /// Elements of chunk `c`.
    @inline(__always)
    static func chunkRange(_ c: Int, count: Int, align: Int) -> Range<Int> {
        let len = chunkLength(align: align)
        return min(count, c * len)..<min(count, (c + 1) * len)
    }

    /// Part `i` of `n` balanced contiguous parts of 0..<count (image chunks).
    @inline(__always)
    static func part(_ i: Int, of n: Int, count: Int) -> Range<Int> {
        (count * i / n)..<(count * (i + 1) / n)
    }

    /// Workers a pass over `chunks` chunks uses on the calling thread.
    @inline(__always)
    static func workers(for chunks: Int, threads: Int = ComputeThreads.count) -> Int {
        max(1, min(chunks, threads))
    }

    /// Runs body(chunk, worker) once for every chunk in 0..<chunks, on
    /// `workers` threads (the caller's alone when 1) of the persistent pool
    /// in CWorkerPool (why not Dispatch: see worker_pool.c). Chunks are
    /// handed out in order to whichever worker is free, so a descheduled
    /// worker (a shared machine) does not stall the others; a pass started
    /// while the pool is busy (inside a chunk, or from another thread) runs
    /// on the calling thread alone.
    static func forEachChunk(_ chunks: Int, workers: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) {
        if workers <= 1 || chunks <= 1 {
            for c in 0..<chunks { body(c, 0) }
            return
        }
        // The pool's workers run the body only inside nn_pool_run, which
        // returns after the last chunk: the closure does not escape.
        withoutActuallyEscaping(body) { escaping in
            var box = escaping
            withUnsafeMutablePointer(to: &box) { context in
                nn_pool_run(chunks, workers, { context, chunk, worker in
                    context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(chunk, worker)
                }, context)
            }
        }
    }

    /// As above with `workers(for: chunks)`.
    @inline(__always)
    static func forEachChunk(_ chunks: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) {
        forEachChunk(chunks, workers: workers(for: chunks), body)
    }
}

/// Fork-join for code outside NN (the distillation losses) on the layers'
/// terms: the caller fixes `chunks` from shapes alone and makes each chunk's
/// work depend on `chunk` alone (per-chunk partial sums, combined in chunk
/// order after the join), so results do not depend on the thread count.
/// `worker` (< `workers(for:)`) may pick a scratch buffer.
public enum FixedChunks {
    /// Runs body(chunk, worker) for every chunk in 0..<chunks on up to
    /// `ComputeThreads.count` threads.
    public static func forEach(_ chunks: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) {
        Parallel.forEachChunk(chunks, body)
    }

    /// Workers `forEach(chunks)` uses on the calling thread.
    public static func workers(for chunks: Int) -> Int { Parallel.workers(for: chunks) }
}

/// What OpenBLAS runs with, for logs and benchmarks.
///
/// The machines this project runs on pin OPENBLAS_CORETYPE (Haswell, AVX2
/// kernels) and OPENBLAS_L2_SIZE in the environment, because this older
/// OpenBLAS build computes wrong results or crashes with the kernels it
/// would pick itself on their processors. The library never overrides that;
/// benchmarks print the kernel family so figures can be compared.
public enum OpenBLASInfo {
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's own thread count: 1 in every process that links NN.
    public static var threads: Int { Int(openblas_get_num_threads()) }
}

/// Chunks of whole images for a per-image pass over `b` images of
/// `imageSize` values (pooling): about `Parallel.chunkElements` values each,
/// fixed by the shape; chunk t holds images `Parallel.part(t, of:, count: b)`.
@inline(__always)
func imageChunks(_ b: Int, _ imageSize: Int) -> Int {
    max(1, min(b, b * imageSize / Parallel.chunkElements))
}
