import NN
import StageKit
import TensorIO

extension DistillTrainer {
    // MARK: State

    /// Everything that defines the current candidate's weights: the student's
    /// state, the layer losses' parameters and buffers, the robust λ.
    struct Snapshot {
        var model: [(String, [Int], [Float])]
        var method: [(String, [Int], [Float])]
    }

    func snapshot() -> Snapshot {
        var m: [(String, [Int], [Float])] = []
        for (i, l) in losses.enumerated() {
            for p in l.parameters { m.append(("param/\(p.name)", p.shape, p.value)) }
            for (n, s, v) in l.stateBuffers { m.append(("buffer/\(pairs[i].label).\(n)", s, v)) }
        }
        for (n, s, v) in robust.exportState() { m.append(("robust/\(n)", s, v)) }
        return Snapshot(model: student.state.map { ($0.name, $0.shape, $0.values) }, method: m)
    }

    func restore(_ s: Snapshot) throws {
        do {
            try student.setState(s.model.map { (name: $0.0, shape: $0.1, values: $0.2) })
        } catch let e as NNError {
            throw DistillError("checkpoint does not fit the student: \(e.message)")
        }
        func strip(_ prefix: String) -> [(String, [Int], [Float])] {
            s.method.filter { $0.0.hasPrefix(prefix) }.map { (String($0.0.dropFirst(prefix.count)), $0.1, $0.2) }
        }
        let params = strip("param/")
        for (i, l) in losses.enumerated() {
            try Checkpoint.restore(l.parameters, from: params)
            try l.loadStateBuffers(strip("buffer/\(pairs[i].label)."))
        }
        try robust.importState(strip("robust/"))
    }

    /// The method's state for `student.npz` (`method/<name>`), see `DistillResult.methodState`.
    func exportMethodState() -> [(String, [Int], [Float])] {
        var out: [(String, [Int], [Float])] = []
        for (i, l) in losses.enumerated() {
            let label = pairs[i].label
            for p in l.parameters { out.append((p.name, p.shape, p.value)) }
            for (n, s, v) in l.stateBuffers { out.append(("\(label).\(n)", s, v)) }
            for (n, s, v) in l.exportedValues { out.append(("\(label).\(n)", s, v)) }
        }
        for (n, s, v) in robust.exportState() { out.append(("robust/\(n)", s, v)) }
        let shift = robust.logShift() ?? [Float](repeating: 0, count: classes)
        out.append(("robust/log_shift", [classes], shift))
        out.append(("robust/lambda", [robust.groups], robust.lambda.map { Float($0) }))
        return out
    }

    /// The λ trajectories (`RobustObjective.history`) go into the metadata
    /// as JSON numbers, which round-trip doubles exactly: `dro_current` for
    /// the candidate in progress, `dro_chosen` for the kept one. Only for
    /// `dro`, so other runs' checkpoints are unchanged.
    func checkpointArtifact(candidate: Int, epoch: Int, logs: [TrainingLog], best: Snapshot?,
                            chosen: (index: Int, snapshot: Snapshot)?, chosenHistory: [[Double]] = []) throws -> Artifact {
        var extra: [String: JSON] = [:]
        if config.objective == .dro {
            func rows(_ h: [[Double]]) -> JSON { .array(h.map { .array($0.map { .number($0) }) }) }
            extra["dro_current"] = rows(epoch > 0 ? robust.history : [])
            extra["dro_chosen"] = rows(chosenHistory)
        }
        var a = Artifact(meta: ArtifactMeta(stage: "distill-checkpoint", extra: extra))
        func counter(_ name: String, _ v: Int) { a.set("counter/\(name)", NDArray([Int64(v)], shape: [1])) }
        counter("candidate", candidate)
        counter("epoch", epoch)
        counter("logs", logs.count)
        counter("chosen", chosen?.index ?? -1)
        if epoch > 0 {
            let cur = snapshot()
            try Checkpoint.add(cur.model, prefix: "cur/model/", to: &a)
            try Checkpoint.add(cur.method, prefix: "cur/method/", to: &a)
            try Checkpoint.add(optimizer.exportState(), prefix: "cur/optim/", to: &a)
            guard let best else { throw DistillError("internal: no best snapshot mid-candidate", kind: .failure) }
            try Checkpoint.add(best.model, prefix: "best/model/", to: &a)
            try Checkpoint.add(best.method, prefix: "best/method/", to: &a)
        }
        if let chosen {
            try Checkpoint.add(chosen.snapshot.model, prefix: "chosen/model/", to: &a)
            try Checkpoint.add(chosen.snapshot.method, prefix: "chosen/method/", to: &a)
        }
        for (c, l) in logs.enumerated() { l.write(into: &a, prefix: "log\(c)/") }
        return a
    }

    func restoreCheckpoint(_ a: Artifact) throws -> (candidate: Int, epoch: Int, logs: [TrainingLog],
                                                     best: Snapshot?, chosen: (index: Int, snapshot: Snapshot)?,
                                                     chosenHistory: [[Double]]) {
        func rows(_ key: String) throws -> [[Double]] {
            guard config.objective == .dro else { return [] }
            guard case .array(let r)? = a.meta?.extra[key] else { throw DistillError("checkpoint: no λ trajectory '\(key)'") }
            return try r.map { row in
                guard case .array(let v) = row else { throw DistillError("checkpoint: malformed λ trajectory '\(key)'") }
                return try v.map { guard let x = $0.number else { throw DistillError("checkpoint: malformed λ trajectory '\(key)'") }; return x }
            }
        }
        func counter(_ name: String) throws -> Int {
            guard let v = a["counter/\(name)"], v.dtype == .int64, v.count == 1 else {
                throw DistillError("checkpoint: no counter '\(name)'")
            }
            return Int(try v.int64s()[0])
        }
        let cand = try counter("candidate"), epoch = try counter("epoch"), nLogs = try counter("logs")
        let ch = try counter("chosen")
        guard cand >= 0, cand <= config.lambdaLayers.count, epoch >= 0, epoch < config.epochs,
              nLogs == (epoch > 0 ? cand + 1 : cand), ch < cand else {
            throw DistillError("checkpoint: inconsistent counters (candidate \(cand), epoch \(epoch), logs \(nLogs), chosen \(ch))")
        }
        let logs = try (0..<nLogs).map { try TrainingLog(from: a, prefix: "log\($0)/") }
        var best: Snapshot?
        if epoch > 0 {
            try setUpCandidate(cand)
            try restore(Snapshot(model: Checkpoint.arrays(prefix: "cur/model/", from: a),
                                 method: Checkpoint.arrays(prefix: "cur/method/", from: a)))
            try optimizer.importState(Checkpoint.arrays(prefix: "cur/optim/", from: a))
            do { try robust.importHistory(try rows("dro_current")) } catch let e as TrainError {
                throw DistillError("checkpoint: \(e.message)")
            }
            best = Snapshot(model: try Checkpoint.arrays(prefix: "best/model/", from: a),
                            method: try Checkpoint.arrays(prefix: "best/method/", from: a))
        }
        var chosen: (index: Int, snapshot: Snapshot)?
        if ch >= 0 {
            chosen = (ch, Snapshot(model: try Checkpoint.arrays(prefix: "chosen/model/", from: a),
                                   method: try Checkpoint.arrays(prefix: "chosen/method/", from: a)))
        }
        return (cand, epoch, logs, best, chosen, try rows("dro_chosen"))
    }
}
