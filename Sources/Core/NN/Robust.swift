#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
import TensorIO

/// Which objective a network is trained with (docs/methods.md, "Robust
/// objectives"). Teacher objectives are `erm`, `balanced`, `dro`,
/// `reweighted`; student objectives `std`, `balanced`, `dro`, `reweighted`;
/// `erm` and `std` are the same thing (no shift) and both spellings parse.
public enum RobustMode: String, CaseIterable, Sendable {
    /// Plain ERM: no logit shift, no re-weighting.
    case std
    /// Logit adjustment with fixed uniform group weights λ = 1/G.
    case balanced
    /// λ updated by exponentiated-gradient ascent on validation group errors.
    case dro
    /// The re-weighting baseline: the costs of `balanced` (λ uniform) applied
    /// as per-example loss weights w_g, with no logit shift.
    case reweighted

    /// Parses `std`, `erm`, `balanced`, `dro`, `reweighted`.
    public init(parsing s: String) throws {
        switch s.lowercased() {
        case "std", "erm": self = .std
        case "balanced": self = .balanced
        case "dro": self = .dro
        case "reweighted": self = .reweighted
        default: throw TrainError(usage: "unknown robust objective '\(s)' (expected erm/std, balanced, dro or reweighted)")
        }
    }

    /// Whether the objective shifts the logits (the margin form).
    public var shiftsLogits: Bool { self == .balanced || self == .dro }
}

/// The robust (worst-class / worst-group) objective of Wang et al. 2022
/// ("Robust Distillation for Worst-class Performance"), built on the
/// logit-adjusted cost-sensitive losses of Narasimhan & Menon 2021.
///
/// Groups. G = C·A groups, group g = y·A + a for class y and state a
/// (`statesPerClass` A = 1: groups are the classes, worst-class; A = 2:
/// class × artifact state, worst-group).
///
/// Group weights λ on the simplex, start uniform. Every K steps (default 8)
/// the trainer measures each group's error rate on a validation batch and
/// calls `update(groupErrors:)`: λ ← λ ⊙ exp(η·err), renormalised (default
/// η = 0.2; exponentiated-gradient ascent). λ is stored as log λ so that long runs
/// cannot underflow a weight to 0.
///
/// Costs. With group priors π_g (training frequencies) the objective
/// (1 − β)·(average error) + β·Σ_g λ_g·err_g gives every example of group g
/// the cost w_g = ((1 − β)·π_g + β·λ_g) / π_g. For groups = classes this
/// is the margin (logit-adjusted) form (docs/methods.md, "Robust objectives"): the loss sees z − log w,
/// ℓ(y, z) = −log softmax(z − log w)_y (`logShift()`), not a re-weighting.
///
/// Groups beyond classes. A logit shift can only depend on the class, while
/// w_(y,a) also depends on the artifact state a, which the logits do not
/// see. We factor w_(y,a) = w̄_y · r_(y,a):
/// - w̄_y = ((1 − β)·π_y + β·λ_y) / π_y with the class marginals
///   π_y = Σ_a π_(y,a), λ_y = Σ_a λ_(y,a): the per-class margin, applied
///   as the logit shift log w̄ (`logShift()`);
/// - r_(y,a) = w_(y,a) / w̄_y, whose π-weighted mean within each class is 1:
///   applied as example re-weighting of the per-class margin loss
///   (`exampleWeights(groups:)` for hard labels, `reweightTargets` for soft
///   targets, where target j of an example in state a is scaled by r_(j,a)).
/// The minimiser of E[r·ℓ(y, z − log w̄)] has softmax(z − log w̄)_y ∝
/// E[r | x, y]·p(y|x), so its decision argmax_y Σ_a w_(y,a)·p(y, a | x) is
/// the Bayes rule of the group-weighted objective: the factorisation loses
/// nothing. With A = 1, r ≡ 1 and only the margin remains. The reference
/// code (p16i/subdistill) has no robust objective to compare with; this
/// factorisation is our choice for the worst-group case.
///
/// Note on β: with this formula β = 0 gives w ≡ 1 (plain ERM) whatever λ;
/// `balanced` (plain logit adjustment, w_y = 1/(C·π_y), i.e. softmax(z + log π))
/// is λ uniform at β = 1, the default.
///
/// Re-weighting (`reweighted`). The same costs w_g with λ uniform, applied
/// as example weights instead of a margin: L = (1/B) Σ_b w_(g_b)·ℓ(y_b, z_b)
/// on the raw logits (`logShift()` is nil, `exampleWeights` returns the
/// full w_g). Since π are the training frequencies, the mean of w over the
/// training set is Σ_g π_g·w_g = (1 − β) + β = 1 for every β: the weights
/// move the emphasis between classes, never the overall loss scale. With
/// hard labels both forms have the same Bayes decision, argmax_y w_y·p(y|x);
/// they differ in what a finite network fits (Wang et al. 2022 report
/// re-weighting as the weaker baseline), which is what the study compares.
///
/// Trajectory. Every `update` appends the new log λ to `history`, so a run
/// can record how far λ moved (`droRecord`); `history` is not part of
/// `exportState` (the snapshots of the kept epoch stay as they were) and is
/// saved and restored by the trainers' checkpoints on their own.
public struct RobustObjective: Equatable {
    public let mode: RobustMode
    public let classes: Int
    /// A: 1 for worst-class, the number of artifact states for worst-group.
    public let statesPerClass: Int
    /// π_g, length G = classes·statesPerClass, sums to 1, all positive.
    public let groupPriors: [Double]
    public let beta: Double
    public let eta: Double
    /// K: λ is updated after every K-th training step.
    public let updateEvery: Int
    /// log λ_g, normalised (log-sum-exp 0).
    public private(set) var logLambda: [Double]
    /// Number of λ updates so far.
    public private(set) var updates = 0
    /// log λ after each update, in order (one row of G values per update).
    public private(set) var history: [[Double]] = []

