import Foundation
import Reporting
import TensorIO

/// Calibration, post-hoc logit adjustment and the DRO trajectory for the
/// worst-class study (docs/protocol.md, "Metrics"). Pure functions on
/// logits, labels and metadata, so each number can be checked by hand.
public enum Calibration {
    /// B of the reliability bins and ECEs.
    public static let defaultBins = 10

    /// Row-wise softmax of N×K scores minus an optional per-class shift s
    /// (p = softmax(z − s)), in Double, max-subtracted so large logits do
    /// not overflow.
    public static func probabilities(logits z: [Float], classes k: Int, shift: [Double]? = nil) -> [Double] {
        precondition(k > 0 && z.count % k == 0, "probabilities: \(z.count) logits for \(k) classes")
        precondition(shift == nil || shift!.count == k, "probabilities: shift of \(shift!.count) classes for \(k)")
        var p = [Double](repeating: 0, count: z.count)
        for i in 0..<(z.count / k) {
            var m = -Double.infinity
            for j in 0..<k { m = max(m, Double(z[i * k + j]) - (shift?[j] ?? 0)) }
            var sum = 0.0
            for j in 0..<k {
                let e = exp(Double(z[i * k + j]) - (shift?[j] ?? 0) - m)
                p[i * k + j] = e
                sum += e
            }
            for j in 0..<k { p[i * k + j] /= sum }
        }
        return p
    }

    /// Bin of a confidence in [0, 1]: ⌊c·B⌋, with c = 1 in the last bin
    /// (bins [b/B, (b+1)/B), the last one closed). Values outside [0, 1]
    /// (rounding) are clamped.
    @inline(__always)
    public static func bin(_ c: Double, bins: Int) -> Int {
        min(bins - 1, max(0, Int((c * Double(bins)).rounded(.down))))
    }

    /// Reliability bins of (confidence, outcome) pairs and their ECE
    /// Σ_b (n_b/N)·|acc_b − conf_b| (0 for no pairs).
    public static func reliability(confidences: [Double], outcomes: [Bool], bins: Int) -> (ReliabilityBins, ece: Double) {
        precondition(confidences.count == outcomes.count && bins > 0)
        var n = [Int](repeating: 0, count: bins), conf = [Double](repeating: 0, count: bins)
        var hit = [Double](repeating: 0, count: bins)
        for (c, o) in zip(confidences, outcomes) {
            let b = bin(c, bins: bins)
            n[b] += 1
            conf[b] += c
            if o { hit[b] += 1 }
        }
        let total = Double(confidences.count)
        var ece = 0.0
        var meanConf = [Double](repeating: .nan, count: bins), acc = [Double](repeating: .nan, count: bins)
        for b in 0..<bins where n[b] > 0 {
            meanConf[b] = conf[b] / Double(n[b])
            acc[b] = hit[b] / Double(n[b])
            ece += Double(n[b]) / total * abs(acc[b] - meanConf[b])
        }
        return (ReliabilityBins(confidence: meanConf, accuracy: acc, count: n), confidences.isEmpty ? 0 : ece)
    }

    /// Every calibration number of N×K probabilities against the labels
    /// (`CalibrationMetrics`): per-class one-vs-rest ECE over all N images,
    /// their mean and max, top-label ECE, the reliability bins, and the
    /// accuracy and worst-class accuracy of argmax p (first index on ties).
    public static func measure(probabilities p: [Double], labels: [Int], classes k: Int,
                               bins: Int = defaultBins) -> CalibrationMetrics {
        let n = labels.count
        precondition(p.count == n * k, "calibration: \(p.count) probabilities for \(n) images × \(k) classes")
        var classwise: [Double] = [], classBins: [ReliabilityBins] = []
        for c in 0..<k {
            let (r, e) = reliability(confidences: (0..<n).map { p[$0 * k + c] }, outcomes: labels.map { $0 == c }, bins: bins)
            classwise.append(e)
            classBins.append(r)
        }
        var top: [Double] = [], correct: [Bool] = [], predictions: [Int] = []
        for i in 0..<n {
            var best = 0
            for j in 1..<k where p[i * k + j] > p[i * k + best] { best = j }
            predictions.append(best)
            top.append(p[i * k + best])
            correct.append(best == labels[i])
        }
        let (topBins, topECE) = reliability(confidences: top, outcomes: correct, bins: bins)
        let recall = Scores.perClassRecall(predictions: predictions, labels: labels, classes: k)
        return CalibrationMetrics(bins: bins, classwiseEce: classwise,
                                  classwiseEceMean: classwise.reduce(0, +) / Double(max(k, 1)),
                                  classwiseEceMax: classwise.max() ?? .nan, topLabelEce: topECE,
                                  accuracy: Scores.accuracy(predictions: predictions, labels: labels),
                                  worstClass: Scores.worstClass(recall: recall),
                                  reliability: topBins, classwiseReliability: classBins)
    }

