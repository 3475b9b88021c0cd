import Foundation
import NN

/// The classification scores of the `evaluate` stage (docs/protocol.md,
/// "Metrics"), computed on prediction arrays so that each one
/// can be checked by hand. Predictions are argmax indices over the subtask
/// classes 0..K−1 (first index on ties, as `Loss.argmax`). All scores are
/// fractions in [0, 1]; a score over an empty set is NaN (written as "NaN"
/// in metrics.json), never a crash.
public enum Scores {

    /// accuracy = (1/N) Σ_i 1[ŷ_i = y_i].
    public static func accuracy(predictions: [Int], labels: [Int]) -> Double {
        labels.isEmpty ? .nan : Loss.accuracy(predictions: predictions, labels: labels)
    }

    /// Per-class recall r_c = |{i : y_i = c, ŷ_i = c}| / |{i : y_i = c}|,
    /// index = class; NaN for a class without images.
    public static func perClassRecall(predictions: [Int], labels: [Int], classes: Int) -> [Double] {
        precondition(predictions.count == labels.count, "perClassRecall: \(predictions.count) predictions for \(labels.count) labels")
        var hits = [Int](repeating: 0, count: classes), total = [Int](repeating: 0, count: classes)
        for i in 0..<labels.count {
            let y = labels[i]
            guard y >= 0 && y < classes else { continue }
            total[y] += 1
            if predictions[i] == y { hits[y] += 1 }
        }
        return (0..<classes).map { total[$0] > 0 ? Double(hits[$0]) / Double(total[$0]) : .nan }
    }

    /// Worst-class accuracy = min_c r_c over the classes that have images
    /// (NaN when none has).
    public static func worstClass(recall: [Double]) -> Double {
        recall.filter { !$0.isNaN }.min() ?? .nan
    }

    /// Accuracy of each group g = 2·class + artifact state (0: no artifact,
    /// 1: artifact), the `group` id convention of `synthesize`; NaN for an
    /// empty group. Several splits are pooled by concatenating their arrays.
    public static func groupAccuracies(predictions: [Int], labels: [Int], artifact: [Bool], classes: Int) -> [Double] {
        precondition(predictions.count == labels.count && artifact.count == labels.count,
                     "groupAccuracies: arrays of different lengths")
        var hits = [Int](repeating: 0, count: 2 * classes), total = [Int](repeating: 0, count: 2 * classes)
        for i in 0..<labels.count {
            let y = labels[i]
            guard y >= 0 && y < classes else { continue }
            let g = 2 * y + (artifact[i] ? 1 : 0)
            total[g] += 1
            if predictions[i] == y { hits[g] += 1 }
        }
        return (0..<(2 * classes)).map { total[$0] > 0 ? Double(hits[$0]) / Double(total[$0]) : .nan }
    }

    /// Worst-group accuracy: min over the non-empty groups class × artifact
    /// state. The `evaluate` stage pools test-clean ∪ test-conflict, so every
    /// class has both states (clean: no artifact, conflict: a wrong digit)
    /// at every ρ, including ρ = 0 where the test split has no artifact group.
    public static func worstGroup(predictions: [Int], labels: [Int], artifact: [Bool], classes: Int) -> Double {
        groupAccuracies(predictions: predictions, labels: labels, artifact: artifact, classes: classes)
            .filter { !$0.isNaN }.min() ?? .nan
    }

    /// Agreement = (1/N) Σ_i 1[argmax student_i = argmax teacher_i].
    public static func agreement(_ a: [Int], _ b: [Int]) -> Double {
        accuracy(predictions: a, labels: b)
    }

    /// The runner-up r = argmax_{c≠y} z_c (first index on ties) and the logit
    /// margin f = z_y − z_r of one row of K subtask logits.
    @inline(__always)
    public static func margin(_ z: UnsafePointer<Float>, classes k: Int, label y: Int) -> (runnerUp: Int, value: Float) {
        var r = -1
        var best = -Float.infinity
        for c in 0..<k where c != y {
            if r < 0 || z[c] > best { r = c; best = z[c] }
        }
        if r < 0 { return (y, 0) }  // K = 1: no other class, margin 0 by convention
        return (r, z[y] - best)
    }

    /// Share of relevance inside the artifact patch for one image of
    /// relevance R (H×W×C, NHWC): with R_pixel = Σ_channels R,
    ///   share = Σ_{pixels in patch} |R_pixel| / Σ_{all pixels} |R_pixel|,
    /// the patch being the top-left `patch`×`patch` square. Summing the
    /// channels first keeps a pixel's positive and negative colour evidence
    /// from both counting. nil when the image carries no relevance at all.
    public static func patchShare(_ r: UnsafePointer<Float>, height: Int, width: Int, channels: Int, patch: Int) -> Double? {
        var inside = 0.0, total = 0.0
        var p = r
        for yy in 0..<height {
            for xx in 0..<width {
                var s: Float = 0
                for c in 0..<channels { s += p[c] }
                let a = Double(abs(s))
                total += a
                if yy < patch && xx < patch { inside += a }
                p += channels
            }
        }
        return total > 0 ? inside / total : nil
    }

    /// Mean of the non-nil values (NaN when there is none).
    public static func mean(_ values: [Double?]) -> Double {
        let v = values.compactMap { $0 }
        return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
    }
}
