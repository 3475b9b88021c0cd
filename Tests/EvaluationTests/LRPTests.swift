import Foundation
import NN
import StageKit
import TensorIO
import Testing
@testable import Evaluation

private func randomBatch(_ b: Int, _ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RNG(seed: seed)
    let n = b * shape.reduce(1, *)
    return Tensor(shape: [b] + shape, data: normals(n, &rng))
}

private func maxAbs(_ a: [Float]) -> Float { a.map { abs($0) }.max() ?? 0 }

private func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// With ε = 0, LRP-ε on a ReLU network is exactly gradient × input (by
/// induction R_k = z_k·∂f/∂z_k at every layer: ReLU, max pool routing and
/// the BN-folded affine map all agree with back-propagation). Checks conv
/// (3×3, 1×1, stride 2), BN folding, max/avg/global pooling, flatten and
/// fc against `Model.backward`, with biases.
@Test func lrpZeroEqualsGradientTimesInput() throws {
    for arch in ["c4,p,c6,a,gap,fc3", "c4k1,p,c5s2,fc3"] {
        let model = try modelWithBatchNorm(arch, input: [8, 8, 3], seed: 11)
        let x = randomBatch(3, [8, 8, 3], seed: 12)
        let z = model.forward(x, training: false)
        var rng = RNG(seed: 13)
        let g = Tensor(shape: z.shape, data: normals(z.count, &rng))
        let lrp = try LRP(model: model)
        lrp.epsilons = [Float](repeating: 0, count: lrp.epsilons.count)
        let seed = Tensor(shape: z.shape, data: zip(g.data, z.data).map { $0 * $1 })
        let r = lrp.relevance(input: x, outputRelevance: seed)
        let grad = model.backward(g, inputGradient: true)!
        let gxi = zip(x.data, grad.data).map { $0 * $1 }
        #expect(r.shape == x.shape)
        #expect(maxDiff(r.data, gxi) <= 1e-4 * maxAbs(gxi), "\(arch): LRP-0 differs from gradient × input")
    }
}

/// On a ReLU network without biases, LRP-ε with a small ε conserves
/// relevance: Σ_pixels R = f, the logit margin put in at the output.
@Test func lrpConservesRelevanceWithoutBiases() throws {
    let model = try Model(architecture: "c5,p,c6,a,c4,p,gap,fc4", inputShape: [16, 16, 3], batchNorm: false, seed: 21)
    for p in model.parameters where p.name.hasSuffix(".bias") { p.value = [Float](repeating: 0, count: p.count) }
    let x = randomBatch(4, [16, 16, 3], seed: 22)
    let lrp = try LRP(model: model, epsilonFactor: 1e-5)
    let z = model.forward(x, training: false)
    lrp.accumulateStatistics()
    lrp.updateEpsilons()
    #expect(lrp.epsilons.allSatisfy { $0 > 0 })
    var seed = Tensor(shape: z.shape)
    var f = [Float](repeating: 0, count: 4)
    for i in 0..<4 {
        let y = i % 4
        let row = Array(z.data[(i * 4)..<(i * 4 + 4)])
        let (r, m) = row.withUnsafeBufferPointer { Scores.margin($0.baseAddress!, classes: 4, label: y) }
        f[i] = m
        seed.data[i * 4 + y] = row[y]
        seed.data[i * 4 + r] = -row[r]
    }
    let rel = lrp.relevance(input: x, outputRelevance: seed)
    let per = 16 * 16 * 3
    for i in 0..<4 {
        let total = rel.data[(i * per)..<((i + 1) * per)].reduce(0, +)
        #expect(abs(total - f[i]) <= 3e-4 * max(abs(f[i]), 1e-3), "image \(i): Σ R = \(total), f = \(f[i])")
    }
    // A large ε absorbs relevance: the same sums no longer match f.
    lrp.epsilonFactor = 2
    lrp.updateEpsilons()
    let absorbed = lrp.relevance(input: x, outputRelevance: seed)
    let drift = (0..<4).map { i in abs(absorbed.data[(i * per)..<((i + 1) * per)].reduce(0, +) - f[i]) }.max()!
    #expect(drift > 1e-2 * maxAbs(f))
}

