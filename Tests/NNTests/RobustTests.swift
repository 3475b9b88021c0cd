import Foundation
import Testing
@testable import NN
import TensorIO

@Suite struct RobustTests {
    @Test func lambdaUpdateMatchesHandComputation() throws {
        // numpy, float64: lam = ones(3)/3; for err in ([.5,.1,0], [.25,0,1]):
        //   lam = lam*exp(0.1*err); lam /= lam.sum()
        var r = try RobustObjective(mode: .dro, classes: 3, groupPriors: [0.5, 0.3, 0.2], eta: 0.1)
        #expect(r.lambda.allSatisfy { abs($0 - 1.0 / 3) < 1e-15 })
        try r.update(groupErrors: [0.5, 0.1, 0.0])
        let l1 = [0.343404368866461, 0.3299392909656645, 0.32665634016787454]
        for (a, b) in zip(r.lambda, l1) { #expect(abs(a - b) < 1e-14) }
        try r.update(groupErrors: [0.25, 0.0, 1.0])
        let l2 = [0.33756612175422457, 0.3163222294343788, 0.34611164881139667]
        for (a, b) in zip(r.lambda, l2) { #expect(abs(a - b) < 1e-14) }
        #expect(r.updates == 2)
        // β = 1: w_y = λ_y/π_y, shift log w.
        let s = try #require(r.logShift())
        for y in 0..<3 { #expect(abs(Double(s[y]) - log(l2[y] / [0.5, 0.3, 0.2][y])) < 1e-6) }
        #expect(throws: TrainError.self) { try r.update(groupErrors: [0.1, 0.2]) }
        #expect(throws: TrainError.self) { try r.update(groupErrors: [0.1, 0.2, 1.5]) }
    }

    @Test func reweightedIsBalancedCostsAsExampleWeights() throws {
        let pi = [0.6, 0.25, 0.1, 0.05]
        for beta in [1.0, 0.5, 0] {
            let r = try RobustObjective(mode: .reweighted, classes: 4, groupPriors: pi, beta: beta)
            #expect(r.logShift() == nil)
            let w = try #require(try r.exampleWeights(groups: [0, 1, 2, 3, 3]))
            for y in 0..<4 {
                let want = ((1 - beta) * pi[y] + beta / 4) / pi[y]
                #expect(abs(Double(w[min(y, 4)]) - want) < 1e-6)
            }
            // Mean 1 over the training distribution, whatever β.
            let mean = (0..<4).reduce(0.0) { $0 + pi[$1] * Double(w[$1]) }
            #expect(abs(mean - 1) < 1e-6)
            // Soft targets are left alone (the weight multiplies the whole term).
            let p = Tensor(shape: [1, 4], data: [0.1, 0.2, 0.3, 0.4])
            #expect(try r.reweightTargets(p, states: [0]) == p)
        }
        // λ never moves.
        var r = try RobustObjective(mode: .reweighted, classes: 2, groupPriors: [0.9, 0.1])
        try r.update(groupErrors: [0, 1])
        #expect(r.updates == 0 && r.history.isEmpty)
        if case .some = r.droRecord { Issue.record("a reweighted objective has a dro record") }
        #expect(try RobustMode(parsing: "reweighted") == .reweighted)
    }

    @Test func droRecordTracesEveryUpdate() throws {
        var r = try RobustObjective(mode: .dro, classes: 3, groupPriors: [0.5, 0.3, 0.2], eta: 0.5, updateEvery: 7)
        let start = -log(3.0)
        let none = try #require(r.droRecord?.object)
        #expect(none["updates"] == .number(0) && none["history"] == .array([]))
        #expect(none["final_log_lambda"] == .array([JSON](repeating: .number(start), count: 3)))
        #expect(none["log_lambda_min"] == .number(start) && none["log_lambda_max"] == .number(start))
        try r.update(groupErrors: [0.5, 0.1, 0.0])
        let first = r.logLambda
        try r.update(groupErrors: [0.0, 0.0, 1.0])
        #expect(r.history == [first, r.logLambda])
        let rec = try #require(r.droRecord?.object)
        #expect(rec["updates"] == .number(2) && rec["every"] == .number(7) && rec["eta"] == .number(0.5))
        #expect(rec["final_log_lambda"] == .array(r.logLambda.map { .number($0) }))
        let all = r.history.flatMap { $0 } + [start]
        #expect(rec["log_lambda_min"] == .number(all.min()!) && rec["log_lambda_max"] == .number(all.max()!))
        // A restored history must fit the restored state.
        var s = try RobustObjective(mode: .dro, classes: 3, groupPriors: [0.5, 0.3, 0.2], eta: 0.5, updateEvery: 7)
        try s.importState(r.exportState())
        #expect(throws: TrainError.self) { try s.importHistory([first]) }
        try s.importHistory(r.history)
        #expect(s == r && s.history == r.history)
    }

    @Test func betaMixesAverageAndRobustCosts() throws {
        let pi = [0.5, 0.3, 0.2]
        var r = try RobustObjective(mode: .dro, classes: 3, groupPriors: pi, beta: 0.5, eta: 0.1)
        try r.update(groupErrors: [0.5, 0.1, 0.0])
        let lam = [0.343404368866461, 0.3299392909656645, 0.32665634016787454]
        let w = r.classWeights()
        for y in 0..<3 { #expect(abs(w[y] - (0.5 * pi[y] + 0.5 * lam[y]) / pi[y]) < 1e-12) }
        // β = 0: w ≡ 1 whatever λ (the formula of docs/methods.md, "Robust objectives", gives plain ERM).
        var r0 = try RobustObjective(mode: .dro, classes: 3, groupPriors: pi, beta: 0)
        try r0.update(groupErrors: [1, 0, 0])
        #expect(r0.logShift() == [0, 0, 0])
    }

    @Test func balancedIsExactlyLogitAdjustmentWithLogPrior() throws {
        let pi = [0.6, 0.25, 0.1, 0.05]
        let r = try RobustObjective(mode: .balanced, classes: 4, groupPriors: pi)
        let s = try #require(r.logShift())
        // softmax(z − log w) = softmax(z + log π): the shift differs from
        // −log π only by a constant (log C) that softmax ignores.
        var rng = RNG(seed: 3)
        let z = (0..<12).map { _ in Float(rng.normal() * 2) }
        let labels = [0, 3, 2]
        let adjusted = (0..<12).map { z[$0] + Float(log(pi[$0 % 4])) }
        let a = try Loss.crossEntropy(Tensor(shape: [3, 4], data: z), labels: labels, logShift: s)
        let b = try Loss.crossEntropy(Tensor(shape: [3, 4], data: adjusted), labels: labels)
        #expect(abs(a.loss - b.loss) < 1e-5)
        #expect(zip(a.grad.data, b.grad.data).allSatisfy { abs($0 - $1) < 1e-6 })
        for y in 0..<4 { #expect(abs(Double(s[y]) - (-log(pi[y]) - log(4.0))) < 1e-6) }
        // λ stays uniform in balanced mode; std has no shift at all.
        var rb = r
        try rb.update(groupErrors: [1, 0, 0, 0])
        #expect(rb == r)
        let std = try RobustObjective(mode: .std, classes: 4, groupPriors: pi)
        #expect(std.logShift() == nil && std.classWeights() == [1, 1, 1, 1])
    }

    @Test func updatesAreDueEveryKStepsInDROOnly() throws {
        let dro = try RobustObjective(mode: .dro, classes: 2, groupPriors: [0.5, 0.5], updateEvery: 32)
        #expect((1...100).filter { dro.isUpdateDue(step: $0) } == [32, 64, 96])
        // The default schedule: every 8 steps, η = 0.2.
        let d = try RobustObjective(mode: .dro, classes: 2, groupPriors: [0.5, 0.5])
        #expect((1...20).filter { d.isUpdateDue(step: $0) } == [8, 16] && d.eta == 0.2)
        let bal = try RobustObjective(mode: .balanced, classes: 2, groupPriors: [0.5, 0.5])
        #expect(!(1...100).contains { bal.isUpdateDue(step: $0) })
    }

    @Test func groupErrorsAndWorstClassAccuracy() throws {
        let pred = [0, 1, 1, 0, 2, 2], labels = [0, 0, 1, 1, 2, 2]
        let groups = try Robust.groupIDs(labels: labels, states: [0, 1, 0, 1, 0, 0], statesPerClass: 2)
        #expect(groups == [0, 1, 2, 3, 4, 4])
        let (err, n) = try Robust.groupErrors(predictions: pred, labels: labels, groups: groups, groupCount: 6)
        #expect(err == [0, 1, 0, 1, 0, 0] && n == [1, 1, 1, 1, 2, 0])
        #expect(try Robust.perClassRecall(predictions: pred, labels: labels, classes: 4) == [0.5, 0.5, 1, nil])
        #expect(try Robust.worstClassAccuracy(predictions: pred, labels: labels, classes: 3) == 0.5)
        #expect(try Robust.priors(ids: [0, 0, 1, 2], count: 3) == [0.5, 0.25, 0.25])
        #expect(throws: TrainError.self) { try Robust.groupErrors(predictions: [0], labels: [0], groups: [7], groupCount: 6) }
    }

    @Test func groupPriorsMustBePositive() throws {
        #expect(throws: TrainError.self) { try RobustObjective(mode: .dro, classes: 2, groupPriors: [1, 0]) }
        #expect(throws: TrainError.self) { try RobustObjective(mode: .dro, classes: 2, statesPerClass: 2, groupPriors: [0.5, 0.5]) }
        #expect(throws: TrainError.self) { try RobustObjective(mode: .dro, classes: 2, groupPriors: [0.5, 0.5], beta: 2) }
        #expect(throws: TrainError.self) { try RobustMode(parsing: "worst") }
        #expect(try RobustMode(parsing: "ERM") == .std)
    }

    @Test func balancedGroupsWeighStatesEquallyWithinClass() throws {
        // Groups (y, a): π = [0.4, 0.1 | 0.05, 0.45]; class priors 0.5, 0.5.
        let pi = [0.4, 0.1, 0.05, 0.45]
        let r = try RobustObjective(mode: .balanced, classes: 2, statesPerClass: 2, groupPriors: pi)
        // λ_y = 1/2 = π_y: no class shift; r_(y,a) = π_y / (A·π_(y,a)).
        let s = try #require(r.logShift())
        #expect(s.allSatisfy { abs($0) < 1e-7 })
        let w = r.withinClassWeights()
        let expected = [0.5 / 0.8, 0.5 / 0.2, 0.5 / 0.1, 0.5 / 0.9]
        for g in 0..<4 { #expect(abs(w[g] - expected[g]) < 1e-12) }
        #expect(try r.exampleWeights(groups: [3, 0, 1]) == [Float(expected[3]), Float(expected[0]), Float(expected[1])])
        let t = try r.reweightTargets(Tensor(shape: [2, 2], data: [0.3, 0.7, 0.9, 0.1]), states: [1, 0])
        #expect(t.data == [Float(0.3 * expected[1]), Float(0.7 * expected[3]), Float(0.9 * expected[0]), Float(0.1 * expected[2])])
        // Worst-class objectives never re-weight.
        let rc = try RobustObjective(mode: .dro, classes: 2, groupPriors: [0.5, 0.5])
        #expect(try rc.exampleWeights(groups: [0, 1]) == nil)
    }

    @Test func groupFactorisationReachesTheGroupWeightedBayesRule() throws {
        // One input x with joint p(y, a | x) over C = 3 classes × A = 2 states.
        // Minimising Σ_a Σ_y p(y,a)·r_(y,a)·ℓ(y, z − log w̄) over free logits z
        // must give softmax(z)_y ∝ Σ_a w_(y,a)·p(y,a): the Bayes rule of the
        // group-weighted objective, with w computed here by hand.
        let pi = [0.3, 0.05, 0.2, 0.15, 0.1, 0.2]
        let beta = 0.7
        var r = try RobustObjective(mode: .dro, classes: 3, statesPerClass: 2, groupPriors: pi, beta: beta)
        try r.update(groupErrors: [0.1, 0.9, 0.3, 0.5, 0.0, 0.2])
        try r.update(groupErrors: [0.2, 0.7, 0.4, 0.1, 0.0, 0.6])
        let lam = r.lambda
        let wHand = (0..<6).map { ((1 - beta) * pi[$0] + beta * lam[$0]) / pi[$0] }
        let joint: [[Float]] = [[0.25, 0.10, 0.05], [0.05, 0.30, 0.25]]  // joint[a][y]
        let s = try #require(r.logShift())
        var z: [Float] = [0, 0, 0]
        for _ in 0..<3000 {
            let logits = Tensor(shape: [2, 3], data: z + z)
            let targets = try r.reweightTargets(Tensor(shape: [2, 3], data: joint[0] + joint[1]), states: [0, 1])
            let (_, g) = try Loss.softCrossEntropy(logits, targets: targets, logShift: s)
            for j in 0..<3 { z[j] -= 2 * (g.data[j] + g.data[3 + j]) }
        }
        let q = Loss.softmax(Tensor(shape: [1, 3], data: z)).data
        var bayes = [Double](repeating: 0, count: 3)
        for y in 0..<3 {
            let a0: Double = wHand[y * 2] * Double(joint[0][y])
            let a1: Double = wHand[y * 2 + 1] * Double(joint[1][y])
            bayes[y] = a0 + a1
        }
        let total = bayes.reduce(0, +)
        for y in 0..<3 { #expect(abs(Double(q[y]) - bayes[y] / total) < 1e-4, "class \(y): \(q[y]) vs \(bayes[y] / total)") }
    }

    @Test func calibratedTeacherUndoesItsTrainingShift() throws {
        // Train free logits with the shifted loss towards p; the calibrated
        // transform must give p back.
        let p: [Float] = [0.5, 0.3, 0.15, 0.05]
        let s: [Float] = [-0.7, 0.2, 1.1, 1.9]  // log w_t, e.g. a balanced teacher
        var z: [Float] = [0, 0, 0, 0]
        for _ in 0..<3000 {
            let (_, g) = try Loss.softCrossEntropy(Tensor(shape: [1, 4], data: z), targets: Tensor(shape: [1, 4], data: p), logShift: s)
            for j in 0..<4 { z[j] -= 2 * g.data[j] }
        }
        let cal = try Robust.calibratedTeacherProbs(teacherLogits: Tensor(shape: [1, 4], data: z), teacherLogShift: s)
        for j in 0..<4 { #expect(abs(cal.data[j] - p[j]) < 1e-4) }
        // The raw teacher is not calibrated (its ranking carries w_t).
        let raw = Loss.softmax(Tensor(shape: [1, 4], data: z)).data
        #expect(zip(raw, p).contains { abs($0 - $1) > 0.05 })
        // Temperature applies after the shift is undone.
        let calT = try Robust.calibratedTeacherProbs(teacherLogits: Tensor(shape: [1, 4], data: z), teacherLogShift: s, temperature: 4)
        let ref = Loss.softmax(Tensor(shape: [1, 4], data: (0..<4).map { z[$0] - s[$0] }), temperature: 4).data
        #expect(calT.data == ref)
    }

    @Test func stateRoundTripIsBitExact() throws {
        var a = try RobustObjective(mode: .dro, classes: 2, statesPerClass: 2, groupPriors: [0.1, 0.2, 0.3, 0.4])
        for k in 0..<5 { try a.update(groupErrors: [0.1 * Double(k), 0.3, 0.77, 0.05]) }
        var b = try RobustObjective(mode: .dro, classes: 2, statesPerClass: 2, groupPriors: [0.1, 0.2, 0.3, 0.4])
        try b.importState(a.exportState())
        #expect(a == b)
        try a.update(groupErrors: [0.9, 0.1, 0.2, 0.3])
        try b.update(groupErrors: [0.9, 0.1, 0.2, 0.3])
        #expect(a.logLambda == b.logLambda && a.logShift() == b.logShift())
        #expect(throws: TrainError.self) { try b.importState([("updates", [2], [0, 0])]) }
    }
}
