import Foundation
import Testing
@testable import Distill
import NN

/// mdistiller's `dkd_loss`, transcribed step by step in Double: softmax,
/// target/non-target sums (cat_mask), kl_div(sum) · T² / B, and the non-target
/// softmax formed by subtracting 1000 from the target logit.
private func referenceDKD(_ zs: [Double], _ zt: [Double], labels: [Int], classes c: Int,
                          alpha: Double, beta: Double, t: Double) -> (Double, Double) {
    func softmax(_ x: [Double]) -> [Double] {
        let m = x.max()!
        let e = x.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }
    let batch = labels.count
    var tckd = 0.0, nckd = 0.0
    for b in 0..<batch {
        let y = labels[b]
        let ls = (0..<c).map { zs[b * c + $0] / t }, lt = (0..<c).map { zt[b * c + $0] / t }
        let ps = softmax(ls), pt = softmax(lt)
        let bs = [ps[y], (0..<c).filter { $0 != y }.map { ps[$0] }.reduce(0, +)]
        let bt = [pt[y], (0..<c).filter { $0 != y }.map { pt[$0] }.reduce(0, +)]
        for i in 0..<2 { tckd += bt[i] * (log(bt[i]) - log(bs[i])) }
        let masked = { (x: [Double]) in x.enumerated().map { $0.offset == y ? $0.element - 1000 : $0.element } }
        let pt2 = softmax(masked(lt))
        let ps2 = softmax(masked(ls))
        for j in 0..<c where pt2[j] > 0 { nckd += pt2[j] * (log(pt2[j]) - log(ps2[j])) }
    }
    let f = t * t / Double(batch)
    return (alpha * tckd * f, beta * nckd * f)
}

@Test func dkdMatchesMdistillerFormula() {
    var rng = RNG(seed: 1)
    let batch = 5, classes = 6
    for (alpha, beta, temp) in [(Float(1), Float(8), Float(1)), (0.5, 2, 4)] {
        let zs = randomTensor([batch, classes], rng: &rng, scale: 3)
        let zt = randomTensor([batch, classes], rng: &rng, scale: 3)
        let labels = (0..<batch).map { _ in rng.int(below: classes) }
        let (v, tckd, nckd, _) = DKDLoss(alpha: alpha, beta: beta, temperature: temp)
            .forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, computeGradient: false)
        let (rt, rn) = referenceDKD(zs.data.map(Double.init), zt.data.map(Double.init), labels: labels,
                                    classes: classes, alpha: Double(alpha), beta: Double(beta), t: Double(temp))
        #expect(abs(Double(v) - (rt + rn)) < 1e-5 * (rt + rn))
        #expect(abs(Double(alpha * tckd) - rt) < 1e-5 * max(rt, 1e-3))
        #expect(abs(Double(beta * nckd) - rn) < 1e-5 * max(rn, 1e-3))
    }
}

@Test func dkdIsZeroForEqualLogitsAndStableForConfidentStudent() {
    var rng = RNG(seed: 2)
    let z = randomTensor([4, 5], rng: &rng, scale: 2)
    let (v, _, _, g) = DKDLoss().forwardBackward(studentLogits: z, teacherLogits: z, labels: [0, 1, 2, 4],
                                                 computeGradient: true)
    #expect(abs(v) < 1e-6)
    #expect(g!.data.allSatisfy { abs($0) < 1e-6 })
    // p_y of the student ≈ 1 − e⁻²⁰⁰: a naive log(1 − p_y) would be log 0.
    let zs = Tensor(shape: [1, 3], data: [200, 0, 0])
    let zt = Tensor(shape: [1, 3], data: [1, 0, 0.5])
    let (v2, _, _, g2) = DKDLoss(temperature: 1).forwardBackward(studentLogits: zs, teacherLogits: zt, labels: [0], computeGradient: true)
    #expect(v2.isFinite && v2 > 90)   // ≈ 97.9: TCKD ≈ b_t,2·(log b_t,2 − log 2 + 200)
    #expect(g2!.data.allSatisfy { $0.isFinite })
}

/// Central differences on the student logits, h = 1e-2; relative error < 1e-3.
@Test func dkdGradientMatchesFiniteDifferences() {
    var rng = RNG(seed: 3)
    for temp in [Float(1), 4] {
        let loss = DKDLoss(alpha: 1, beta: 8, temperature: temp)
        var zs = randomTensor([4, 5], rng: &rng, scale: 2)
        let zt = randomTensor([4, 5], rng: &rng, scale: 2)
        let labels = [3, 0, 4, 1]
        let g = loss.forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, computeGradient: true).gradStudent!
        let idx = Array(0..<zs.count)
        let num = finiteDifferences(idx, h: 1e-2, get: { zs.data[$0] }, set: { zs.data[$0] = $1 }) {
            Double(loss.forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, computeGradient: false).loss)
        }
        let err = relativeError(num, g.data.map(Double.init))
        #expect(err < 1e-3, "T=\(temp): relative error \(err)")
    }
}

/// `dkd` runs mdistiller's small-image recipe: CE weight 1, α 1, β 8, T 4,
/// and the DKD term scaled by min((epoch + 1) / w, 1), w = a twelfth of the
/// epochs (20 of 240 there); the parts are logged unscaled.
@Test func dkdRecipeAndLinearWarmUp() {
    var c = DistillConfig(method: .dkd)
    #expect(c.lambdaTask == 1 && c.lambdaKD == 0 && c.temperature == 4 && c.dkdAlpha == 1 && c.dkdBeta == 8)
    c.epochs = 24
    #expect(c.resolvedDKDWarmup == 2)
    let term = DKD().makeLogitLoss(config: c) as! DKDTerm
    #expect(term.factor(epoch: 0) == 0.5 && term.factor(epoch: 1) == 1 && term.factor(epoch: 20) == 1)
    var rng = RNG(seed: 3)
    let zs = randomTensor([4, 5], rng: &rng, scale: 2), zt = randomTensor([4, 5], rng: &rng, scale: 2)
    let labels = [0, 3, 1, 4]
    let a = term.forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, epoch: 0)
    let b = term.forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, epoch: 5)
    #expect(a.terms == b.terms && b.loss > 0)
    #expect(abs(a.loss - 0.5 * b.loss) < 1e-12)
    for i in 0..<a.gradStudent.count { #expect(a.gradStudent.data[i] == 0.5 * b.gradStudent.data[i]) }
    // Unscaled, the term is α·TCKD + β·NCKD at T = 4.
    let plain = DKDLoss(alpha: 1, beta: 8, temperature: 4).forwardBackward(studentLogits: zs, teacherLogits: zt,
                                                                          labels: labels, computeGradient: false)
    #expect(abs(b.loss - Double(plain.loss)) < 1e-9)
    c.dkdWarmupEpochs = 0
    #expect((DKD().makeLogitLoss(config: c) as! DKDTerm).factor(epoch: 0) == 1)
}