    public var groups: Int { classes * statesPerClass }

    /// Default schedule of the λ updates, K = 8 steps and η = 0.2 (both
    /// trainers). A group's log λ can gain at most η per update on another
    /// group's, so a run of U updates caps the spread at η·U. At the size of
    /// a `longtail` student (516 images at r = 30, batch 32, 40 epochs: 640
    /// steps) the earlier K = 32, η = 0.1 gave U = 20 and a cap of 2 nats,
    /// which the two tail classes hit (error 1 at every update; the
    /// student's worst class stayed 0); K = 8, η = 0.2 gives U = 80, a cap of
    /// 16, a measured spread of 7.7 nats and a worst class of 0.23
    /// (docs/methods.md, "Robust objectives").
    public static let defaultEta = 0.2
    public static let defaultUpdateEvery = 8

    /// - Parameters:
    ///   - groupPriors: π over the G groups (group g = y·A + a); normalised
    ///     here; every group must have positive mass (a group absent from
    ///     training has no defined cost). For `std` they are not used.
    public init(mode: RobustMode, classes: Int, statesPerClass: Int = 1, groupPriors: [Double],
                beta: Double = 1, eta: Double = RobustObjective.defaultEta,
                updateEvery: Int = RobustObjective.defaultUpdateEvery) throws {
        guard classes > 0, statesPerClass > 0 else {
            throw TrainError("robust objective: need classes > 0 and statesPerClass > 0, got \(classes), \(statesPerClass)")
        }
        let g = classes * statesPerClass
        guard groupPriors.count == g else {
            throw TrainError("robust objective: \(groupPriors.count) group priors for \(g) groups (\(classes) classes × \(statesPerClass) states)")
        }
        if mode != .std {
            // Every robust mode, re-weighting included, divides by π_g.
            if let bad = groupPriors.firstIndex(where: { !($0 > 0) || !$0.isFinite }) {
                throw TrainError("robust objective: group \(bad) has prior \(groupPriors[bad]); every group needs training examples")
            }
        }
        guard (0...1).contains(beta) else { throw TrainError("robust objective: beta must lie in [0, 1], got \(beta)") }
        guard eta >= 0, eta.isFinite else { throw TrainError("robust objective: eta must be ≥ 0, got \(eta)") }
        guard updateEvery > 0 else { throw TrainError("robust objective: update interval must be positive, got \(updateEvery)") }
        let total = groupPriors.reduce(0, +)
        self.mode = mode
        self.classes = classes
        self.statesPerClass = statesPerClass
        self.groupPriors = total > 0 ? groupPriors.map { $0 / total } : groupPriors
        self.beta = beta
        self.eta = eta
        self.updateEvery = updateEvery
        self.logLambda = [Double](repeating: -log(Double(g)), count: g)
    }

