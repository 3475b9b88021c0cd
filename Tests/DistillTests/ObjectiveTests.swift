import Foundation
import Testing
@testable import Distill
import NN
import StageKit

/// Teacher outputs whose logits are `scale`·one-hot(label) (no maps).
private func oneHotTeacher(scale: Float) -> TeacherOutputs {
    let d = Fixture.train
    var z = [Float](repeating: 0, count: d.count * 5)
    for i in 0..<d.count { z[i * 5 + d.labels[i]] = scale }
    return TeacherOutputs(logits: CachedRows(itemShape: [5], data: z), maps: [], logShift: [Float](repeating: 0, count: 5))
}

/// `kd` with a teacher whose logits are scaled one-hot labels behaves as
/// `label-only`: at T = 1 the KD gradient (softmax(z) − p_t)/B equals the CE
/// gradient up to e^−40, so the students make the same decisions; at the
/// default T = 4 the accuracies agree within the noise of a short run.
@Test func kdWithOneHotTeacherActsAsLabelOnly() throws {
    let c0 = Fixture.config(.labelOnly, epochs: 6)
    let lo = try DistillTrainer(config: c0, train: Fixture.train, val: Fixture.val, teacher: nil, pairs: [], bases: []).run()
    var c1 = Fixture.config(.kd, epochs: 6)
    c1.temperature = 1
    let kd1 = try DistillTrainer(config: c1, train: Fixture.train, val: Fixture.val, teacher: oneHotTeacher(scale: 40),
                                 pairs: [], bases: []).run()
    let p0 = Fixture.predictions(lo.student, Fixture.val), p1 = Fixture.predictions(kd1.student, Fixture.val)
    let agree = Double(zip(p0, p1).filter { $0 == $1 }.count) / Double(p0.count)
    #expect(agree >= 0.95, "T=1 agreement \(agree)")
    #expect(abs(lo.candidates[0].bestValAccuracy - kd1.candidates[0].bestValAccuracy) <= 0.03)
    let kd4 = try DistillTrainer(config: Fixture.config(.kd, epochs: 6), train: Fixture.train, val: Fixture.val,
                                 teacher: oneHotTeacher(scale: 40), pairs: [], bases: []).run()
    #expect(abs(lo.candidates[0].bestValAccuracy - kd4.candidates[0].bestValAccuracy) <= 0.15,
            "label-only \(lo.candidates[0].bestValAccuracy) vs kd T=4 \(kd4.candidates[0].bestValAccuracy)")
    #expect(kd4.candidates[0].bestValAccuracy >= 0.4)
}

/// A fixture copy with imbalanced labels (class 4 mostly relabelled 0) so
/// the class priors are not uniform. Only the loss matters here, not whether
/// labels fit the images.
private func imbalanced() -> Dataset {
    var d = Fixture.train
    var moved = 0
    d.labels = d.labels.map { y in
        if y == 4 && moved < 20 { moved += 1; return 0 }
        return y
    }
    d.group = d.labels.map { $0 * 2 }
    return d
}

