import COpenBLAS
import Dispatch

/// Fork-join over the machine's cores for the layers' own loops and for
/// the convolutions' blocked GEMMs.
///
/// Why our own threads rather than OpenBLAS's: with OpenBLAS threading only
/// the GEMMs ran in parallel while im2col, col2im, batch norm, ReLU and
/// pooling (about 40 % of a teacher step's single-core time) ran on one
/// core. A convolution therefore splits its batch between workers, each
/// running im2col + single-threaded sgemm on its share; OpenBLAS is set to
/// one thread for the duration and restored afterwards.
///
/// Consequence: drive one network at a time from one thread (the study's
/// training loops do); two threads running layers concurrently would race
/// on OpenBLAS's global thread count.
enum Parallel {
    /// OpenBLAS's thread count when the layers first ran (it follows
    /// OPENBLAS_NUM_THREADS or the core count). Read once, so that the
    /// set-to-1-and-restore below always restores this value even if two
    /// regions ever overlap (e.g. tests running concurrently).
    static let blasThreads = max(1, Int(openblas_get_num_threads()))

    /// Workers to use.
    static var width: Int { blasThreads }

    /// Runs body(0..<n) concurrently (n ≤ width), on the calling thread
    /// when n == 1.
    @inline(__always)
    static func run(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 { body(0); return }
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
    }

    /// As `run`, with OpenBLAS single-threaded inside (each worker calls
    /// sgemm on its own share).
    @inline(__always)
    static func runWithSerialBLAS(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 { body(0); return }
        openblas_set_num_threads(1)
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
        openblas_set_num_threads(Int32(blasThreads))
    }

    /// Splits 0..<count into ≤ width pieces whose starts are multiples of
    /// `align`, using one piece when count < minCount (too little work to
    /// pay for a fork-join, ~10 µs).
    @inline(__always)
    static func pieces(count: Int, align: Int, minCount: Int = 1 << 16) -> Int {
        if count < minCount { return 1 }
        return max(1, min(width, count / max(align, 1)))
    }

    @inline(__always)
    static func range(_ piece: Int, of n: Int, count: Int, align: Int) -> Range<Int> {
        let units = (count + align - 1) / align
        let lo = min(count, units * piece / n * align)
        let hi = piece == n - 1 ? count : min(count, units * (piece + 1) / n * align)
        return lo..<hi
    }
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
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
