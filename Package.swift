// swift-tools-version:6.0
// SubDistill-Swift: distil small students out of a large teacher and measure
// how each method holds up under a spurious correlation. See README.md.
import Foundation
import PackageDescription

/// Hot numeric code: release builds already use -O; whole-module optimisation
/// lets the kernels inline across files. On x86-64 the code targets
/// Haswell (AVX2, FMA, BMI2: x86-64-v3, every x86 laptop and server CPU since 2013–15)
/// instead of the SSE2 baseline, so the SIMD8 kernels (Winograd transforms,
/// batch norm, pooling) run as one 256-bit instruction each instead of two.
/// Swift contracts no a·b + c into an FMA, so results stay bit-identical to
/// a baseline build (measured: a 2-epoch teacher from both builds, `tensors
/// diff` with tolerance 0). bench-nn: teacher step 1.05–1.07× the baseline
/// build; `-target-cpu native` (AVX-512 here) was no faster.
/// For an x86 CPU without AVX2 (before 2013), build with
/// `SUBDISTILL_BASELINE_CPU=1 make build` after removing `.build` (same
/// results, slower kernels).
#if arch(x86_64)
let cpuFlags = ProcessInfo.processInfo.environment["SUBDISTILL_BASELINE_CPU"] == nil ? ["-target-cpu", "haswell"] : []
#else
let cpuFlags: [String] = []
#endif
let fast: [SwiftSetting] = [.unsafeFlags(["-wmo"] + cpuFlags, .when(configuration: .release))]

