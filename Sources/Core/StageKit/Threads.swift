import Foundation
import NN

/// Thread count for a stage: `SLURM_CPUS_PER_TASK` under Slurm (so a job
/// step never oversubscribes its allocation), else `--threads` when given,
/// else every core of the machine. Applied to the NN layers' own
/// parallelism (`ComputeThreads`); OpenBLAS itself always runs
/// single-threaded (see `ComputeThreads`), so the count changes speed only:
/// a stage computes the same bits with any thread count.
public enum Threads {
    @discardableResult
    public static func configure(requested: Int? = nil) -> Int {
        var n = ProcessInfo.processInfo.activeProcessorCount
        if let r = requested, r > 0 { n = r }
        if let s = ProcessInfo.processInfo.environment["SLURM_CPUS_PER_TASK"], let v = Int(s), v > 0 { n = v }
        ComputeThreads.configure(n)
        return n
    }
}