    /// Post-hoc logit adjustment (Menon et al. 2021): ŷ = argmax_y
    /// (z_y − τ·log π_y) with π = counts / Σ counts, scored against the
    /// labels. nil when a class has no training example (log 0: the class
    /// would win every image, the adjustment is undefined).
    public static func logitAdjusted(logits z: [Float], labels: [Int], classes k: Int, trainCounts: [Int],
                                     tau: Double = 1) -> (metrics: LogitAdjustedMetrics, predictions: [Int])? {
        precondition(trainCounts.count == k)
        let total = Double(trainCounts.reduce(0, +))
        guard trainCounts.allSatisfy({ $0 > 0 }) else { return nil }
        let prior = trainCounts.map { Double($0) / total }
        let shift = prior.map { tau * log($0) }
        let n = labels.count
        let predictions = (0..<n).map { i -> Int in
            var best = 0, top = -Double.infinity
            for j in 0..<k {
                let v = Double(z[i * k + j]) - shift[j]
                if v > top { best = j; top = v }
            }
            return best
        }
        let recall = Scores.perClassRecall(predictions: predictions, labels: labels, classes: k)
        return (LogitAdjustedMetrics(tau: tau, classPriors: prior,
                                     accTest: Scores.accuracy(predictions: predictions, labels: labels),
                                     worstClass: Scores.worstClass(recall: recall), perClassRecall: recall),
                predictions)
    }

    /// The training class counts a student recorded (`distill` meta
    /// parameter `train_class_counts`): nil when absent (students written
    /// before it existed); an error when present but not K non-negative
    /// integers.
    public static func trainClassCounts(_ meta: ArtifactMeta?, classes k: Int, path: String) throws -> [Int]? {
        guard let j = meta?.parameters["train_class_counts"] else { return nil }
        guard let a = j.array, a.count == k else {
            throw EvaluationError("student '\(path)': meta parameter train_class_counts is not a list of \(k) counts (the subtask's classes)")
        }
        return try a.enumerated().map { c, v in
            guard let d = v.number, d >= 0, d == d.rounded(), d < 1e12 else {
                throw EvaluationError("student '\(path)': train_class_counts[\(c)] = \(v) is not a non-negative integer")
            }
            return Int(d)
        }
    }