    /// Equal settings and state (log λ, update count); the trajectory
    /// `history` is a record of the run, not state, and is not compared.
    public static func == (a: RobustObjective, b: RobustObjective) -> Bool {
        a.mode == b.mode && a.classes == b.classes && a.statesPerClass == b.statesPerClass
            && a.groupPriors == b.groupPriors && a.beta == b.beta && a.eta == b.eta
            && a.updateEvery == b.updateEvery && a.logLambda == b.logLambda && a.updates == b.updates
    }

    /// λ on the simplex.
    public var lambda: [Double] { logLambda.map { exp($0) } }

    /// Class priors π_y = Σ_a π_(y,a).
    public var classPriors: [Double] {
        (0..<classes).map { y in (0..<statesPerClass).reduce(0) { $0 + groupPriors[y * statesPerClass + $1] } }
    }

    /// Whether λ is due for an update after training step `step` (counted
    /// from 1): only in `dro` mode, every `updateEvery` steps.
    public func isUpdateDue(step: Int) -> Bool {
        mode == .dro && step > 0 && step % updateEvery == 0
    }

    /// Exponentiated-gradient ascent: λ ← λ ⊙ exp(η·err), renormalised.
    /// `groupErrors` are error rates in [0, 1] per group (from
    /// `Robust.groupErrors`; a group absent from the batch passes 0 and keeps
    /// its weight up to the renormalisation). No effect unless mode is `dro`.
    public mutating func update(groupErrors: [Double]) throws {
        guard groupErrors.count == groups else {
            throw TrainError("robust update: \(groupErrors.count) error rates for \(groups) groups")
        }
        if let bad = groupErrors.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
            throw TrainError("robust update: error rate \(groupErrors[bad]) of group \(bad) is outside [0, 1]")
        }
        guard mode == .dro else { return }
        for g in 0..<groups { logLambda[g] += eta * groupErrors[g] }
        let m = logLambda.max()!
        let lse = m + log(logLambda.reduce(0) { $0 + exp($1 - m) })
        for g in 0..<groups { logLambda[g] -= lse }
        updates += 1
        history.append(logLambda)
    }

    /// Restores `history` from a checkpoint (rows of G values). The count
    /// must equal `updates` (restore the state first): a mismatch means the
    /// checkpoint is not this run's.
    public mutating func importHistory(_ rows: [[Double]]) throws {
        guard rows.count == updates, rows.allSatisfy({ $0.count == groups && $0.allSatisfy(\.isFinite) }) else {
            throw TrainError("robust state: \(rows.count) history rows for \(updates) updates of \(groups) groups")
        }
        history = rows
    }

    /// The λ trajectory of a `dro` run, for an artifact's `meta.extra.dro`:
    /// `updates`, `log_lambda_min` and `log_lambda_max` (over the start value
    /// −log G and every update, all groups), `final_log_lambda` (after the
    /// last update; the start value if there was none), `history` (one row
    /// of G log λ per update, in order), `every` (K) and `eta` (η). nil for
    /// other modes.
    public var droRecord: JSON? {
        guard mode == .dro else { return Optional<JSON>.none }
        return Self.droRecord(history: history, groups: groups, every: updateEvery, eta: eta)
    }

    /// `droRecord` of a trajectory kept apart from its objective (a trainer
    /// restores the kept epoch's λ at the end, but reports the whole run).
    public static func droRecord(history: [[Double]], groups: Int, every: Int, eta: Double) -> JSON {
        let start: Double = -log(Double(groups))
        var lo = start, hi = start
        for row in history { for x in row { lo = Swift.min(lo, x); hi = Swift.max(hi, x) } }
        let final: [Double] = history.last ?? [Double](repeating: start, count: groups)
        let rows: [JSON] = history.map { row in JSON.array(row.map { JSON.number($0) }) }
        var o: [String: JSON] = [:]
        o["updates"] = .number(Double(history.count))
        o["log_lambda_min"] = .number(lo)
        o["log_lambda_max"] = .number(hi)
        o["final_log_lambda"] = .array(final.map { JSON.number($0) })
        o["history"] = .array(rows)
        o["every"] = .number(Double(every))
        o["eta"] = .number(eta)
        return .object(o)
    }

    /// log of the per-group cost w_g = ((1 − β)·π_g + β·λ_g)/π_g, from log λ.
    private func logCost(prior: Double, logLambda ll: Double) -> Double {
        // log((1−β)π + βλ) − log π, without forming λ when β = 1.
        if beta == 1 { return ll - log(prior) }
        if beta == 0 { return 0 }
        return log((1 - beta) * prior + beta * exp(ll)) - log(prior)
    }

    /// log w̄_y per class: the margin of the logit-adjusted loss.
    private func logClassCosts() -> [Double] {
        let a = statesPerClass
        return (0..<classes).map { y in
            var prior = 0.0
            var ls: [Double] = []
            for s in 0..<a {
                prior += groupPriors[y * a + s]
                ls.append(logLambda[y * a + s])
            }
            let m = ls.max()!
            let llClass = m + log(ls.reduce(0) { $0 + exp($1 - m) })
            return logCost(prior: prior, logLambda: llClass)
        }
    }

    /// The per-class costs w̄_y (w_y when groups are the classes); for
    /// `reweighted` the class marginals of its example weights.
    public func classWeights() -> [Double] {
        mode == .std ? [Double](repeating: 1, count: classes) : logClassCosts().map { exp($0) }
    }

    /// The logit shift s = log w̄ (length C) to pass as `logShift` to the
    /// losses (which use z − s); nil in `std` and `reweighted` mode.
    public func logShift() -> [Float]? {
        mode.shiftsLogits ? logClassCosts().map { Float($0) } : nil
    }

    /// The full per-group costs w_g = ((1 − β)·π_g + β·λ_g)/π_g.
    public func groupCosts() -> [Double] {
        if mode == .std { return [Double](repeating: 1, count: groups) }
        return (0..<groups).map { exp(logCost(prior: groupPriors[$0], logLambda: logLambda[$0])) }
    }

    /// r_g = w_g / w̄_(class of g) for every group (all 1 when A = 1 or `std`).
    public func withinClassWeights() -> [Double] {
        if !mode.shiftsLogits || statesPerClass == 1 { return [Double](repeating: 1, count: groups) }
        let lc = logClassCosts()
        return (0..<groups).map { g in
            exp(logCost(prior: groupPriors[g], logLambda: logLambda[g]) - lc[g / statesPerClass])
        }
    }

    /// Per-example weights for a loss, from each example's group id
    /// g = y·A + a: r_(g_b) in the margin modes (the part of the cost the
    /// shift cannot carry), the whole cost w_(g_b) for `reweighted`; nil when
    /// they would all be 1.
    public func exampleWeights(groups ids: [Int]) throws -> [Float]? {
        if mode == .std || (mode.shiftsLogits && statesPerClass == 1) { return nil }
        let r = mode == .reweighted ? groupCosts() : withinClassWeights()
        return try ids.enumerated().map { i, g in
            guard g >= 0 && g < groups else { throw TrainError("robust weights: group id \(g) of example \(i) outside 0..<\(groups)") }
            return Float(r[g])
        }
    }

    /// Soft targets re-weighted per class by the example's artifact state:
    /// p̃_bj = p_bj · r_(j, a_b) (identity when A = 1 or `std`). Uses no
    /// ground-truth label, only the state a_b of each example. B×C → B×C.
    public func reweightTargets(_ targets: Tensor, states: [Int]) throws -> Tensor {
        guard targets.rank == 2, targets.shape[1] == classes else {
            throw TrainError("robust reweightTargets: targets \(targets.shape) are not B×\(classes)")
        }
        let b = targets.shape[0]
        guard states.count == b else {
            throw TrainError("robust reweightTargets: \(states.count) states for \(b) examples")
        }
        if !mode.shiftsLogits || statesPerClass == 1 { return targets }
        let a = statesPerClass, c = classes
        let r = withinClassWeights().map { Float($0) }
        var out = targets
        try out.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<b {
                let s = states[i]
                guard s >= 0 && s < a else { throw TrainError("robust reweightTargets: state \(s) of example \(i) outside 0..<\(a)") }
                for j in 0..<c { p[i * c + j] *= r[j * a + s] }
            }
        }
        return out
    }

    // MARK: State (for checkpoints)

    /// Named float arrays for a checkpoint: `log_lambda_bits` (G×4) holds
    /// each Double log λ_g as its 64-bit pattern in four 16-bit pieces (each
    /// exact in a Float), `updates` the update count as two exact floats, so
    /// a resumed run continues bit-for-bit.
    public func exportState() -> [(String, [Int], [Float])] {
        var bits: [Float] = []
        for x in logLambda {
            let u = x.bitPattern
            for k in 0..<4 { bits.append(Float((u >> (16 * UInt64(k))) & 0xFFFF)) }
        }
        let lo = Float(updates & 0xFFFFF), hi = Float(updates >> 20)
        return [("log_lambda_bits", [groups, 4], bits), ("updates", [2], [lo, hi])]
    }

    public mutating func importState(_ state: [(String, [Int], [Float])]) throws {
        var dict: [String: ([Int], [Float])] = [:]
        for (n, s, v) in state { dict[n] = (s, v) }
        guard let (s, bits) = dict["log_lambda_bits"], s == [groups, 4], bits.count == groups * 4 else {
            throw TrainError("robust state: missing or mis-shaped 'log_lambda_bits' (expected [\(groups), 4])")
        }
        guard let (us, u) = dict["updates"], us == [2], u.count == 2 else {
            throw TrainError("robust state: missing or mis-shaped 'updates'")
        }
        guard bits.allSatisfy({ $0 >= 0 && $0 < 65536 && $0 == $0.rounded() }) else {
            throw TrainError("robust state: 'log_lambda_bits' holds values that are not 16-bit integers")
        }
        var ll = [Double](repeating: 0, count: groups)
        for g in 0..<groups {
            var w: UInt64 = 0
            for k in 0..<4 { w |= UInt64(bits[g * 4 + k]) << (16 * UInt64(k)) }
            ll[g] = Double(bitPattern: w)
        }
        logLambda = ll
        updates = Int(u[0]) | (Int(u[1]) << 20)
    }
}