let package = Package(
    name: "SubDistill",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tensors", targets: ["Tensors"]),
        .executable(name: "synthesize", targets: ["Synthesize"]),
        .executable(name: "train-teacher", targets: ["TrainTeacher"]),
        .executable(name: "extract-subspace", targets: ["ExtractSubspace"]),
        .executable(name: "distill", targets: ["DistillCLI"]),
        .executable(name: "select-hparams", targets: ["SelectHParams"]),
        .executable(name: "evaluate", targets: ["Evaluate"]),
        .executable(name: "report", targets: ["Report"]),
        .executable(name: "bench-io", targets: ["BenchIO"]),
        .executable(name: "bench-nn", targets: ["BenchNN"]),
        .executable(name: "bench-distill", targets: ["BenchDistill"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Core, C side (Sources/Core): system libraries and small C shims.
        .systemLibrary(name: "CZlib", path: "Sources/Core/CZlib"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/Core/COpenBLAS"),
        // Sets OpenBLAS single-threaded at load in every process linking NN.
        .target(name: "CSerialBLAS", dependencies: ["COpenBLAS"], path: "Sources/Core/CSerialBLAS"),
        // Persistent spin-then-sleep workers for the layers' fork-joins.
        .target(name: "CWorkerPool", path: "Sources/Core/CWorkerPool", linkerSettings: [.linkedLibrary("pthread")]),
        // The git commit baked in at build time (scripts/build-info.sh; see build_info.c).
        .target(name: "CBuildInfo", path: "Sources/Core/CBuildInfo"),

        // Core (Sources/Core): numerics, tensor I/O, the network engine, what
        // every stage and command line shares.
        .target(name: "SeededRNG", path: "Sources/Core/SeededRNG", swiftSettings: fast),
        .target(name: "TensorIO", dependencies: ["CZlib", "CBuildInfo"], path: "Sources/Core/TensorIO", swiftSettings: fast),
        .target(name: "NN", dependencies: ["COpenBLAS", "CSerialBLAS", "CWorkerPool", "TensorIO", "SeededRNG"], path: "Sources/Core/NN", swiftSettings: fast),
        .target(name: "StageKit", dependencies: ["NN", "TensorIO", "COpenBLAS"], path: "Sources/Core/StageKit", swiftSettings: fast),
        // What every command line shares: the error path and exit status,
        // --version, the --threads/--seed/--quiet option groups.
        .target(name: "CLIKit", dependencies: [
            "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Core/CLIKit"),

        // The study (Sources/Study): one library per stage (docs/stages.md).
        .target(name: "ShapesWorld", dependencies: ["TensorIO", "SeededRNG", "CZlib"], path: "Sources/Study/ShapesWorld", swiftSettings: fast),
        .target(name: "Subspace", dependencies: ["COpenBLAS", "TensorIO", "SeededRNG"], path: "Sources/Study/Subspace", swiftSettings: fast),
        .target(name: "Distill", dependencies: ["NN", "COpenBLAS", "TensorIO", "Subspace", "StageKit"], path: "Sources/Study/Distill", swiftSettings: fast),
        .target(name: "Training", dependencies: ["NN", "TensorIO", "StageKit"], path: "Sources/Study/Training", swiftSettings: fast),
        .target(name: "Extraction", dependencies: ["NN", "Subspace", "TensorIO", "StageKit", "COpenBLAS"], path: "Sources/Study/Extraction", swiftSettings: fast),
        .target(name: "Evaluation", dependencies: ["NN", "TensorIO", "StageKit", "Reporting", "COpenBLAS", "Subspace"], path: "Sources/Study/Evaluation", swiftSettings: fast),
        .target(name: "Reporting", dependencies: ["TensorIO"], path: "Sources/Study/Reporting"),

        // The stages (Sources/Stages): one thin command line each, its folder
        // named after the command; each calls its library in Sources/Study.
        .executableTarget(name: "Tensors", dependencies: [
            "CLIKit", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/tensors"),
        .executableTarget(name: "Synthesize", dependencies: [
            "CLIKit", "ShapesWorld", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/synthesize"),
        .executableTarget(name: "TrainTeacher", dependencies: [
            "CLIKit", "Training", "StageKit", "NN", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/train-teacher", swiftSettings: fast),
        .executableTarget(name: "ExtractSubspace", dependencies: [
            "CLIKit", "Extraction", "Subspace", "StageKit", "NN", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/extract-subspace", swiftSettings: fast),
        .executableTarget(name: "DistillCLI", dependencies: [
            "CLIKit", "Distill", "StageKit", "NN", "TensorIO", "Subspace", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/distill", swiftSettings: fast),
        .executableTarget(name: "SelectHParams", dependencies: [
            "CLIKit", "Distill", "StageKit", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/select-hparams"),
        .executableTarget(name: "Evaluate", dependencies: [
            "CLIKit", "Evaluation", "StageKit", "NN", "TensorIO", "Reporting", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/evaluate", swiftSettings: fast),
        .executableTarget(name: "Report", dependencies: [
            "CLIKit", "Reporting", "TensorIO", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Stages/report"),
        // Benchmarks (Sources/Bench; `make bench`, docs/speed.md).
        .executableTarget(name: "BenchIO", dependencies: [
            "CLIKit", "TensorIO", "SeededRNG", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Bench/bench-io", swiftSettings: fast),
        .executableTarget(name: "BenchNN", dependencies: [
            "CLIKit", "NN", "COpenBLAS", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Bench/bench-nn", swiftSettings: fast),
        .executableTarget(name: "BenchDistill", dependencies: [
            "CLIKit", "Distill", "StageKit", "NN", "TensorIO", "ShapesWorld", "Subspace", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/Bench/bench-distill", swiftSettings: fast),

        // Tests.
        .target(name: "TestSupport", path: "Sources/TestSupport"),
        .testTarget(name: "TensorIOTests", dependencies: ["TestSupport", "TensorIO"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TensorIO"]),
        .testTarget(name: "ShapesWorldTests", dependencies: ["TestSupport", "ShapesWorld", "TensorIO", "SeededRNG"]),
        .testTarget(name: "SubspaceTests", dependencies: ["TestSupport", "Subspace", "TensorIO", "SeededRNG"]),
        .testTarget(name: "DistillTests", dependencies: ["Distill", "NN", "StageKit", "Subspace", "TensorIO", "ShapesWorld"]),
        .testTarget(name: "ReportingTests", dependencies: ["Reporting", "TensorIO"]),
        .testTarget(name: "StageKitTests", dependencies: ["StageKit", "NN", "TensorIO"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "StageKit", "NN", "TensorIO"]),
        .testTarget(name: "ExtractionTests", dependencies: ["TestSupport", "Extraction", "Subspace", "StageKit", "NN", "TensorIO"]),
        .testTarget(name: "CLIKitTests", dependencies: ["CLIKit", "TensorIO", "StageKit", "Distill", "ShapesWorld", "Reporting",
                                                    .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Seeded mutations of every artifact kind through the stages' readers (make test).
        .testTarget(name: "FuzzTests", dependencies: ["TensorIO", "StageKit", "NN", "Subspace", "Reporting", "SeededRNG"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "StageKit", "NN", "TensorIO", "Reporting", "Subspace"]),
    ],
    swiftLanguageModes: [.v5]
)
