import Foundation
import Testing
import TensorIO
@testable import SeededRNG
@testable import NN

private func modelParameters() -> [Parameter] {
    var r = RNG(seed: 5)
    return [Parameter(name: "fc1.weight", shape: [3, 2], value: (0..<6).map { _ in Float(r.normal()) }),
            Parameter(name: "fc1.bias", shape: [3], value: (0..<3).map { _ in Float(r.normal()) }, decays: false),
            Parameter(name: "fc2.weight", shape: [2, 3], value: (0..<6).map { _ in Float(r.normal()) })]
}

/// Value-dependent pseudo-gradients drawn from a generator whose state is
/// part of the checkpoint: resume is exact only if values, optimiser state
/// and generator state all are.
private func noisyGradients(_ ps: [Parameter], _ rng: inout RNG) {
    for p in ps {
        for i in 0..<p.count { p.grad[i] = p.value[i] * 0.3 + Float(rng.normal()) }
    }
}

/// Runs `steps` steps; returns the state at `snapshotAt` (if reached).
private func train(_ ps: [Parameter], _ opt: Optimizer, _ rng: inout RNG, robust: inout RobustObjective,
                   from start: Int, to end: Int, snapshotAt: Int? = nil,
                   snapshot: ((Int, RNG, RobustObjective) throws -> Void)? = nil) rethrows {
    for t in start..<end {
        if t == snapshotAt { try snapshot?(t, rng, robust) }
        noisyGradients(ps, &rng)
        clipGradientNorm(ps, maxNorm: 2)
        opt.step()
        if (t + 1) % 3 == 0 {
            try? robust.update(groupErrors: [Double(rng.uniform()), Double(rng.uniform())])
        }
    }
}

@Suite struct CheckpointTests {
    @Test func trainingStateRoundTripsThroughArtifact() throws {
        let state = TrainingState(
            model: [("conv.weight", [2, 2], [1, -2, 3.5, .pi]), ("bn.running_mean", [2], [0.1, -0.0])],
            optimizer: [("step", [2], [7, 0]), ("conv.weight.exp_avg", [2, 2], [1e-30, 2, 3, .greatestFiniteMagnitude])],
            extra: [("log_lambda_bits", [1, 4], [1, 2, 3, 65535])],
            rngStates: [("augment", [0, 1, UInt64.max, 0x8000_0000_0000_0000])],
            counters: [("epoch", 12), ("best_epoch", -1)])
        let a = try Checkpoint.artifact(state)
        #expect(a.names.contains("model/conv.weight") && a.names.contains("rng/augment") && a.names.contains("counter/epoch"))
        let back = try Checkpoint.state(from: a)
        #expect(back.model.map { $0.0 } == ["conv.weight", "bn.running_mean"])
        for (x, y) in zip(back.model + back.optimizer + back.extra, state.model + state.optimizer + state.extra) {
            #expect(x.0 == y.0 && x.1 == y.1)
            #expect(x.2.map(\.bitPattern) == y.2.map(\.bitPattern))  // −0 and extremes bit-exact
        }
        #expect(try back.rngState("augment") == [0, 1, UInt64.max, 0x8000_0000_0000_0000])
        #expect(try back.counter("epoch") == 12 && back.counter("best_epoch") == -1)
        #expect(throws: TrainError.self) { try back.counter("missing") }
    }

