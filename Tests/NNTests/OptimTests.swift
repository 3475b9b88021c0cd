import Foundation
import Testing
@testable import NN

// Reference numbers below were computed once, independently of this code,
// with numpy in float64 from the textbook update rules of the PyTorch docs'
// algorithm boxes (not PyTorch's arrangement of the arithmetic), by this
// one-off script (python3, numpy 2.4):
//
//     # One-off reference for Tests/NNTests/OptimTests.swift: textbook update rules
//     # (PyTorch docs algorithm boxes) in float64 with numpy.
//     import numpy as np
//     np.set_printoptions(precision=17)
//     th0 = {'w': np.array([0.5, -1.2, 2.0]), 'b': np.array([0.3])}
//     decays = {'w': True, 'b': False}
//     grads = [{'w': np.array([0.1, -0.3, 0.05]), 'b': np.array([0.2])},
//              {'w': np.array([-0.2, 0.4, 0.01]), 'b': np.array([-0.1])},
//              {'w': np.array([0.05, 0.05, -0.3]), 'b': np.array([0.0])}]
//     def adamw(lr, wd, b1=0.9, b2=0.999, eps=1e-8, steps=2, decoupled=True):
//         th = {k: v.copy() for k, v in th0.items()}
//         m = {k: np.zeros_like(v) for k, v in th.items()}; v = {k: np.zeros_like(x) for k, x in th.items()}
//         for t in range(1, steps + 1):
//             for k in th:
//                 g = grads[t-1][k].copy()
//                 if decays[k]:
//                     if decoupled: th[k] = th[k] - lr * wd * th[k]
//                     else: g = g + wd * th[k]
//                 m[k] = b1 * m[k] + (1 - b1) * g
//                 v[k] = b2 * v[k] + (1 - b2) * g * g
//                 mh = m[k] / (1 - b1**t); vh = v[k] / (1 - b2**t)
//                 th[k] = th[k] - lr * mh / (np.sqrt(vh) + eps)
//         return th
//     def sgd(lr, mu, wd, damp=0.0, nesterov=False, steps=3):
//         th = {k: v.copy() for k, v in th0.items()}; buf = {}
//         for t in range(1, steps + 1):
//             for k in th:
//                 g = grads[t-1][k] + (wd * th[k] if decays[k] else 0)
//                 buf[k] = g.copy() if t == 1 else mu * buf[k] + (1 - damp) * g
//                 d = g + mu * buf[k] if nesterov else buf[k]
//                 th[k] = th[k] - lr * d
//         return th
//     print("adamw", adamw(0.01, 0.1))
//     print("adam_l2", adamw(0.01, 0.1, decoupled=False))
//     print("sgd_mom", sgd(0.1, 0.9, 0.01))
//     print("sgd_damp", sgd(0.1, 0.9, 0.01, damp=0.5))
//     print("sgd_nest", sgd(0.1, 0.9, 0.01, nesterov=True))
//     print("sgd_plain", sgd(0.1, 0.0, 0.01))

private let gradsW: [[Float]] = [[0.1, -0.3, 0.05], [-0.2, 0.4, 0.01], [0.05, 0.05, -0.3]]
private let gradsB: [[Float]] = [[0.2], [-0.1], [0.0]]

private func tinyParameters() -> [Parameter] {
    [Parameter(name: "w", shape: [3], value: [0.5, -1.2, 2.0], decays: true),
     Parameter(name: "b", shape: [1], value: [0.3], decays: false)]
}

private func run(_ opt: Optimizer, _ ps: [Parameter], steps: Int) {
    for t in 0..<steps {
        ps[0].grad = gradsW[t]
        ps[1].grad = gradsB[t]
        opt.step()
    }
}

private func expectClose(_ a: [Float], _ ref: [Double], rel: Double = 2e-6, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == ref.count, sourceLocation: sourceLocation)
    for (x, r) in zip(a, ref) {
        #expect(abs(Double(x) - r) <= rel * max(1, abs(r)), "\(x) vs \(r)", sourceLocation: sourceLocation)
    }
}

/// A deterministic pseudo-gradient that depends on the current values, so
/// a resumed run only matches if values and state are restored exactly.
private func fakeGradients(_ ps: [Parameter], step: Int) {
    for p in ps {
        for i in 0..<p.count {
            p.grad[i] = sin(p.value[i] * 3 + Float(step) * 0.7 + Float(i)) + 0.1 * p.value[i]
        }
    }
}