    /// The `dro` object of an artifact's `meta.extra` (the contract with
    /// `distill` and `train-teacher`: updates, log_lambda_min,
    /// log_lambda_max, final_log_lambda, history with one row of G log λ
    /// per update, every, eta). nil when absent; an error naming the file
    /// and the field when present but malformed.
    public static func droTrajectory(_ meta: ArtifactMeta?, role: String, path: String) throws -> DROTrajectory? {
        guard let j = meta?.extra["dro"] else { return nil }
        func fail(_ why: String) -> EvaluationError {
            EvaluationError("\(role) '\(path)': meta.extra.dro \(why)")
        }
        guard let o = j.object else { throw fail("is not an object") }
        func number(_ key: String) throws -> Double {
            guard let d = o[key]?.number, d.isFinite else { throw fail("has no finite number '\(key)'") }
            return d
        }
        func integer(_ key: String, min lo: Int) throws -> Int {
            let d = try number(key)
            guard d == d.rounded(), d >= Double(lo), d < 1e12 else { throw fail("'\(key)' = \(d) is not an integer ≥ \(lo)") }
            return Int(d)
        }
        func vector(_ v: JSON?, _ what: String) throws -> [Double] {
            guard let a = v?.array else { throw fail("has no list '\(what)'") }
            return try a.enumerated().map { i, x in
                guard let d = x.number, d.isFinite else { throw fail("'\(what)'[\(i)] is not a finite number") }
                return d
            }
        }
        let updates = try integer("updates", min: 0), every = try integer("every", min: 1)
        let eta = try number("eta"), lo = try number("log_lambda_min"), hi = try number("log_lambda_max")
        let final = try vector(o["final_log_lambda"], "final_log_lambda")
        guard !final.isEmpty else { throw fail("'final_log_lambda' is empty") }
        guard let rows = o["history"]?.array else { throw fail("has no list 'history'") }
        let history = try rows.enumerated().map { i, r in try vector(r, "history[\(i)]") }
        guard history.count == updates else {
            throw fail("has \(history.count) history rows for \(updates) updates (one row per update)")
        }
        if let bad = history.firstIndex(where: { $0.count != final.count }) {
            throw fail("history[\(bad)] has \(history[bad].count) values for \(final.count) groups")
        }
        guard lo <= hi else { throw fail("log_lambda_min \(lo) > log_lambda_max \(hi)") }
        return DROTrajectory(updates: updates, logLambdaMin: lo, logLambdaMax: hi, finalLogLambda: final,
                             history: history, every: every, eta: eta)
    }

    /// metrics.npz entries of one calibration block under `prefix`
    /// (e.g. "student/calibration/").
    static func write(_ c: CalibrationMetrics, prefix: String, to a: inout Artifact) {
        let k = c.classwiseEce.count, b = c.bins
        a.set(prefix + "classwise_ece", NDArray(c.classwiseEce, shape: [k]))
        a.set(prefix + "classwise_ece_mean", NDArray([c.classwiseEceMean], shape: []))
        a.set(prefix + "classwise_ece_max", NDArray([c.classwiseEceMax], shape: []))
        a.set(prefix + "top_label_ece", NDArray([c.topLabelEce], shape: []))
        a.set(prefix + "accuracy", NDArray([c.accuracy ?? .nan], shape: []))
        a.set(prefix + "worst_class", NDArray([c.worstClass ?? .nan], shape: []))
        a.set(prefix + "reliability_confidence", NDArray(c.reliability.confidence, shape: [b]))
        a.set(prefix + "reliability_accuracy", NDArray(c.reliability.accuracy, shape: [b]))
        a.set(prefix + "reliability_count", NDArray(c.reliability.count.map { Int64($0) }, shape: [b]))
        if let r = c.classwiseReliability, r.count == k {
            a.set(prefix + "classwise_reliability_confidence", NDArray(r.flatMap(\.confidence), shape: [k, b]))
            a.set(prefix + "classwise_reliability_accuracy", NDArray(r.flatMap(\.accuracy), shape: [k, b]))
            a.set(prefix + "classwise_reliability_count", NDArray(r.flatMap { $0.count.map { Int64($0) } }, shape: [k, b]))
        }
    }

    /// metrics.npz entries of a DRO trajectory under `prefix`.
    static func write(_ d: DROTrajectory, prefix: String, to a: inout Artifact) {
        a.set(prefix + "history", NDArray(d.history.flatMap { $0 }, shape: [d.updates, d.groups]))
        a.set(prefix + "final_log_lambda", NDArray(d.finalLogLambda, shape: [d.groups]))
        a.set(prefix + "updates", NDArray([Int64(d.updates)], shape: []))
        a.set(prefix + "log_lambda_range", NDArray([d.logLambdaMin, d.logLambdaMax], shape: [2]))
        a.set(prefix + "every", NDArray([Int64(d.every)], shape: []))
        a.set(prefix + "eta", NDArray([d.eta], shape: []))
    }
}