/// Helpers of the robust objectives and their metrics.
public enum Robust {
    /// Group id g = y·A + a of class y in artifact state a (A states).
    public static func groupIDs(labels: [Int], states: [Int], statesPerClass: Int) throws -> [Int] {
        guard labels.count == states.count else {
            throw TrainError("groupIDs: \(labels.count) labels but \(states.count) states")
        }
        return try zip(labels, states).enumerated().map { i, ys in
            guard ys.1 >= 0 && ys.1 < statesPerClass else {
                throw TrainError("groupIDs: state \(ys.1) of example \(i) outside 0..<\(statesPerClass)")
            }
            return ys.0 * statesPerClass + ys.1
        }
    }

    /// Empirical priors: frequency of each id in 0..<count.
    public static func priors(ids: [Int], count: Int) throws -> [Double] {
        guard !ids.isEmpty else { throw TrainError("priors: no examples") }
        var n = [Int](repeating: 0, count: count)
        for (i, g) in ids.enumerated() {
            guard g >= 0 && g < count else { throw TrainError("priors: id \(g) of example \(i) outside 0..<\(count)") }
            n[g] += 1
        }
        return n.map { Double($0) / Double(ids.count) }
    }

    /// Per-group error rate err_g = #{b in g : ŷ_b ≠ y_b} / #{b in g}, and
    /// the group sizes. A group with no example gets error 0.
    public static func groupErrors(predictions: [Int], labels: [Int], groups: [Int],
                                   groupCount: Int) throws -> (errors: [Double], counts: [Int]) {
        guard predictions.count == labels.count, labels.count == groups.count else {
            throw TrainError("groupErrors: \(predictions.count) predictions, \(labels.count) labels, \(groups.count) group ids")
        }
        var wrong = [Int](repeating: 0, count: groupCount)
        var n = [Int](repeating: 0, count: groupCount)
        for i in labels.indices {
            let g = groups[i]
            guard g >= 0 && g < groupCount else {
                throw TrainError("groupErrors: group id \(g) of example \(i) outside 0..<\(groupCount)")
            }
            n[g] += 1
            if predictions[i] != labels[i] { wrong[g] += 1 }
        }
        let errors = (0..<groupCount).map { n[$0] > 0 ? Double(wrong[$0]) / Double(n[$0]) : 0 }
        return (errors, n)
    }