private func bigParameters() -> [Parameter] {
    var r = RNG(seed: 99)
    return [Parameter(name: "conv.weight", shape: [4, 3], value: (0..<12).map { _ in Float(r.normal()) }),
            Parameter(name: "conv.bias", shape: [4], value: (0..<4).map { _ in Float(r.normal()) }, decays: false)]
}

@Suite struct OptimTests {
    @Test func adamWTwoStepsMatchReference() throws {
        let ps = tinyParameters()
        let opt = try AdamW(parameters: ps, learningRate: 0.01, weightDecay: 0.1)
        run(opt, ps, steps: 2)
        expectClose(ps[0].value, [0.49267153603784886, -1.1895463043696357, 1.9779815944414387])
        expectClose(ps[1].value, [0.28733663027186757])  // decays == false: no decay
        #expect(opt.stepCount == 2)
    }

    @Test func adamL2TwoStepsMatchReference() throws {
        let ps = tinyParameters()
        let opt = try Adam(parameters: ps, learningRate: 0.01, weightDecay: 0.1)
        run(opt, ps, steps: 2)
        expectClose(ps[0].value, [0.4905595349903038, -1.188571115204355, 1.9800860451210711])
        expectClose(ps[1].value, [0.28733663027186757])
    }

    @Test func adamFirstStepMovesByLearningRate() throws {
        // Bias correction makes the first step ≈ lr·sign(g) whatever |g|.
        let ps = tinyParameters()
        let before = ps[0].value
        let opt = try AdamW(parameters: ps, learningRate: 0.05, weightDecay: 0)
        run(opt, ps, steps: 1)
        for i in 0..<3 {
            let delta = ps[0].value[i] - before[i]
            #expect(abs(delta + 0.05 * (gradsW[0][i] > 0 ? 1 : -1)) < 1e-6)
        }
        #expect(ps[0].grad == gradsW[0])  // step never touches the gradient
    }

    @Test func sgdMomentumDampeningAndNesterovMatchReference() throws {
        let cases: [(Float, Float, Bool, [Double], [Double])] = [
            (0.0, 0, false, [0.5035014895000001, -1.2114235688, 2.0180169930000003], [0.29]),
            (0.9, 0, false, [0.5031153895, -1.1930477288, 2.003359593], [0.2648]),
            (0.9, 0.5, false, [0.48733507237499996, -1.1542575722000001, 1.99219404825], [0.25529999999999997]),
            (0.9, 0, true, [0.5063231619805, -1.2052522155992, 2.021079867987], [0.25832000000000005]),
        ]
        for (mu, damp, nesterov, refW, refB) in cases {
            let ps = tinyParameters()
            let opt = try SGD(parameters: ps, learningRate: 0.1, momentum: mu, dampening: damp,
                              weightDecay: 0.01, nesterov: nesterov)
            run(opt, ps, steps: 3)
            expectClose(ps[0].value, refW)
            expectClose(ps[1].value, refB)
        }
    }

    @Test func invalidHyperparametersThrow() {
        #expect(throws: TrainError.self) { try SGD(parameters: tinyParameters(), learningRate: 0.1, nesterov: true) }
        #expect(throws: TrainError.self) { try Adam(parameters: tinyParameters(), beta1: 1) }
        let dup = [Parameter(name: "x", shape: [1], value: [0]), Parameter(name: "x", shape: [1], value: [1])]
        #expect(throws: TrainError.self) { try AdamW(parameters: dup) }
    }