/// LRP through conv → BN equals LRP through one conv whose weights and bias
/// are the folded ones: w' = w·γ/√(var+ε), b' = β − μ·γ/√(var+ε).
@Test func lrpWithBatchNormFoldingEqualsTheFoldedNetwork() throws {
    let arch = "c4,p,c5,p,gap,fc3"
    let a = try modelWithBatchNorm(arch, input: [8, 8, 3], seed: 31)
    let b = try Model(architecture: arch, inputShape: [8, 8, 3], batchNorm: false, seed: 31)
    let convsA = a.layers.compactMap { $0 as? Conv2D }, convsB = b.layers.compactMap { $0 as? Conv2D }
    let bns = a.layers.compactMap { $0 as? BatchNorm }
    for ((ca, cb), bn) in zip(zip(convsA, convsB), bns) {
        let n = ca.outChannels
        let scale = (0..<n).map { bn.weight.value[$0] / (bn.runningVar.value[$0] + bn.eps).squareRoot() }
        cb.weight.value = ca.weight.value.enumerated().map { $0.element * scale[$0.offset % n] }
        cb.bias!.value = (0..<n).map { bn.bias.value[$0] - bn.runningMean.value[$0] * scale[$0] }
    }
    let fa = a.layers.compactMap { $0 as? Linear }[0], fb = b.layers.compactMap { $0 as? Linear }[0]
    fb.weight.value = fa.weight.value
    fb.bias!.value = fa.bias!.value

    let x = randomBatch(5, [8, 8, 3], seed: 32)
    let za = a.forward(x, training: false)
    let lrpA = try LRP(model: a)
    lrpA.accumulateStatistics(); lrpA.updateEpsilons()
    let zb = b.forward(x, training: false)
    let lrpB = try LRP(model: b)
    lrpB.accumulateStatistics(); lrpB.updateEpsilons()
    #expect(maxDiff(za.data, zb.data) <= 1e-4 * maxAbs(za.data))
    #expect(lrpA.unitNames.count == lrpB.unitNames.count)
    #expect(maxDiff(lrpA.epsilons, lrpB.epsilons) <= 1e-4 * maxAbs(lrpA.epsilons))
    var rng = RNG(seed: 33)
    let seed = Tensor(shape: za.shape, data: normals(za.count, &rng))
    _ = a.forward(x, training: false)
    let ra = lrpA.relevance(input: x, outputRelevance: seed)
    let rb = lrpB.relevance(input: x, outputRelevance: seed)
    #expect(maxDiff(ra.data, rb.data) <= 1e-3 * maxAbs(ra.data))
    #expect(maxAbs(ra.data) > 0)
}

@Test func lrpHasARuleForEveryLayerOfTheGrammar() throws {
    // Every layer of the architecture grammar has a rule.
    let m = try Model(architecture: "c4k5s2,a,c3k1,p,fc2", inputShape: [16, 16, 1], seed: 1)
    let lrp = try LRP(model: m)
    #expect(lrp.unitNames == ["l0.bn", "l1.pool", "l2.bn", "l4.fc"])
}

/// Gradient × input of the margin on a linear model (fc only, with bias)
/// sums to f(x) − f(0) = f(x) − (b_y − b_r), r the runner-up at x.
@Test func gradientTimesInputSumsToTheMarginMinusItsValueAtZero() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeSplit(dir + "/test-conflict.npz", kind: "conflict", perClass: 4, classes: 3, side: 8, subtask: nil, seed: 41)
    let data = try StageKit.Dataset(path: dir + "/test-conflict.npz")
    let model = try Model(architecture: "fc3", inputShape: [8, 8, 3], seed: 42)
    let fc = model.layers.compactMap { $0 as? Linear }[0]
    fc.bias!.value = [0.3, -0.7, 1.1]
    let e = try NetworkEvaluator(model: model, classColumns: [0, 1, 2], batchSize: 5)
    let logits = e.logits(data, collectStatistics: true)
    let rel = e.relevance(data, patch: 2, keep: Array(0..<data.count))
    for i in 0..<data.count {
        let y = data.labels[i]
        let row = Array(logits[(i * 3)..<(i * 3 + 3)])
        let (r, f) = row.withUnsafeBufferPointer { Scores.margin($0.baseAddress!, classes: 3, label: y) }
        #expect(abs(rel.margins[i] - f) < 1e-5)
        let expected = f - (fc.bias!.value[y] - fc.bias!.value[r])
        let total = rel.keptGxi[i].reduce(0, +)
        #expect(abs(total - expected) <= 1e-4 * max(1, abs(expected)), "image \(i): Σ gxi = \(total), f − f(0) = \(expected)")
    }
}