/// `balanced` is logit adjustment: the task loss is CE(z + log π, y) (the
/// shift −log w = log(C·π) up to a constant), for labels; for a teacher-only
/// student the priors are the teacher's mean probabilities, and its KD term
/// is T²·KL(p_t ‖ softmax((z + log π)/T)).
@Test func balancedIsLogitAdjustment() throws {
    let d = imbalanced()
    var c = Fixture.config(.labelOnly)
    c.objective = .balanced
    let t = try DistillTrainer(config: c, train: d, val: Fixture.val, teacher: nil, pairs: [], bases: [])
    try t.setUpCandidate(0)
    let pi = (0..<5).map { y in Double(d.labels.filter { $0 == y }.count) / Double(d.count) }
    let shift = t.robust.logShift()!
    for y in 0..<5 { #expect(abs(Double(shift[y]) - (-log(5 * pi[y]))) < 1e-5) }
    let idx = Array(0..<16)[...]
    var meters: [DeadChannelMeter] = [], hits = 0
    let (terms, _) = try t.step(idx, update: false, meters: &meters, hits: &hits)
    // The same forward (training mode, same batch) by hand.
    var x = Tensor(shape: [0])
    d.gather(idx, into: &x)
    var z = t.student.forward(x, training: true)
    for i in 0..<16 { for y in 0..<5 { z.data[i * 5 + y] += Float(log(pi[y])) } }
    let (ce, _) = try Loss.crossEntropy(z, labels: idx.map { d.labels[$0] })
    #expect(abs(terms[0] - Double(ce)) < 1e-5, "\(terms[0]) vs \(ce)")
    // A plain CE (no adjustment) differs, so the check has teeth.
    let (plain, _) = try Loss.crossEntropy(t.student.forward(x, training: true), labels: idx.map { d.labels[$0] })
    #expect(abs(Double(plain) - Double(ce)) > 1e-3)

    // Teacher-only: priors from the teacher's probabilities, not from labels.
    var ck = Fixture.config(.kd)
    ck.objective = .balanced
    let tk = try Fixture.trainer(ck, train: d)
    try tk.setUpCandidate(0)
    let p = Loss.softmax(Tensor(shape: [d.count, 5], data: tk.teacher!.logits.data))
    for y in 0..<5 {
        let mean = (0..<d.count).reduce(0.0) { $0 + Double(p.data[$1 * 5 + y]) } / Double(d.count)
        #expect(abs(tk.groupPriors[y] - mean) < 1e-6)
        #expect(abs(Double(tk.robust.logShift()![y]) + log(5 * mean)) < 1e-5)
    }
    let (kterms, _) = try tk.step(idx, update: false, meters: &meters, hits: &hits)
    var zk = tk.student.forward(x, training: true)
    for i in 0..<16 { for y in 0..<5 { zk.data[i * 5 + y] -= tk.robust.logShift()![y] } }
    let pt = Loss.softmax(Tensor(shape: [16, 5], data: Array(tk.teacher!.logits.data[0..<80])), temperature: 4)
    let (kl, _) = try Loss.distillation(student: zk, teacherProbs: pt, temperature: 4)
    #expect(abs(kterms[0] - Double(kl)) < 1e-5)
}

/// `dro` with β = 0 is `std`: the costs w are 1 whatever λ, so the student
/// is bit-identical, although λ itself moved (the validation batches were drawn).
@Test func droWithBetaZeroEqualsStd() throws {
    var base = Fixture.config(.kd, epochs: 2)
    base.droEvery = 3
    let std = try Fixture.trainer(base).run()
    var c = base
    c.objective = .dro
    c.robustBeta = 0
    let t = try Fixture.trainer(c)
    let dro = try t.run()
    #expect(Fixture.flat(std.student) == Fixture.flat(dro.student))
    let lambda = dro.methodState.first { $0.0 == "robust/lambda" }!.2
    #expect(lambda.contains { abs($0 - 0.2) > 1e-4 }, "λ never moved: \(lambda)")
    // With β = 1 the same run differs.
    c.robustBeta = 1
    let dro1 = try Fixture.trainer(c).run()
    #expect(Fixture.flat(std.student) != Fixture.flat(dro1.student))
}

/// The calibrated teacher undoes its shift: with s_t = log w_t, the targets
/// are softmax((z_t − s_t)/T).
@Test func calibratedTeacherUndoesTheShift() throws {
    var outputs = oneHotTeacher(scale: 2)
    outputs.logShift = [0.5, -0.25, 1, 0, -1]
    var c = Fixture.config(.kd)
    c.calibratedTeacher = true
    let t = try DistillTrainer(config: c, train: Fixture.train, val: Fixture.val, teacher: outputs, pairs: [], bases: [])
    let i = 7, y = Fixture.train.labels[i]
    let z = (0..<5).map { (($0 == y ? 2 : 0) - outputs.logShift[$0]) / 4 }
    let m = z.max()!, s = z.reduce(0) { $0 + exp($1 - m) }
    for j in 0..<5 { #expect(abs(t.targets!.data[i * 5 + j] - exp(z[j] - m) / s) < 1e-6) }
}