    @Test func stepScheduleHalvesEveryQuarter() throws {
        let s = try StepLR.quarterly(baseLearningRate: 1e-3, epochs: 100)
        #expect(s.stepSize == 25)
        let expected: [(Int, Float)] = [(0, 1e-3), (24, 1e-3), (25, 5e-4), (49, 5e-4), (50, 2.5e-4), (75, 1.25e-4), (99, 1.25e-4)]
        for (e, lr) in expected { #expect(s.learningRate(epoch: e) == lr) }
        // Epochs not divisible by four: still four levels, never a fifth.
        let s10 = try StepLR.quarterly(baseLearningRate: 1, epochs: 10)
        #expect((0..<10).map { s10.learningRate(epoch: $0) } == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125])
        let custom = try StepLR(baseLearningRate: 0.1, stepSize: 3, gamma: 0.1)
        #expect(abs(custom.learningRate(epoch: 7) - 0.001) < 1e-9)
        #expect(throws: TrainError.self) { try StepLR(baseLearningRate: 1, stepSize: 0, gamma: 0.5) }
    }

    @Test func gradientClippingScalesToMaxNorm() {
        let ps = [Parameter(name: "a", shape: [2], value: [0, 0]), Parameter(name: "b", shape: [1], value: [0])]
        ps[0].grad = [3, 4]
        ps[1].grad = [12]
        // ‖(3, 4, 12)‖ = 13.
        let n = clipGradientNorm(ps, maxNorm: 6.5)
        #expect(n == 13)
        let c = Float(6.5 / (13 + 1e-6))
        #expect(ps[0].grad == [3 * c, 4 * c] && ps[1].grad == [12 * c])
        #expect(abs(globalGradientNorm(ps) - 6.5) < 1e-5)
        // Below the threshold nothing changes.
        let g = ps[0].grad
        #expect(abs(clipGradientNorm(ps, maxNorm: 100) - 6.5) < 1e-5)
        #expect(ps[0].grad == g)
    }

    @Test func learningRateIsUsedAsSet() throws {
        let ps = tinyParameters()
        let opt = try SGD(parameters: ps, learningRate: 1)
        opt.learningRate = 0.5
        ps[0].grad = [1, 1, 1]
        ps[1].grad = [2]
        opt.step()
        #expect(ps[0].value == [0, -1.7, 1.5] && ps[1].value == [-0.7])
        opt.zeroGrad()
        #expect(ps[0].grad == [0, 0, 0] && ps[1].grad == [0])
    }

    @Test func stateExportImportResumesBitExactly() throws {
        typealias Make = ([Parameter]) throws -> Optimizer
        let makers: [(String, Make)] = [
            ("adamw", { try AdamW(parameters: $0, learningRate: 0.01, weightDecay: 0.05) }),
            ("adam", { try Adam(parameters: $0, learningRate: 0.01, weightDecay: 0.05) }),
            ("nesterov", { try SGD(parameters: $0, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: true) }),
            ("momentum", { try SGD(parameters: $0, learningRate: 0.05, momentum: 0.9, dampening: 0.1) }),
        ]
        for (label, make) in makers {
            // Uninterrupted: 10 steps, learning rate halved after step 5.
            let ref = bigParameters()
            let refOpt = try make(ref)
            for t in 0..<10 {
                if t == 5 { refOpt.learningRate *= 0.5 }
                fakeGradients(ref, step: t)
                refOpt.step()
            }
            // Interrupted after 4 steps (also at 0, before any moment exists).
            for cut in [0, 4, 7] {
                let first = bigParameters()
                let opt1 = try make(first)
                for t in 0..<cut {
                    if t == 5 { opt1.learningRate *= 0.5 }
                    fakeGradients(first, step: t)
                    opt1.step()
                }
                let saved = opt1.exportState()
                let values = first.map { $0.value }
                // Fresh objects, restored from the exported arrays only.
                let second = bigParameters()
                for (p, v) in zip(second, values) { p.value = v }
                let opt2 = try make(second)
                try opt2.importState(saved)
                #expect(opt2.stepCount == cut)
                for t in cut..<10 {
                    if t == 5 { opt2.learningRate *= 0.5 }
                    fakeGradients(second, step: t)
                    opt2.step()
                }
                for (a, b) in zip(ref, second) {
                    #expect(a.value == b.value, "\(label) cut \(cut): \(a.name) differs after resume")
                }
            }
        }
    }

    @Test func stateImportRejectsMismatches() throws {
        let adam = try AdamW(parameters: bigParameters())
        let sgd = try SGD(parameters: bigParameters(), learningRate: 0.1, momentum: 0.9)
        #expect(throws: TrainError.self) { try sgd.importState(adam.exportState()) }
        #expect(throws: TrainError.self) { try adam.importState(sgd.exportState()) }
        var bad = adam.exportState()
        bad[2].1 = [12]
        bad[2].2 = [Float](repeating: 0, count: 12)
        let a2 = try AdamW(parameters: bigParameters())
        #expect(throws: TrainError.self) { try a2.importState(bad) }
        #expect(throws: TrainError.self) { try a2.importState(Array(adam.exportState().dropLast())) }
        // Step counter encoding survives large counts.
        let s = adam.exportState()
        var big = s
        big[0].2 = [Float(123_456 & 0xFFFFF), Float(123_456 >> 20)]
        try a2.importState(big)
        #expect(a2.stepCount == 123_456)
    }
}