    @Test func checkpointFileRoundTrip() throws {
        let ps = modelParameters()
        let opt = try AdamW(parameters: ps)
        for p in ps { for i in 0..<p.count { p.grad[i] = Float(i) - 1 } }
        opt.step()
        let state = TrainingState(model: Checkpoint.namedArrays(ps), optimizer: opt.exportState(),
                                  rngStates: [("shuffle", [UInt64.max, 3, 0, 1 << 63])], counters: [("epoch", 3)])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nntrain-ckpt-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ckpt.npz").path
        try Checkpoint.save(state, meta: ArtifactMeta(stage: "train-student", seed: 1), to: path)
        let back = try Checkpoint.load(path)
        #expect(back.model.map { $0.0 } == ps.map { $0.name })
        for (x, y) in zip(back.model + back.optimizer, state.model + state.optimizer) {
            #expect(x.0 == y.0 && x.1 == y.1 && x.2.map(\.bitPattern) == y.2.map(\.bitPattern))
        }
        #expect(try back.rngState("shuffle") == [UInt64.max, 3, 0, 1 << 63] && back.counter("epoch") == 3)
        let fresh = try AdamW(parameters: modelParameters())
        try fresh.importState(back.optimizer)
        #expect(fresh.stepCount == 1)
        #expect(throws: (any Error).self) { try Checkpoint.load(dir.appendingPathComponent("missing.npz").path) }
    }

    @Test func malformedCheckpointsAreRejected() throws {
        var a = Artifact()
        #expect(throws: TrainError.self) {
            try Checkpoint.add([("x", [2], [1, 2]), ("x", [2], [3, 4])], prefix: "model/", to: &a)
        }
        var b = Artifact()
        b.set("model/w", NDArray([1.0, 2.0] as [Double], shape: [2]))
        #expect(throws: TrainError.self) { try Checkpoint.state(from: b) }
        var c = Artifact()
        c.set("counter/epoch", NDArray([1.5] as [Float], shape: [1]))
        #expect(throws: TrainError.self) { try Checkpoint.state(from: c) }
        let ps = modelParameters()
        #expect(throws: TrainError.self) { try Checkpoint.restore(ps, from: [("fc1.weight", [6], [Float](repeating: 0, count: 6))]) }
        #expect(throws: TrainError.self) { try Checkpoint.restore(ps, from: Array(Checkpoint.namedArrays(ps).dropLast())) }
    }

    @Test func resumeFromArtifactContinuesBitExactly() throws {
        let total = 20, cut = 11
        func fresh() throws -> ([Parameter], AdamW, RNG, RobustObjective) {
            let ps = modelParameters()
            return (ps, try AdamW(parameters: ps, learningRate: 0.01, weightDecay: 0.01), RNG(seed: 77),
                    try RobustObjective(mode: .dro, classes: 2, groupPriors: [0.7, 0.3]))
        }
        // Uninterrupted run, snapshotting to an artifact at `cut`.
        var (ref, refOpt, refRNG, refRobust) = try fresh()
        var saved: Artifact?
        try train(ref, refOpt, &refRNG, robust: &refRobust, from: 0, to: total, snapshotAt: cut) { t, rng, robust in
            saved = try Checkpoint.artifact(TrainingState(
                model: Checkpoint.namedArrays(ref), optimizer: refOpt.exportState(), extra: robust.exportState(),
                rngStates: [("grad", rngWords(rng))], counters: [("step", t)]))
        }
        // Resume into fresh objects from the artifact only.
        let state = try Checkpoint.state(from: try #require(saved))
        var (ps, opt, _, robust) = try fresh()
        try Checkpoint.restore(ps, from: state.model)
        try opt.importState(state.optimizer)
        try robust.importState(state.extra)
        var rng = try rngFromWords(state.rngState("grad"))
        let start = try state.counter("step")
        #expect(start == cut)
        train(ps, opt, &rng, robust: &robust, from: start, to: total)
        for (a, b) in zip(ref, ps) { #expect(a.value == b.value, "\(a.name) differs after resume") }
        #expect(robust == refRobust && opt.stepCount == refOpt.stepCount)
    }
}

// RNG's state words are internal to SeededRNG (read here through
// @testable); the trainer needs a public accessor for them (see report).
private func rngWords(_ rng: RNG) -> [UInt64] { [rng.s0, rng.s1, rng.s2, rng.s3] }

private func rngFromWords(_ w: [UInt64]) throws -> RNG {
    guard w.count == 4 else { throw TrainError("generator state needs 4 words, got \(w.count)") }
    var r = RNG(seed: 0)
    (r.s0, r.s1, r.s2, r.s3) = (w[0], w[1], w[2], w[3])
    return r
}