    /// Per-class recall (accuracy within each true class); nil entries for
    /// classes with no example.
    public static func perClassRecall(predictions: [Int], labels: [Int], classes: Int) throws -> [Double?] {
        let (err, n) = try groupErrors(predictions: predictions, labels: labels, groups: labels, groupCount: classes)
        return (0..<classes).map { n[$0] > 0 ? 1 - err[$0] : nil }
    }

    /// Worst-class accuracy: the minimum per-class recall over the classes
    /// present (docs/methods.md, "Robust objectives", metrics).
    public static func worstClassAccuracy(predictions: [Int], labels: [Int], classes: Int) throws -> Double {
        let r = try perClassRecall(predictions: predictions, labels: labels, classes: classes).compactMap { $0 }
        guard let m = r.min() else { throw TrainError("worstClassAccuracy: no examples") }
        return m
    }

    /// The `calibrated` teacher (docs/methods.md, "Robust objectives"): undo the teacher's training
    /// shift before distilling, so the student receives estimates of P(y|x).
    ///
    /// A teacher trained with ℓ(y, z) = −log softmax(z − log w_t)_y reaches
    /// softmax(z_t − log w_t) ≈ P(y|x) at its optimum (its raw logits z_t
    /// rank classes by w_t,y·P(y|x), the robust decision). The calibrated
    /// probabilities are therefore
    ///
    ///     p_t = softmax((z_t − log w_t) / T)
    ///
    /// The shift is subtracted (docs/methods.md, "Robust objectives"): the
    /// loss sees z − log w, so adding log w_t would double the shift instead
    /// of undoing it; this is the inverse of the training
    /// shift, and the tests check it by training logits with the shifted loss
    /// and recovering the target distribution. `teacherLogShift` is the
    /// teacher's s = log w_t (`RobustObjective.logShift()` at the end of its
    /// training). B×C → B×C.
    public static func calibratedTeacherProbs(teacherLogits: Tensor, teacherLogShift: [Float],
                                              temperature: Float = 1) throws -> Tensor {
        guard teacherLogits.rank == 2, teacherLogits.shape[1] == teacherLogShift.count else {
            throw TrainError("calibratedTeacherProbs: logits \(teacherLogits.shape) and shift of \(teacherLogShift.count) classes")
        }
        guard temperature > 0 else { throw TrainError("calibratedTeacherProbs: temperature must be positive") }
        var z = teacherLogits
        let c = teacherLogShift.count
        z.data.withUnsafeMutableBufferPointer { p in
            teacherLogShift.withUnsafeBufferPointer { s in
                for i in 0..<(p.count / max(c, 1)) {
                    for j in 0..<c { p[i * c + j] -= s[j] }
                }
            }
        }
        return Loss.softmax(z, temperature: temperature)
    }
}
