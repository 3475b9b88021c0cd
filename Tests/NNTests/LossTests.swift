import Foundation
import Testing
@testable import NN

// Reference implementations in Double, written straight from the
// definitions (no log-sum-exp tricks, no shared code with Losses.swift), and
// central finite differences on them: the analytic Float gradients must match.

private func refSoftmax(_ u: [Double]) -> [Double] {
    let e = u.map { exp($0) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

/// Mean over rows of `rowLoss(row z, row index)`.
private func refMean(_ z: [Double], b: Int, c: Int, _ rowLoss: ([Double], Int) -> Double) -> Double {
    (0..<b).map { i in rowLoss(Array(z[i * c..<(i + 1) * c]), i) }.reduce(0, +) / Double(b)
}

/// Central differences of f at z, step h.
private func finiteDifferences(_ z: [Double], h: Double = 1e-5, _ f: ([Double]) -> Double) -> [Double] {
    var g = [Double](repeating: 0, count: z.count)
    var x = z
    for i in z.indices {
        x[i] = z[i] + h
        let fp = f(x)
        x[i] = z[i] - h
        let fm = f(x)
        x[i] = z[i]
        g[i] = (fp - fm) / (2 * h)
    }
    return g
}

private func randomLogits(_ b: Int, _ c: Int, seed: UInt64, scale: Double = 2) -> [Float] {
    var r = RNG(seed: seed)
    return (0..<(b * c)).map { _ in Float(r.normal() * scale) }
}

private func randomProbs(_ b: Int, _ c: Int, seed: UInt64) -> [Float] {
    var r = RNG(seed: seed)
    var p: [Float] = []
    for _ in 0..<b {
        let row = (0..<c).map { _ in Float(r.uniformDouble() + 0.05) }
        let s = row.reduce(0, +)
        p += row.map { $0 / s }
    }
    return p
}

/// |a − b| ≤ abs + rel·|b| elementwise.
private func close(_ a: [Float], _ b: [Double], abs absTol: Double = 2e-6, rel: Double = 1e-3) -> Bool {
    guard a.count == b.count else { return false }
    for i in a.indices where Swift.abs(Double(a[i]) - b[i]) > absTol + rel * Swift.abs(b[i]) { return false }
    return true
}

@Suite struct LossTests {
    let b = 5, c = 4

    @Test func crossEntropyHardLabelsMatchesReferenceAndFiniteDifferences() throws {
        let z = randomLogits(b, c, seed: 1)
        let labels = [0, 3, 1, 1, 2]
        let shift: [Float] = [0.3, -1.1, 0.0, 0.7]
        let weights: [Float] = [1, 0.5, 2, 1.5, 0.25]
        for (s, w) in [(nil, nil), (shift, nil), (shift, weights)] as [([Float]?, [Float]?)] {
            let (loss, grad) = try Loss.crossEntropy(Tensor(shape: [b, c], data: z), labels: labels, logShift: s, weights: w)
            let f: ([Double]) -> Double = { zz in
                refMean(zz, b: b, c: c) { row, i in
                    let q = refSoftmax(row.enumerated().map { $1 - Double(s?[$0] ?? 0) })
                    return Double(w?[i] ?? 1) * -log(q[labels[i]])
                }
            }
            let zd = z.map(Double.init)
            #expect(abs(Double(loss) - f(zd)) < 1e-5 * max(1, f(zd)))
            #expect(grad.shape == [b, c])
            #expect(close(grad.data, finiteDifferences(zd, f)))
        }
    }

    @Test func crossEntropyShiftIsLogitAdjustment() throws {
        // ℓ(y, z) with shift s equals plain CE on z − s.
        let z = randomLogits(b, c, seed: 2)
        let s: [Float] = [0.5, -0.2, 1.3, 0]
        let shifted = (0..<(b * c)).map { z[$0] - s[$0 % c] }
        let labels = [1, 2, 0, 3, 3]
        let a = try Loss.crossEntropy(Tensor(shape: [b, c], data: z), labels: labels, logShift: s)
        let p = try Loss.crossEntropy(Tensor(shape: [b, c], data: shifted), labels: labels)
        #expect(abs(a.loss - p.loss) < 1e-6)
        #expect(zip(a.grad.data, p.grad.data).allSatisfy { abs($0 - $1) < 1e-7 })
    }

    @Test func crossEntropyIsStableForHugeLogits() throws {
        let z: [Float] = [1000, 0, -1000, 20000, -5, 3]
        let (loss, grad) = try Loss.crossEntropy(Tensor(shape: [2, 3], data: z), labels: [1, 2])
        // Row 1: −log softmax = 1000; row 2: 20000 − 3 = 19997. Mean 10498.5.
        #expect(abs(loss - 10498.5) < 1e-2)
        #expect(grad.data.allSatisfy { $0.isFinite })
        #expect(abs(grad.data[0] - 0.5) < 1e-6 && abs(grad.data[1] + 0.5) < 1e-6)
    }

    @Test func crossEntropyRejectsBadInput() {
        let t = Tensor(shape: [2, 3], data: [0, 1, 2, 3, 4, 5])
        #expect(throws: TrainError.self) { try Loss.crossEntropy(t, labels: [0, 3]) }
        #expect(throws: TrainError.self) { try Loss.crossEntropy(t, labels: [0]) }
        #expect(throws: TrainError.self) { try Loss.crossEntropy(t, labels: [0, 1], logShift: [0, 0]) }
        #expect(throws: TrainError.self) { try Loss.crossEntropy(t, labels: [0, 1], weights: [1]) }
    }

    @Test func softCrossEntropyMatchesFiniteDifferences() throws {
        let z = randomLogits(b, c, seed: 3)
        let p = randomProbs(b, c, seed: 4)
        // Unnormalised targets too (robust re-weighting scales them).
        let pScaled = p.enumerated().map { $1 * Float(1 + $0 % 3) * 0.7 }
        let shift: [Float] = [-0.4, 0.9, 0.1, -1.5]
        for (targets, s) in [(p, nil), (p, shift), (pScaled, shift)] as [([Float], [Float]?)] {
            let (loss, grad) = try Loss.softCrossEntropy(Tensor(shape: [b, c], data: z),
                                                         targets: Tensor(shape: [b, c], data: targets), logShift: s)
            let f: ([Double]) -> Double = { zz in
                refMean(zz, b: b, c: c) { row, i in
                    let q = refSoftmax(row.enumerated().map { $1 - Double(s?[$0] ?? 0) })
                    return (0..<c).map { -Double(targets[i * c + $0]) * log(q[$0]) }.reduce(0, +)
                }
            }
            let zd = z.map(Double.init)
            #expect(abs(Double(loss) - f(zd)) < 1e-5 * max(1, f(zd)))
            #expect(close(grad.data, finiteDifferences(zd, f)))
        }
    }

    @Test func softCrossEntropyWithOneHotTargetsEqualsHardLabels() throws {
        let z = randomLogits(b, c, seed: 5)
        let labels = [3, 0, 0, 2, 1]
        var onehot = [Float](repeating: 0, count: b * c)
        for (i, y) in labels.enumerated() { onehot[i * c + y] = 1 }
        let s: [Float] = [0.2, 0.1, -0.3, 0.4]
        let hard = try Loss.crossEntropy(Tensor(shape: [b, c], data: z), labels: labels, logShift: s)
        let soft = try Loss.softCrossEntropy(Tensor(shape: [b, c], data: z), targets: Tensor(shape: [b, c], data: onehot), logShift: s)
        #expect(abs(hard.loss - soft.loss) < 1e-6)
        #expect(zip(hard.grad.data, soft.grad.data).allSatisfy { abs($0 - $1) < 1e-7 })
    }

    @Test func distillationT4MatchesKLReferenceAndFiniteDifferences() throws {
        let T: Float = 4
        let zs = randomLogits(b, c, seed: 6, scale: 3)
        let zt = randomLogits(b, c, seed: 7, scale: 5)
        let shift: [Float] = [0.6, -0.3, 0, 1.2]
        let weights: [Float] = [0.5, 1, 1, 2, 0.1]
        for (s, w) in [(nil, nil), (shift, nil), (shift, weights)] as [([Float]?, [Float]?)] {
            let (loss, grad) = try Loss.distillation(student: Tensor(shape: [b, c], data: zs),
                                                     teacher: Tensor(shape: [b, c], data: zt),
                                                     temperature: T, logShift: s, weights: w)
            let t = Double(T)
            let f: ([Double]) -> Double = { zz in
                refMean(zz, b: b, c: c) { row, i in
                    let p = refSoftmax((0..<c).map { Double(zt[i * c + $0]) / t })
                    let q = refSoftmax(row.enumerated().map { ($1 - Double(s?[$0] ?? 0)) / t })
                    let kl = (0..<c).map { p[$0] * log(p[$0] / q[$0]) }.reduce(0, +)
                    return Double(w?[i] ?? 1) * t * t * kl
                }
            }
            let zd = zs.map(Double.init)
            #expect(abs(Double(loss) - f(zd)) < 1e-5 * max(1, f(zd)))
            #expect(close(grad.data, finiteDifferences(zd, f)))
        }
        // Without shift or weights, also the closed form T·(p_s − p_t)/B.
        let (_, g) = try Loss.distillation(student: Tensor(shape: [b, c], data: zs),
                                           teacher: Tensor(shape: [b, c], data: zt), temperature: T)
        let ps = Loss.softmax(Tensor(shape: [b, c], data: zs), temperature: T).data
        let pt = Loss.softmax(Tensor(shape: [b, c], data: zt), temperature: T).data
        for i in 0..<(b * c) { #expect(abs(g.data[i] - T * (ps[i] - pt[i]) / Float(b)) < 1e-6) }
    }

    @Test func distillationFromProbabilitiesEqualsFromLogits() throws {
        let zs = randomLogits(b, c, seed: 8), zt = randomLogits(b, c, seed: 9)
        let a = try Loss.distillation(student: Tensor(shape: [b, c], data: zs), teacher: Tensor(shape: [b, c], data: zt), temperature: 2)
        let pt = Loss.softmax(Tensor(shape: [b, c], data: zt), temperature: 2)
        let p = try Loss.distillation(student: Tensor(shape: [b, c], data: zs), teacherProbs: pt, temperature: 2)
        #expect(a.loss == p.loss && a.grad == p.grad)
        // Identical distributions: zero loss and gradient.
        let same = try Loss.distillation(student: Tensor(shape: [b, c], data: zt), teacher: Tensor(shape: [b, c], data: zt), temperature: 4)
        #expect(abs(same.loss) < 1e-6 && same.grad.data.allSatisfy { abs($0) < 1e-7 })
    }

    @Test func distillationHandlesZeroTeacherProbabilities() throws {
        // 0·log 0 = 0: a one-hot teacher gives T²·(−log q_y) at T = 1.
        let zs: [Float] = [1, 2, 0.5]
        let (loss, _) = try Loss.distillation(student: Tensor(shape: [1, 3], data: zs),
                                              teacherProbs: Tensor(shape: [1, 3], data: [0, 1, 0]), temperature: 1)
        let ce = try Loss.crossEntropy(Tensor(shape: [1, 3], data: zs), labels: [1])
        #expect(abs(loss - ce.loss) < 1e-6)
    }

    @Test func mseMatchesFiniteDifferences() throws {
        let a = randomLogits(3, 7, seed: 10), t = randomLogits(3, 7, seed: 11)
        let (loss, grad) = try Loss.mse(Tensor(shape: [3, 7], data: a), Tensor(shape: [3, 7], data: t))
        let f: ([Double]) -> Double = { x in
            var sum = 0.0
            for i in x.indices {
                let d: Double = x[i] - Double(t[i])
                sum += d * d
            }
            return sum / 21
        }
        let ad = a.map(Double.init)
        #expect(abs(Double(loss) - f(ad)) < 1e-5 * max(1, f(ad)))
        #expect(close(grad.data, finiteDifferences(ad, f)))
    }

    @Test func smoothL1MatchesPyTorchDefinitionAndFiniteDifferences() throws {
        // Hand values, beta = 1: d = 0.5 → 0.125, d = −2 → 1.5, d = 0 → 0; mean 1.625/3.
        let (l0, g0) = try Loss.smoothL1(Tensor(shape: [3], data: [0.5, -2, 1]), Tensor(shape: [3], data: [0, 0, 1]))
        #expect(abs(l0 - 1.625 / 3) < 1e-7)
        #expect(g0.data == [0.5 / 3, -1.0 / 3, 0])
        // Values away from the kink |d| = 1 so differences stay on one branch.
        var a = randomLogits(4, 5, seed: 12)
        let t = randomLogits(4, 5, seed: 13)
        for i in a.indices where abs(abs(a[i] - t[i]) - 1) < 0.01 { a[i] += 0.05 }
        let (loss, grad) = try Loss.smoothL1(Tensor(shape: [4, 5], data: a), Tensor(shape: [4, 5], data: t))
        let f: ([Double]) -> Double = { x in
            zip(x, t).map { v, tt -> Double in
                let d = v - Double(tt)
                return abs(d) < 1 ? 0.5 * d * d : abs(d) - 0.5
            }.reduce(0, +) / 20
        }
        let ad = a.map(Double.init)
        #expect(abs(Double(loss) - f(ad)) < 1e-5 * max(1, f(ad)))
        #expect(close(grad.data, finiteDifferences(ad, f)))
        #expect(throws: TrainError.self) { try Loss.smoothL1(Tensor(shape: [2], data: [0, 0]), Tensor(shape: [3], data: [0, 0, 0])) }
    }

    @Test func softmaxHelpersArgmaxAndAccuracy() throws {
        let z = Tensor(shape: [2, 3], data: [1, 3, 2, 5, 5, -1])
        let p = Loss.softmax(z)
        let lp = Loss.logSoftmax(z, temperature: 2)
        let ref = refSoftmax([1, 3, 2])
        for j in 0..<3 { #expect(abs(Double(p.data[j]) - ref[j]) < 1e-7) }
        let ref2 = refSoftmax([2.5, 2.5, -0.5])
        for j in 0..<3 { #expect(abs(Double(lp.data[3 + j]) - log(ref2[j])) < 1e-6) }
        #expect(Loss.argmax(z) == [1, 0])  // first maximum on ties
        #expect(try Loss.accuracy(z, labels: [1, 1]) == 0.5)
    }
}
