import ArgumentParser

/// `--threads N`, shared by the tools that compute in parallel. Results do
/// not depend on it (every parallel pass is thread-invariant).
public struct ThreadsOption: ParsableArguments {
    @Option(help: "Compute threads (default: all cores; SLURM_CPUS_PER_TASK wins).")
    public var threads: Int?

    public init() {}
}

/// `--seed S`, shared by the stages that draw random numbers: the same seed
/// and inputs give the same artifact, bit for bit. What a stage seeds is in
/// its `--help` discussion.
public struct SeedOption: ParsableArguments {
    @Option(help: "Seed of every random draw of the stage (same seed, same result).")
    public var seed: UInt64 = 0

    public init() {}
}

/// `--quiet` / `-q`: no progress lines on stderr (warnings and errors still print).
public struct QuietFlag: ParsableArguments {
    @Flag(name: .shortAndLong, help: "No progress lines on stderr (warnings and errors still print).")
    public var quiet = false

    public init() {}
}