/// A linear model that reads only the patch puts all its relevance there
/// (share 1 by both methods); one that never reads it puts none (share 0).
@Test func patchShareOfModelsReadingOnlyInsideOrOutsideThePatch() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeSplit(dir + "/test-conflict.npz", kind: "conflict", perClass: 3, classes: 3, side: 8, subtask: nil, seed: 51)
    let data = try StageKit.Dataset(path: dir + "/test-conflict.npz")
    for inside in [true, false] {
        let model = try Model(architecture: "fc3", inputShape: [8, 8, 3], seed: 52)
        let fc = model.layers.compactMap { $0 as? Linear }[0]
        // Weight rows are input features (y·8 + x)·3 + c.
        for j in 0..<(8 * 8 * 3) {
            let pix = j / 3, y = pix / 8, x = pix % 8
            let inPatch = y < 2 && x < 2
            if inPatch != inside { for o in 0..<3 { fc.weight.value[j * 3 + o] = 0 } }
        }
        let e = try NetworkEvaluator(model: model, classColumns: [0, 1, 2])
        _ = e.logits(data, collectStatistics: true)
        let rel = e.relevance(data, patch: 2)
        let expected = inside ? 1.0 : 0.0
        #expect(abs(Scores.mean(rel.shareGxi) - expected) < 1e-6)
        #expect(abs(Scores.mean(rel.shareLrp) - expected) < 1e-6)
    }
}

/// The teacher's logits are cut to the subtask classes: columns [3, 0] of
/// a 4-class model give exactly those two logits, in that order.
@Test func subtaskCutSelectsTheTeacherColumns() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeSplit(dir + "/test-clean.npz", kind: "clean", perClass: 2, classes: 2, side: 8, subtask: [3, 0], seed: 61)
    let data = try StageKit.Dataset(path: dir + "/test-clean.npz")
    let model = try modelWithBatchNorm("c2,p,gap,fc4", input: [8, 8, 3], seed: 62)
    let e = try NetworkEvaluator(model: model, classColumns: [3, 0], batchSize: 3)
    let cut = e.logits(data)
    var x = Tensor(shape: [0])
    data.gather(Array(0..<data.count)[...], into: &x)
    let full = model.forward(x, training: false)
    for i in 0..<data.count {
        #expect(cut[i * 2] == full.data[i * 4 + 3] && cut[i * 2 + 1] == full.data[i * 4])
    }
    #expect(throws: EvaluationError.self) { try NetworkEvaluator(model: model, classColumns: [4]) }
}

/// The ε-rule by hand on one linear layer, with sgn(0) = +1:
/// x = (1, 2), W = [[1, −1], [2, 0.5]] (in × out), b = (0.5, 0), ε = 0.5:
/// z = (5.5, 0), S = R/(z + ε·sgn z) = (1/6, 2) for R = (1, 1),
/// R_in = x ⊙ W·S = (1·(1/6 − 2), 2·(2/6 + 1)) = (−11/6, 8/3).
@Test func epsilonRuleByHandOnOneLinearLayer() throws {
    let model = try Model(architecture: "fc2", inputShape: [1, 1, 2], seed: 0)
    let fc = model.layers.compactMap { $0 as? Linear }[0]
    fc.weight.value = [1, -1, 2, 0.5]
    fc.bias!.value = [0.5, 0]
    let x = Tensor(shape: [1, 1, 1, 2], data: [1, 2])
    let z = model.forward(x, training: false)
    #expect(z.data == [5.5, 0])
    let lrp = try LRP(model: model)
    lrp.epsilons = [0.5]
    let r = lrp.relevance(input: x, outputRelevance: Tensor(shape: [1, 2], data: [1, 1]))
    #expect(abs(r.data[0] - (-11.0 / 6)) < 1e-6 && abs(r.data[1] - 8.0 / 3) < 1e-6)
}
